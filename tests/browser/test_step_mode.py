"""Step mode clicked through in JupyterLab (issue 11): ``%%rlm docs --step`` returns at once, the
panel's widgets receive clicks while the run waits on the kernel's event loop, and the
trajectory shows what was clicked: Run ran the block, Edit ran the edited version, Skip did not
run the block, Say reached the root model, Continue ran the rest without pausing. A second test
stops a paused run with JupyterLab's stop button (a kernel interrupt of an idle kernel).

The same click-through runs in Notebook 7 (``jupyter notebook``; skipped without the
``notebook`` package, except under CI).

Screenshots (git-ignored): artifacts/step_mode_paused.png, artifacts/step_mode_final.png (and
step_mode_nb7_*.png); artifacts/step_mode_failure.png when a test fails.
"""

from __future__ import annotations

import json
import textwrap
import time

import pytest

from .conftest import REPO, open_notebook, run_all, shot, write_notebook
from .test_cells_notebook7 import notebook7  # noqa: F401 (fixture: a Notebook 7 server)

SETUP = textwrap.dedent(
    '''
    %load_ext rlm_jupyter
    from rlm_jupyter.lm.scripted import script, get_script

    def block(code):
        return "```repl\\n" + code + "\\n```"

    root = script("step-root", [
        "First a look.\\n" + block("a = 1\\nprint('block one', a)"),
        block("b = 2\\nprint('model b', b)"),
        block("c = 3\\nprint('must not run')"),
        block("d = 4\\nprint('d is', d)"),
        "FINAL_VAR(b)",
    ], latency=1.5, chunks=12)
    docs = "alpha beta gamma"
    '''
)
CELL = "%%rlm docs --step --out result -m scripted/step-root\nWhat is b?"

CHECK = textwrap.dedent(
    '''
    import json
    its = result.trajectory.iterations
    cells = [(c.code, c.original_code, c.status, c.text) for it in its for c in it.cells]
    calls = get_script("scripted/step-root").calls
    print(json.dumps({"answer": result.answer, "status": result.status, "cells": cells,
                      "last_prompt": calls[-1][-1]["content"], "n_calls": len(calls)}))
    '''
)

EXECUTE_JS = """async ([code, cellId]) => {
    const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    const f = k.requestExecute({code, store_history: false}, true, cellId ? {cellId} : {});
    let out = "";
    f.onIOPub = (m) => { if (m.header.msg_type === "stream") out += m.content.text;
                         if (m.header.msg_type === "error") out += "ERROR " + m.content.ename + ": " + m.content.evalue; };
    await f.done;
    return out;
}"""


def _kernel_run(page, code: str, cell_id: str | None = None) -> str:
    """Run ``code`` in the notebook's kernel (not in a cell, but with ``cellId`` metadata if
    given, as a cell's execution has); returns its printed text."""
    return page.evaluate(EXECUTE_JS, [code, cell_id])


def _panel(page):
    return page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(1).locator(".jp-OutputArea .rlm-step")


def _wait_proposal(panel, text: str, timeout: float = 60) -> None:
    """Wait until the panel proposes code containing ``text`` with Run enabled."""
    deadline = time.monotonic() + timeout
    box = panel.locator(".rlm-step-code textarea")
    while time.monotonic() < deadline:
        if box.count() and text in box.input_value() and panel.locator("button.rlm-step-run").is_enabled():
            return
        time.sleep(0.1)
    raise AssertionError(f"no proposal containing {text!r}; box: {box.input_value() if box.count() else None!r}")


@pytest.mark.timeout(240)
def test_step_mode_run_edit_skip_say_continue(jupyter_lab, page):
    try:
        _step_through(jupyter_lab, page)
    except BaseException:
        shot(page, "step_mode_failure.png", full_page=True)
        (REPO / "artifacts" / "step_mode_failure_console.txt").write_text("\n".join(page.console_messages))
        raise


def _step_through(jupyter_lab, page):
    write_notebook(jupyter_lab.root / "step_mode.ipynb", [SETUP, CELL])
    open_notebook(page, jupyter_lab, "step_mode.ipynb")
    _click_through(page, "step_mode")


@pytest.mark.timeout(300)
def test_step_mode_in_notebook7(notebook7, page):
    base, token, root = notebook7
    write_notebook(root / "step_nb7.ipynb", [SETUP, CELL])
    page.goto(f"{base}/notebooks/step_nb7.ipynb?token={token}")
    page.wait_for_function(
        """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                   const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                   return !!k && k.status === 'idle' && w.content.widgets.length === 2; }""",
        timeout=120_000,
    )
    try:
        _click_through(page, "step_mode_nb7")
    except BaseException:
        shot(page, "step_mode_nb7_failure.png", full_page=True)
        raise


