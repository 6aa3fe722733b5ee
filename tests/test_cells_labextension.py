"""The TypeScript side of issue 5: the extension's unit tests (jest) and its build output.

``labextension/`` is built by ``pip install`` (hatch-jupyter-builder) or ``bash labextension/build.sh``;
these tests need its ``node_modules`` (skipped without them, except under CI where they fail).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
EXT = REPO / "labextension"
BUILT = REPO / "rlm_jupyter" / "labextension"


def _require(ok: bool, reason: str) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def test_typescript_unit_tests_pass():
    _require((EXT / "node_modules" / "jest").is_dir() and shutil.which("node") is not None,
             "labextension/node_modules is missing: run bash labextension/build.sh")
    proc = subprocess.run(["node", "node_modules/jest/bin/jest.js", "--ci"], cwd=EXT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Tests:" in proc.stderr and "failed" not in proc.stderr.split("Tests:")[1].splitlines()[0]


def test_the_prebuilt_extension_is_there_and_declares_the_comm_plugin():
    _require((BUILT / "package.json").is_file(), "rlm_jupyter/labextension is not built: run bash labextension/build.sh")
    meta = json.loads((BUILT / "package.json").read_text())
    assert meta["name"] == "rlm-jupyter-cells"
    assert meta["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")
    assert (BUILT / meta["jupyterlab"]["_build"]["load"]).is_file()
    source = json.loads((EXT / "package.json").read_text())
    assert source["name"] == meta["name"] and source["version"] == meta["version"]
