"""The teaching notebooks execute top to bottom with nbclient (a real kernel)."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

from rlm_jupyter.lm import local

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.slow
@pytest.mark.skipif(not local.is_available(), reason="embedded model not installed")
def test_teaching_notebook_runs_with_no_api_key(tmp_path):
    nb = nbformat.read(str(NOTEBOOKS / "01_how_an_rlm_thinks.ipynb"), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "answer: Ada Thorne" in text
    assert "AssertionError" in text
    assert (tmp_path / "lighthouse_run.ipynb").exists()
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