def _click_through(page, name: str):
    run_all(page)
    panel = _panel(page)
    panel.wait_for(timeout=60_000)
    # the %%rlm --step cell returned at once: the kernel is idle while the run goes on
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'", timeout=30_000
    )
    # the first reply streams into the panel before it ends
    panel.locator(".rlm-writing pre").wait_for(timeout=60_000)

    _wait_proposal(panel, "print('block one', a)")
    shot(page, f"{name}_paused.png")
    panel.locator("button.rlm-step-run").click()

    _wait_proposal(panel, "print('model b', b)")
    panel.locator("button.rlm-step-edit").click()
    box = panel.locator(".rlm-step-code textarea")
    box.fill("b = 20\nprint('edited b', b)")
    panel.locator("button.rlm-step-edit", has_text="Run edited").click()

    _wait_proposal(panel, "print('must not run')")
    panel.locator(".rlm-step-say-text input").fill("b is the answer, use FINAL_VAR")
    panel.locator("button.rlm-step-say").click()
    panel.locator(".rlm-step-said", has_text="b is the answer").wait_for(timeout=10_000)
    panel.locator("button.rlm-step-skip").click()

    _wait_proposal(panel, "print('d is', d)")
    panel.locator("button.rlm-step-continue").click()

    out = page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(1).locator(".jp-OutputArea")
    final = out.locator(".rlm-run .rlm-final")
    final.wait_for(timeout=60_000)  # the static rendering replaced the live view after the cell returned
    assert "20" in final.inner_text()
    out.locator(".rlm-step-ended", has_text="step mode ended: done").wait_for(timeout=10_000)
    shot(page, f"{name}_final.png", full_page=True)

    got = json.loads(_kernel_run(page, CHECK))
    assert got["status"] == "done" and got["answer"] == "20"
    cells = got["cells"]
    assert [c[2] for c in cells] == ["ok", "ok", "skipped", "ok"]
    assert cells[0][3].strip() == "block one 1" and cells[0][1] is None
    assert cells[1][0] == "b = 20\nprint('edited b', b)" and "model b" in cells[1][1] and cells[1][3].strip() == "edited b 20"
    assert cells[2][3] == "" and "must not run" in cells[2][0]
    assert cells[3][3].strip() == "d is 4"
    assert got["n_calls"] == 5
    # the fourth call's user message carried the skip notice and the message said with Say
    prompts = json.loads(_kernel_run(page, 'import json; print(json.dumps([c[-1]["content"] for c in get_script("scripted/step-root").calls]))'))
    assert "the user skipped this block" in prompts[3] and "Message from the user: b is the answer, use FINAL_VAR" in prompts[3]
    assert "edited b 20" in prompts[2]
    errors = [m for m in page.console_messages if m.startswith("error") and "widget" in m.lower()]
    assert not errors, errors


STOP_SETUP = textwrap.dedent(
    '''
    %load_ext rlm_jupyter
    from rlm_jupyter.lm.scripted import script
    script("stop-root", ["```repl\\nprint('never run')\\n```", "FINAL(never)"])
    docs = "x"
    '''
)


@pytest.mark.timeout(300)
def test_stop_button_stops_a_paused_step_run(jupyter_lab, page):
    try:
        write_notebook(jupyter_lab.root / "step_stop.ipynb", [STOP_SETUP, "%%rlm docs --step --out r -m scripted/stop-root\nq"])
        open_notebook(page, jupyter_lab, "step_stop.ipynb")
        run_all(page)
        panel = _panel(page)
        panel.wait_for(timeout=60_000)
        _wait_proposal(panel, "print('never run')")
        page.wait_for_function(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'", timeout=30_000
        )
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:interrupt-kernel')")  # the stop button
        out = page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(1).locator(".jp-OutputArea")
        out.locator(".rlm-step-ended", has_text="step mode ended: stopped").wait_for(timeout=60_000)
        assert _kernel_run(page, "print(r.status, [c.status for it in r.trajectory.iterations for c in it.cells])").strip() == "stopped []"
        # the kernel is fine afterwards, and SIGINT is back to ipykernel's idle setting
        assert _kernel_run(page, "import signal; print(get_ipython().kernel.saved_sigint_handler == signal.SIG_IGN)").strip() == "True"
        # %rlm stop stops a stepped run too (this one started outside any cell: no panel shown)
        _kernel_run(page, "script('stop-root', ['```repl\\nprint(1)\\n```', 'FINAL(never)'])")
        magics = "get_ipython().magics_manager.registry['RLMMagics']"

        def start_paused(out: str) -> None:
            _kernel_run(page, f"%%rlm docs --step --out {out} -m scripted/stop-root\nq", cell_id="cell-x")
            for _ in range(300):
                if _kernel_run(page, f"print({magics}.stepped[-1].session.pending is not None)").strip() == "True":
                    return
                time.sleep(0.2)
            raise AssertionError("the stepped run never paused")

        start_paused("r1")
        _kernel_run(page, "script('stop-root', ['```repl\\nprint(1)\\n```', 'FINAL(never)'])")
        start_paused("r2")  # the same cell again: its earlier run, still paused, is stopped
        for _ in range(300):
            if _kernel_run(page, "print(getattr(globals().get('r1'), 'status', None))").strip() == "stopped":
                break
            time.sleep(0.2)
        else:
            raise AssertionError("re-running the cell did not stop its earlier stepped run")
        assert "stopping 1 stepped run" in _kernel_run(page, "%rlm stop")
        for _ in range(300):
            if _kernel_run(page, "print(getattr(globals().get('r2'), 'status', None))").strip() == "stopped":
                break
            time.sleep(0.2)
        else:
            raise AssertionError("%rlm stop did not stop the run")
    except BaseException:
        shot(page, "step_mode_failure.png", full_page=True)
        raise
