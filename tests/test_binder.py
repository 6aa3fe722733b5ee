"""binder/ holds what repo2docker reads, and what postBuild runs works in a fresh environment.

repo2docker itself needs Docker, which CI lacks. The static checks run everywhere; the slow one
(under CI, or with RLM_JUPYTER_TEST_BINDER=1) runs binder/postBuild against a fresh virtual environment
standing in for Binder's ${NB_PYTHON_PREFIX}, then executes notebook 01 with that
environment's own kernel.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

ROOT = pathlib.Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"


def test_binder_files_are_what_repo2docker_reads():
    assert sorted(p.name for p in BINDER.iterdir()) == ["apt.txt", "postBuild", "requirements.txt", "runtime.txt", "start"]
    assert "bubblewrap" in (BINDER / "apt.txt").read_text().split()
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.(1[0-9])", runtime), runtime
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            Requirement(line)  # raises on a malformed line
    for script in ("postBuild", "start"):
        path = BINDER / script
        assert os.access(path, os.X_OK), f"binder/{script} is not executable"
        subprocess.run(["bash", "-n", str(path)], check=True)
    assert 'exec "$@"' in (BINDER / "start").read_text()


def test_postbuild_installs_into_the_image_python_with_plots_and_saves_widget_state():
    text = (BINDER / "postBuild").read_text()
    assert "NB_PYTHON_PREFIX" in text and "RLM_JUPYTER_PYTHON" in text
    extras = re.search(r'RLM_JUPYTER_EXTRAS="([^"]+)"', text).group(1).split(",")
    assert {"local", "bench"} <= set(extras)
    assert "bash scripts/install.sh" in text
    assert '"saveState": true' in text
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert "RLM_JUPYTER_PYTHON" in install and "RLM_JUPYTER_EXTRAS" in install


def test_readme_badge_opens_notebook_01():
    readme = (ROOT / "README.md").read_text()
    badge = re.search(r"https://mybinder\.org/v2/gh/[^)\s]+", readme)
    assert badge, "README.md has no Binder badge"
    urlpath = re.search(r"urlpath=([^&)\s]+)", badge.group(0))
    assert urlpath, badge.group(0)
    target = urlpath.group(1).replace("%2F", "/")
    assert target.startswith(("lab/tree/", "tree/")), target
    assert (ROOT / target.split("/tree/", 1)[1]).exists(), target


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(not os.environ.get("CI") and os.environ.get("RLM_JUPYTER_TEST_BINDER") != "1",
                    reason="installs everything into a fresh environment (minutes): runs under CI (any CI value) or RLM_JUPYTER_TEST_BINDER=1")
def test_postbuild_in_a_fresh_environment_then_notebook_01_runs(tmp_path):
    prefix = tmp_path / "image-python"
    subprocess.run([sys.executable, "-m", "venv", str(prefix)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH") and not k.endswith("_API_KEY")}
    env["NB_PYTHON_PREFIX"] = str(prefix)
    env["PATH"] = f"{prefix}/bin:{env['PATH']}"
    subprocess.run(["bash", "binder/postBuild"], cwd=ROOT, env=env, check=True, timeout=1500)
    py = str(prefix / "bin" / "python")
    assert (prefix / "share/jupyter/lab/settings/overrides.json").exists()
    subprocess.run([py, "-c", "import matplotlib, llama_cpp, rlm_jupyter"], env=env, check=True)
    run = (
        "import nbformat, sys; from nbclient import NotebookClient\n"
        "nb = nbformat.read('notebooks/01_what_an_rlm_is.ipynb', as_version=4)\n"
        "NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': 'notebooks'}}).execute()\n"
        "errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs if o.output_type == 'error']\n"
        "sys.exit(f'{errors[0].ename}: {errors[0].evalue}' if errors else 0)\n"
    )
    subprocess.run([py, "-c", run], cwd=ROOT, env=env, check=True, timeout=900)
