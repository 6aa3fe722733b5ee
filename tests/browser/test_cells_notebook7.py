"""Issue 5 in Notebook 7 (``jupyter notebook``): the extension also inserts the run's cells there.

Needs the ``notebook`` package (7.x; in the ``test`` extra, not a dependency of rlm-jupyter):
skipped without it, except under CI where it fails. Screenshot: artifacts/cells_notebook7.png.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import _free_port, labextension_installed, require, shot, write_notebook
from .test_cells_jupyterlab import CELLS_JS, RLM_CELL, SETUP, _text

EXTENSION = "rlm-jupyter-cells"


@pytest.fixture
def notebook7(tmp_path):
    try:
        import notebook
    except ImportError:
        require(False, "Notebook 7 is not installed (pip install 'notebook>=7')")
    require(int(notebook.__version__.split(".")[0]) >= 7, f"notebook {notebook.__version__} is not Notebook 7")
    root = tmp_path / "nb"
    root.mkdir()
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    log = tmp_path / "notebook.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "notebook", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--expose-app-in-browser",
             "--ServerApp.port_retries=0"],
            stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(root), start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"jupyter notebook exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("jupyter notebook did not start in 90 s")
        time.sleep(0.3)
    yield base, token, root
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.timeout(180)
def test_cells_appear_in_notebook7(notebook7, page):
    require(labextension_installed(EXTENSION), f"the {EXTENSION} labextension is not installed")
    base, token, root = notebook7
    write_notebook(root / "nb7.ipynb", [SETUP, RLM_CELL], ids=["setup", "rlm-cell"])
    page.goto(f"{base}/notebooks/nb7.ipynb?token={token}")
    page.wait_for_function(
        """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                   const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                   return !!k && k.status === 'idle' && w.content.widgets.length === 2 && !!window.rlmJupyterCells; }""",
        timeout=120_000,
    )
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    page.wait_for_function(
        """() => { const w = window.jupyterapp.shell.currentWidget;
                   return w.sessionContext.session.kernel.status === 'idle'
                       && w.content.model.cells.get(1).executionCount !== null
                       && document.querySelectorAll('.jp-Cell.rlm-cell').length === 5; }""",
        timeout=120_000,
    )
    cells = page.evaluate(CELLS_JS)
    run = cells[2]["metadata"]["rlm"]["run_id"]
    assert [c["id"] for c in cells] == ["setup", "rlm-cell", f"rlm-{run}-1-md", f"rlm-{run}-1-0", f"rlm-{run}-2-md",
                                        f"rlm-{run}-2-0", f"rlm-{run}-3-md"]
    assert cells[3]["source"].startswith(f"%%rlm_step {run} 1\n") and _text(cells[5]["outputs"]) == "183"
    shot(page, "cells_notebook7.png", full_page=True)
