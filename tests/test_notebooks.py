"""The teaching notebooks (notebooks/NN_*.ipynb) execute top to bottom with nbclient in a real
kernel and no API key, against the replay model (notebooks/recordings/), the LM cache and the
embedded model; they are committed without outputs; the recordings they replay are small and
load.

The execution tests are ``slow`` (the embedded model answers live in notebooks 01, 03 and 05).
They skip where the embedded model is not installed, unless RLM_JUPYTER_REQUIRE_LOCAL=1 (CI).
"""

import json
import os
import pathlib
import time

import nbformat
import pytest
from nbclient import NotebookClient

from rlm_jupyter.core.records import load_trajectory
from rlm_jupyter.lm import local

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
RECORDINGS = NOTEBOOKS / "recordings"
ALL = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")

# What each notebook must print when it ran as meant (besides having no error output).
EXPECT = {
    "01_what_an_rlm_is.ipynb": ["differences between this replay and the recording: none", "stuffed answer", "status:"],
    "02_aggregation.ipynb": ["true count: 7", "No OPENAI_API_KEY in this kernel: skipped."],
    "03_stepping.ipynb": ["EDITED by the user", "stopping 1 stepped run(s)", "second run, from the cache"],
    "04_bring_your_own_model.ipynb": ["DEMO_API_KEY visible: False", "status: limit", "skipped"],
    "05_going_deeper.ipynb": ["concurrency 16", "RLM node 0.c1 (depth 1)", "-> blocked", "after the crash"],
}


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _text(nb) -> str:
    parts = []
    for c in _code_cells(nb):
        for o in c.outputs:
            parts.append(o.get("text", "") if o.output_type == "stream" else str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def test_five_notebooks_each_answer_a_question_and_state_their_running_time():
    assert ALL == list(EXPECT), ALL
    for name in ALL:
        nb = nbformat.read(str(NOTEBOOKS / name), as_version=4)
        nbformat.validate(nb)
        first = nb.cells[0]
        assert first.cell_type == "markdown" and first.source.startswith("# "), name
        assert "Running time: about" in first.source and "RUNTIME" not in first.source, name
        assert "**The question:**" in first.source, name


def test_notebooks_are_committed_without_outputs():
    for name in ALL:
        nb = nbformat.read(str(NOTEBOOKS / name), as_version=4)
        for c in _code_cells(nb):
            assert c.outputs == [] and c.execution_count is None, f"{name}: a code cell has outputs: {c.source[:60]!r}"
        assert "widgets" not in nb.metadata, f"{name}: saved widget state"


def test_recordings_are_small_load_and_are_all_used():
    jsonl = sorted(RECORDINGS.glob("*.jsonl"))
    assert jsonl
    used = "\n".join((NOTEBOOKS / n).read_text() for n in ALL)
    for path in jsonl:
        assert path.stat().st_size < 100_000, f"{path.name} is {path.stat().st_size:,} bytes"
        traj = load_trajectory(path)
        assert traj.root is not None and traj.root.status in ("done", "max_iterations", "limit")
        meta = json.loads(path.with_suffix(".meta.json").read_text())
        assert meta["query"] == traj.root.query and meta["answer"] == traj.root.answer
        assert f"recordings/{path.name}" in used, f"{path.name} is not used by any notebook"
    for path in RECORDINGS.glob("*.meta.json"):
        meta = json.loads(path.read_text())
        assert {"query", "truth", "answer", "correct", "wall_seconds", "recorded", "machine"} <= set(meta), path.name
        assert f"recordings/{path.name}" in used, f"{path.name} is not used by any notebook"


def test_scripted_roots_are_labelled_as_such():
    """A scripted trajectory appears only where the notebook says so."""
    for name in ALL:
        nb = nbformat.read(str(NOTEBOOKS / name), as_version=4)
        md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
        code = "\n".join(c.source for c in _code_cells(nb))
        if "script(" in code or "02_strategy" in code:
            assert "scripted" in md, f"{name} uses a scripted model without saying so"


def _require_local():
    if not local.is_available():
        if os.environ.get("RLM_JUPYTER_REQUIRE_LOCAL") == "1":
            raise RuntimeError("the embedded model is required (RLM_JUPYTER_REQUIRE_LOCAL=1) but not installed")
        pytest.skip("embedded model not installed")


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ALL)
def test_notebook_executes_with_no_api_key(name, monkeypatch):
    _require_local()
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    nb = nbformat.read(str(NOTEBOOKS / name), as_version=4)
    t0 = time.monotonic()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    print(f"{name}: executed in {time.monotonic() - t0:.0f} s (load average {os.getloadavg()[0]:.1f})")
    errors = [o for c in _code_cells(nb) for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{name}: {errors[0].ename}: {errors[0].evalue}"
    stderr = "\n".join(o.text for c in _code_cells(nb) for o in c.outputs if o.output_type == "stream" and o.name == "stderr")
    assert "Traceback" not in stderr, stderr[-2000:]
    text = _text(nb)
    for expected in EXPECT[name]:
        assert expected in text, f"{name}: {expected!r} not in its outputs"
