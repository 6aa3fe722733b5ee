"""The player over a recorded run (issue 11) in a real browser.

A depth-2 run (scripted models, real environment kernels) is recorded to JSONL. In JupyterLab a
notebook opens it with ``rlm_jupyter.show(path)``: the **next** button, then the arrow keys on
the focused slider, change the step shown; ``%rlm show PATH`` opens another player; the notebook saves the static export, which is
opened from disk (``file://``, no server, no kernel) and stepped through with the arrow keys
and the previous/next labels. A static export of a recording full of hostile payloads is
opened too: no payload global is set and nothing but the file itself is requested.

Screenshots (git-ignored): artifacts/player_widget.png, artifacts/player_static.png,
artifacts/player_failure.png when the test fails.
"""

from __future__ import annotations

import textwrap

import pytest

from .conftest import REPO, open_notebook, run_all, shot, write_notebook
from .test_payloads import PAYLOADS, PWNED_JS

ARTIFACTS = REPO / "artifacts"


def _root(msgs):
    first = next(m["content"] for m in msgs if m["role"] == "user")
    turns = sum(1 for m in msgs if m["role"] == "assistant")
    block = "```repl\n{}\n```"
    if "Query: count the words" in first:
        return [block.format("n = len(context.split())\nprint(llm_query('check ' + str(n)), n)"), "FINAL_VAR(n)"][min(turns, 1)]
    return [
        "First the **size**.\n" + block.format("print(len(context))"),
        "A sub-call.\n" + block.format("print(llm_query('summarise ' + context[:10]))"),
        "Now a child RLM counts.\n" + block.format("n = rlm_query('count the words', context='a b c d')\nprint('child said', n)"),
        "FINAL(There are 4 words.)",
    ][min(turns, 3)]


@pytest.fixture(scope="module")
def recording(jupyter_lab):
    from rlm_jupyter import RLM
    from rlm_jupyter.lm.scripted import script

    root = script("player-browser-root", _root)
    sub = script("player-browser-sub", lambda m: "summary of " + m[-1]["content"][-8:])
    res = RLM(model=root, sub_model=sub, max_depth=2).completion("How many words?", "alpha beta gamma delta " * 10)
    assert res.status == "done" and len(res.trajectory.iterations) == 4
    return res.to_jsonl(jupyter_lab.root / "recorded.jsonl")


def _shown_step(out) -> int:
    return int(out.locator(".rlm-player-view .rlm-player-step-body").get_attribute("data-step"))


def _wait_step(page, out, k: int) -> None:
    out.locator(f".rlm-player-view .rlm-player-step-body[data-step='{k}']").wait_for(timeout=20_000)


@pytest.mark.timeout(240)
def test_player_in_jupyterlab_and_its_static_export(jupyter_lab, page, recording):
    try:
        _check(jupyter_lab, page, recording)
    except BaseException:
        shot(page, "player_failure.png", full_page=True)
        (ARTIFACTS / "player_failure_console.txt").write_text("\n".join(page.console_messages))
        raise


