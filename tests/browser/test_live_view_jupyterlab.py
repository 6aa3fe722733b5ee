"""A person's view of a %%rlm cell: JupyterLab in headless Chromium shows the live widgets while
the run goes on, then the static rendering; a sub-call and the child RLM expand on click.

Screenshots (git-ignored, kept by CI): artifacts/live_view_running.png (during the run),
artifacts/live_view_final.png (the static rendering, collapsed) and
artifacts/live_view_expanded.png (with a sub-call and the child RLM opened);
artifacts/live_view_failure.png when the test fails.
"""

from __future__ import annotations

import textwrap

import pytest

from .conftest import REPO, open_notebook, run_all, shot, write_notebook

ARTIFACTS = REPO / "artifacts"

SETUP = textwrap.dedent(
    '''
    %load_ext rlm_jupyter
    from rlm_jupyter.lm.scripted import script

    def _root(msgs):
        first = next(m["content"] for m in msgs if m["role"] == "user")
        turns = sum(1 for m in msgs if m["role"] == "assistant")
        if "Query: count the words" in first:
            return ["Counting the words.\\n```repl\\nn = len(context.split())\\nprint(llm_query('check ' + str(n)), n)\\n```",
                    "FINAL_VAR(n)"][min(turns, 1)]
        return [
            "First I **split** the context and summarise each part.\\n```repl\\nparts = context.split()\\nprint(llm_query_batched(['summarise ' + p for p in parts]))\\n```",
            "Now a child RLM counts.\\n```repl\\nn = rlm_query('count the words', context='a b c d')\\nprint('child said', n)\\n```",
            "FINAL(There are 4 words.)",
        ][min(turns, 2)]

    root = script("browser-root", _root, latency=0.3)
    sub = script("browser-sub", lambda m: "summary of " + m[-1]["content"].split()[-1], latency=2.0)
    docs = "alpha beta gamma delta"
    '''
)
CELL = "%%rlm docs --out result -m scripted/browser-root --sub-model scripted/browser-sub --max-depth 2\nHow many words?"


@pytest.mark.timeout(110)
def test_live_view_in_jupyterlab_then_static_tree_that_expands(jupyter_lab, page):
    try:
        _check_live_view(jupyter_lab, page)
    except BaseException:
        shot(page, "live_view_failure.png", full_page=True)  # what the page showed, for CI
        (ARTIFACTS / "live_view_failure_console.txt").write_text("\n".join(page.console_messages))
        raise


def _check_live_view(jupyter_lab, page):
    write_notebook(jupyter_lab.root / "live_view.ipynb", [SETUP, CELL])
    open_notebook(page, jupyter_lab, "live_view.ipynb")
    run_all(page)

    # live: the widget header says "running" and sub-calls appear inside the current iteration
    # the visible notebook only: notebooks other tests opened may be restored in hidden tabs
    out = page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(1).locator(".jp-OutputArea")
    out.locator(".widget-html .rlm-header .rlm-status", has_text="running").wait_for(state="attached", timeout=60_000)
    out.locator(".widget-html details.rlm-batch").first.wait_for(timeout=30_000)
    assert out.locator(".widget-html .rlm-iter").first.inner_text().startswith("iteration 1/")
    shot(page, "live_view_running.png")

    # the end: the widgets are replaced by the static <details> tree
    final = out.locator(".rlm-run .rlm-final")
    final.wait_for(timeout=60_000)
    assert out.locator(".widget-html").count() == 0
    assert out.locator(".rlm-header .rlm-status").inner_text() == "done"
    assert "There are 4 words." in final.inner_text()
    assert out.locator("details.rlm-iteration[data-node='0']").count() == 3
    assert out.locator(".rlm-plot svg rect").count() == 6
    final.scroll_into_view_if_needed()
    shot(page, "live_view_final.png")

    # expand iteration 1, its batch, and one sub-call: the prompt and the answer show
    it1 = out.locator("details.rlm-iteration[data-node='0'][data-iteration='1']")
    it1.locator(":scope > summary").click()
    it1.locator("details.rlm-batch > summary").click()
    sc = it1.locator("details.rlm-subcall[data-node='0.s2']")
    sc.locator(":scope > summary").click()
    assert sc.get_attribute("open") is not None
    assert sc.locator(".rlm-prompt-preview").inner_text() == "summarise beta"
    assert sc.locator(".rlm-answer-text").is_visible() and sc.locator(".rlm-answer-text").inner_text() == "summary of beta"
    assert it1.locator(".rlm-code").is_visible() and "llm_query_batched" in it1.locator(".rlm-code").inner_text()
    assert it1.locator(".rlm-prose strong").inner_text() == "split"

    # the child RLM (depth 2) nests inside iteration 2, with its own iterations and sub-call
    it2 = out.locator("details.rlm-iteration[data-node='0'][data-iteration='2']")
    it2.locator(":scope > summary").click()
    child = it2.locator("details.rlm-child[data-node='0.c1']")
    child.locator(":scope > summary").click()
    assert child.locator("details.rlm-iteration[data-node='0.c1']").count() == 2
    child.locator("details.rlm-iteration[data-node='0.c1'][data-iteration='1'] > summary").click()
    assert child.locator("details.rlm-subcall[data-node='0.c1.s1']").is_visible()
    sc.scroll_into_view_if_needed()
    path = shot(page, "live_view_expanded.png", full_page=True)
    assert path.stat().st_size > 10_000
    errors = [m for m in page.console_messages if m.startswith("error") and "widget" in m.lower()]
    assert not errors, errors
