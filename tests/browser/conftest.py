"""Browser tests: JupyterLab on 127.0.0.1 driven in Debian's headless Chromium by Playwright.

Shared fixtures and helpers (any browser test may use them):

- ``jupyter_lab`` (alias ``lab``): a JupyterLab server for the test session (``jupyter lab --allow-root`` on a free
  loopback port with a token, ``--expose-app-in-browser`` so tests can reach
  ``window.jupyterapp``, settings/workspaces in a temporary folder). ``lab.root`` is its
  notebook folder, ``lab.url(path)`` the address of a file in JupyterLab.
Scope "package": the server and the browser stop after the last test of tests/browser. Playwright's
sync API keeps an asyncio loop running in the main thread while it is open, and every later
test that calls ``asyncio.run`` (RLM.completion, the LM client) would fail.

- ``browser``: Chromium launched from ``/usr/bin/chromium`` (never ``playwright install``).
- ``page``: a fresh page (1400x1000); its console lines (``"<type>: <text>"``) are in
  ``page.console_messages``.
- ``artifacts``: the repository's ``artifacts/`` folder (git-ignored), for screenshots.
- helpers: ``write_notebook(path, sources, ids=None)`` (a python3 notebook of code cells),
  ``open_notebook(page, lab, name)`` (opens it, waits until its kernel is idle),
  ``run_all(page)`` (starts "run all cells", does not wait), ``shot(page, name, full_page=False)``
  (screenshot into ``artifacts/``, returns its path), ``kernel_idle(page)``.

Missing prerequisites (Chromium, Playwright, JupyterLab) skip these tests, except under CI
(``CI`` set), where they fail.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import secrets
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

CHROMIUM = os.environ.get("RLM_JUPYTER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = pathlib.Path(__file__).resolve().parents[2]
IN_CI = bool(os.environ.get("CI"))


def require(ok: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) when a prerequisite is missing."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"browser test prerequisite missing in CI: {reason}")
    pytest.skip(reason)


def labextension_installed(name: str) -> bool:
    """Whether JupyterLab sees the prebuilt extension ``name`` (from any data dir)."""
    try:
        from jupyter_core.paths import jupyter_path
    except ImportError:
        return False
    return any((pathlib.Path(p) / name / "package.json").is_file() for p in jupyter_path("labextensions"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Lab:
    base: str
    token: str
    root: pathlib.Path
    proc: subprocess.Popen
    log: pathlib.Path

    def url(self, path: str = "", workspace: str | None = None) -> str:
        """Address of ``path`` in JupyterLab; by default in a new, empty workspace, so notebooks
        that earlier tests opened (the server remembers a workspace's tabs) are not in the page."""
        workspace = workspace or f"test-{secrets.token_hex(4)}"
        return f"{self.base}/lab/workspaces/{workspace}/tree/{path}?token={self.token}"

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@pytest.fixture(scope="package")
def jupyter_lab(tmp_path_factory):
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        require(False, "jupyterlab is not installed (pip install jupyterlab)")
    base_dir = tmp_path_factory.mktemp("lab")
    root = base_dir / "notebooks"
    root.mkdir()
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update(
        JUPYTERLAB_SETTINGS_DIR=str(base_dir / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(base_dir / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(base_dir / "runtime"),
        PYTHONUNBUFFERED="1",
    )
    # No "Would you like to get notified about official Jupyter news?" toast over screenshots.
    notification = base_dir / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    log = base_dir / "lab.log"
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--expose-app-in-browser",
        "--ServerApp.port_retries=0", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(root), start_new_session=True)
    server = Lab(f"http://127.0.0.1:{port}", token, root, proc, log)
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited ({proc.returncode}):\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.base}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"jupyter lab did not start in 90 s:\n{server.log_tail()}")
        time.sleep(0.3)
    yield server
    proc.terminate()  # shuts its kernels down
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="package")
def browser():
    require(pathlib.Path(CHROMIUM).is_file(), f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed (pip install playwright; never `playwright install`)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.console_messages = []
    pg.on("console", lambda m: pg.console_messages.append(f"{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: pg.console_messages.append(f"pageerror: {e}"))
    yield pg
    context.close()


@pytest.fixture(scope="package")
def lab(jupyter_lab):
    return jupyter_lab


@pytest.fixture(scope="session")
def artifacts() -> pathlib.Path:
    path = REPO / "artifacts"
    path.mkdir(exist_ok=True)
    return path


# -- helpers ------------------------------------------------------------------------------------
def write_notebook(path: pathlib.Path, sources: list[str], ids: list[str] | None = None) -> pathlib.Path:
    """Write a python3 notebook whose code cells hold ``sources`` (optional nbformat ``ids``)."""
    import nbformat
    from nbformat import v4

    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, src in enumerate(sources):
        cell = v4.new_code_cell(src)
        if ids is not None:
            cell["id"] = ids[i]
        nb.cells.append(cell)
    path = pathlib.Path(path)
    nbformat.write(nb, str(path))
    return path


def open_notebook(page, lab: Lab, name: str, timeout: float = 120) -> None:
    """Open ``lab.root/name`` in JupyterLab and wait until its kernel is idle."""
    page.goto(lab.url(name))
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=timeout * 1000)
    page.wait_for_function(
        """(name) => {
            const w = window.jupyterapp.shell.currentWidget;
            if (!w || !w.context || w.context.path !== name || !w.content || !w.content.model) return false;
            const k = w.sessionContext.session && w.sessionContext.session.kernel;
            return !!k && k.status === 'idle' && w.content.widgets.length > 0;
        }""",
        arg=name,
        timeout=timeout * 1000,
    )


def run_all(page) -> None:
    """Start "run all cells" in the current notebook (returns at once)."""
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def kernel_idle(page) -> bool:
    """Whether the current notebook's kernel is idle."""
    return page.evaluate(
        """() => { const w = window.jupyterapp.shell.currentWidget;
                   const k = w && w.sessionContext.session && w.sessionContext.session.kernel;
                   return !!k && k.status === 'idle'; }"""
    )


def shot(page, name: str, full_page: bool = False) -> pathlib.Path:
    """Screenshot into ``artifacts/name``; returns the path."""
    path = REPO / "artifacts" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page)
    return path