def _check(lab, page, recording):
    from playwright.sync_api import expect  # (the conftest skips or fails without playwright)

    cells = [
        textwrap.dedent(
            """
            import rlm_jupyter
            player = rlm_jupyter.show("recorded.jsonl")
            player
            """
        ).strip(),
        'print(player.save_html("recorded.html"))',
        "%load_ext rlm_jupyter\n%rlm show recorded.jsonl",
    ]
    write_notebook(lab.root / "player.ipynb", cells)
    open_notebook(page, lab, "player.ipynb")
    run_all(page)
    out = page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(0).locator(".jp-OutputArea")
    _wait_step(page, out, 1)
    assert out.locator(".rlm-player .rlm-player-slider").count() == 1
    view = out.locator(".rlm-player-view")
    assert "Step 1 of 4" in view.inner_text() and view.locator("details.rlm-message[data-role='system']").count() == 1

    # the next button (a widget callback: the kernel is idle, so it is delivered)
    out.locator(".rlm-player-next").click()
    _wait_step(page, out, 2)
    assert "summarise" in view.locator(".rlm-player-tree").inner_text()

    # the arrow keys on the slider, once it has the focus (a click on its handle)
    handle = out.locator(".rlm-player-slider .noUi-handle")
    handle.click()
    assert _shown_step(out) == 2
    page.keyboard.press("ArrowRight")
    _wait_step(page, out, 3)
    tree = view.locator(".rlm-player-tree")
    assert tree.locator("li.rlm-player-node[data-node='0.c1']").count() == 1 and tree.locator("li.rlm-player-sub[data-node='0.c1.s1']").count() == 1
    page.keyboard.press("ArrowRight")
    _wait_step(page, out, 4)
    assert "There are 4 words." in view.locator(".rlm-final").inner_text()
    page.keyboard.press("ArrowLeft")
    _wait_step(page, out, 3)
    assert out.locator(".rlm-player-slider .widget-readout").inner_text().strip() == "3"
    out.scroll_into_view_if_needed()
    shot(page, "player_widget.png")

    # %rlm show PATH opens a second, independent player
    magic = page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(2).locator(".jp-OutputArea")
    _wait_step(page, magic, 1)
    magic.locator(".rlm-player-next").click()
    _wait_step(page, magic, 2)
    assert _shown_step(out) == 3

    # the static export the notebook saved, opened from disk: no kernel, no server
    exported = lab.root / "recorded.html"
    page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(1).locator(".jp-OutputArea", has_text="recorded.html").wait_for(timeout=30_000)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(exported.as_uri())
    visible = page.locator("section.rlm-player-step:visible")
    expect(visible).to_have_count(1)
    expect(visible).to_have_attribute("data-step", "1")
    # step 1's radio button has `autofocus`; a background page may not honour it, and a reader
    # would click the step bar first: do that when the focus is not there
    if not page.evaluate("() => document.activeElement && document.activeElement.id === 'rlm-s1'"):
        page.locator(".rlm-player-bar label[for='rlm-s1']").click()
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'rlm-s1'")
    page.keyboard.press("ArrowRight")
    expect(visible).to_have_attribute("data-step", "2")
    visible.locator("label.rlm-next").click()
    expect(visible).to_have_attribute("data-step", "3")
    assert visible.locator(".rlm-player-tree li.rlm-player-sub[data-node='0.c1.s1']").count() == 1
    page.keyboard.press("ArrowRight")  # clicking a label focused its radio button: the keys go on working
    expect(visible).to_have_attribute("data-step", "4")
    assert "There are 4 words." in visible.locator(".rlm-final").inner_text()
    visible.locator("label.rlm-prev").click()
    expect(visible).to_have_attribute("data-step", "3")
    page.locator(".rlm-player-bar label[for='rlm-s1']").click()
    expect(visible).to_have_attribute("data-step", "1")
    assert visible.locator("details.rlm-message").count() >= 2
    shot(page, "player_static.png")
    # nothing but the file itself (a late request of the JupyterLab page we left, e.g. its busy
    # favicon, goes to the Jupyter server and is not the export's)
    assert [u for u in requests if not u.startswith(lab.base)] == [exported.as_uri()], requests

    # a hostile recording's export: nothing runs, nothing is fetched
    from rlm_jupyter.jupyter.player import Player
    from test_safe_html import hostile_trajectory

    hostile = Player(hostile_trajectory("\n".join(t for _, t in PAYLOADS))).to_html(lab.root / "hostile.html")
    requests.clear()
    page.goto(hostile.as_uri())
    page.locator("section.rlm-player-step:visible details").first.wait_for()
    for d in page.locator("details").all():  # open everything, hover everything: no handler may fire
        d.evaluate("el => { el.open = true; }")
    page.mouse.move(200, 200)
    page.wait_for_timeout(500)
    assert page.evaluate(PWNED_JS) == []
    assert [u for u in requests if not u.startswith(("data:", hostile.as_uri()))] == [], requests
