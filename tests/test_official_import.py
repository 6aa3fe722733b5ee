"""Import of the JSONL logs written by the official ``rlms`` package (0.1.3).

``data/official_rlms_0.1.3.jsonl`` was written by the real package (in the benchmark's venv,
``python -m bench setup-official``) running ``data/official_log_writer.py``: a scripted
client, max_depth=2, one ``llm_query`` and one ``rlm_query`` (a child RLM with its own logged
trajectory). When that venv exists, a fresh log is also written and imported.
"""

import json
import pathlib
import subprocess

import pytest

from rlm_jupyter.core.official import OfficialLogError, is_official_log, load_official_jsonl, official_runs
from rlm_jupyter.core.records import load_trajectory

DATA = pathlib.Path(__file__).parent / "data"
LOG = DATA / "official_rlms_0.1.3.jsonl"


def check_run(traj):
    root = traj.root
    assert root.model == "scripted-root" and root.status == "done" and root.answer == "HELLO 42"
    assert "What is the first word, shouted?" in root.query
    its = traj.iterations
    assert [it.index for it in its] == [1, 2, 3]
    assert its[0].reply.startswith("Let me look.") and its[0].cells[0].code.startswith("print(len(context))")
    assert its[0].cells[0].text == "16\nalpha\n" and its[0].cells[0].status == "ok"
    assert its[0].cells[0].outputs == [{"output_type": "stream", "name": "stdout", "text": "16\nalpha\n"}]
    sc = its[1].subcalls
    assert len(sc) == 1 and sc[0].prompt == "Say the word: alpha" and sc[0].answer == "HELLO" and sc[0].node_id == "0.s1"
    assert its[1].children == ["0.c1"]
    child = traj.nodes["0.c1"]
    assert child.parent_id == "0" and child.depth == 1 and child.query == "What is 6*7?" and child.answer == "42"
    assert child.iterations[0].cells[0].code.startswith("answer['content']")
    assert its[1].cells[0].text == "HELLO 42\n"
    started = [e for e in traj.events if e.kind == "iteration_started" and e.node_id == "0"]
    assert started[0].data["messages"][0]["role"] == "system"  # what the root LM saw
    ts = [e.t for e in traj.events]
    assert ts == sorted(ts)


def test_the_recorded_official_log_imports():
    assert is_official_log(LOG)
    traj = load_trajectory(LOG)  # the generic loader recognises the format
    check_run(traj)
    assert traj.run_id.startswith("rlms-")


def test_an_imported_run_exports_as_a_valid_notebook(tmp_path):
    from rlm_jupyter.notebook_io import read_notebook, write_notebook

    traj = load_official_jsonl(LOG)
    path = write_notebook(traj, tmp_path / "official.ipynb")
    check_run(read_notebook(path))


def test_several_completions_in_one_log_are_separate_runs(tmp_path):
    lines = LOG.read_text().splitlines()
    two = tmp_path / "two.jsonl"
    two.write_text("\n".join(lines + lines[1:]) + "\n")  # one metadata line, the iterations twice
    runs = official_runs(two)
    assert len(runs) == 2 and runs[0].run_id != runs[1].run_id
    for r in runs:
        check_run(r)
    with pytest.raises(IndexError, match="holds 2 run"):
        load_official_jsonl(two, run=2)


def test_malformed_logs_fail_with_the_line_number(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(LOG.read_text().splitlines()[0] + "\n{oops\n")
    with pytest.raises(OfficialLogError, match=r"bad.jsonl:2: not JSON"):
        load_official_jsonl(bad)
    ours = tmp_path / "ours.jsonl"
    ours.write_text(json.dumps({"kind": "run_started", "node_id": "0", "parent_id": None, "depth": 0, "t": 0, "data": {}}) + "\n")
    assert not is_official_log(ours) and load_trajectory(ours).root is not None


def test_a_log_written_now_by_the_installed_official_package_imports(tmp_path):
    from bench.official import OfficialUnavailable, ensure_official

    try:
        py = ensure_official(install=False)
    except OfficialUnavailable as exc:
        pytest.skip(f"rlms venv not set up (python -m bench setup-official): {exc}")
    out = subprocess.run([str(py), str(DATA / "official_log_writer.py"), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    check_run(load_trajectory(out.stdout.strip().splitlines()[-1]))


def test_api_keys_in_the_logged_backend_kwargs_are_not_imported(tmp_path):
    lines = LOG.read_text().splitlines()
    meta = json.loads(lines[0])
    meta["backend_kwargs"] = {"model_name": "m", "api_key": "sk-SECRET", "extra": {"auth_token": "t0k"}}
    log = tmp_path / "keyed.jsonl"
    log.write_text("\n".join([json.dumps(meta)] + lines[1:]) + "\n")
    traj = load_official_jsonl(log)
    dumped = "".join(e.to_json() for e in traj.events)
    assert "sk-SECRET" not in dumped and "t0k" not in dumped and '"model_name": "m"' in dumped

