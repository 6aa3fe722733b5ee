"""The CLI, JSONL and .ipynb exports."""

import json
import subprocess
import sys

import nbformat
import pytest

from conftest import repl
from rlm_jupyter import RLM, load_jsonl
from rlm_jupyter.cli import main
from rlm_jupyter.notebook_io import read_notebook

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


@pytest.fixture
def run_result(scripted):
    sub = scripted(lambda m: "sub answer")
    root = scripted([
        "Let me look at the data.\n" + repl(
            "import IPython.display as d\n"
            f"d.display({{'image/png': '{PNG}', 'text/plain': 'img'}}, raw=True)\n"
            "print(len(context))\nx = llm_query_batched(['a', 'b'])"
        ),
        repl("1/0"),
        "FINAL(the end)",
    ])
    return RLM(model=root, sub_model=sub).completion("What is it?", "some context text")


def test_jsonl_round_trip_rebuilds_the_same_trajectory(run_result, tmp_path):
    path = run_result.to_jsonl(tmp_path / "run.jsonl")
    again = load_jsonl(path)
    assert [e.kind for e in again.events] == [e.kind for e in run_result.trajectory.events]
    assert again.root.answer == "the end" and len(again.subcalls) == 2
    assert again.iterations[0].cells[0].outputs == run_result.trajectory.iterations[0].cells[0].outputs


def test_notebook_export_has_real_cells_outputs_and_round_trips(run_result, tmp_path):
    path = run_result.to_notebook(tmp_path / "run.ipynb")
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.source for c in code][1] == "1/0"
    first = code[0]
    assert first.execution_count == 1 and first.metadata["rlm"]["iteration"] == 1
    assert f"rlm-run-{run_result.run_id}" in first.metadata["tags"]
    assert [o.output_type for o in first.outputs] == ["display_data", "stream"]
    assert first.outputs[0].data["image/png"].startswith("iVBOR")
    assert code[1].outputs[0].output_type == "error" and code[1].outputs[0].ename == "ZeroDivisionError"
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "Let me look at the data." in md and "0.s1" in md and "sub answer" in md and "the end" in md
    again = read_notebook(path)
    assert again.root.answer == "the end" and len(again.events) == len(run_result.trajectory.events)


def test_save_rejects_unknown_suffix(run_result, tmp_path):
    with pytest.raises(ValueError, match=".ipynb or .jsonl"):
        run_result.save(tmp_path / "run.txt")


def test_cli_prints_progress_on_stderr_and_answer_on_stdout(scripted, tmp_path, capsys):
    root = scripted([repl("print(len(context))"), "FINAL(cli answer)"])
    ctx = tmp_path / "doc.txt"
    ctx.write_text("hello world")
    out = tmp_path / "traj.jsonl"
    code = main(["run", "--context", str(ctx), "--query", "q", "--model", root, "--sub-model", root, "--out", str(out)])
    cap = capsys.readouterr()
    assert code == 0 and cap.out.strip() == "cli answer"
    assert "iteration 1/30" in cap.err and "code block 1: ok" in cap.err and f"trajectory saved to {out}" in cap.err
    assert load_jsonl(out).iterations[0].cells[0].text.strip() == "11"


def test_cli_reads_json_and_folders(scripted, tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("A")
    (tmp_path / "c.json").write_text(json.dumps({"k": 1}))
    for ctx, expect in ((tmp_path / "d", "dict ['a.txt']"), (tmp_path / "c.json", "dict ['k']")):
        root = scripted([repl("print(type(context).__name__, sorted(context))"), "FINAL(ok)"])
        out = tmp_path / "t.ipynb"
        assert main(["run", "--context", str(ctx), "--query", "q", "-m", root, "--sub-model", root, "-o", str(out)]) == 0
        assert read_notebook(out).iterations[0].cells[0].text.strip() == expect
        capsys.readouterr()


def test_cli_bad_input_exits_2_with_a_message(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "rlm_jupyter.cli", "run", "--context", str(tmp_path / "missing.txt"), "--query", "q"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 2 and "no such file or folder" in r.stderr and r.stdout == ""
    r = subprocess.run(
        [sys.executable, "-m", "rlm_jupyter.cli", "run", "--context", str(tmp_path), "--query", "q", "--out", "x.txt"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 2 and ".ipynb or .jsonl" in r.stderr


@pytest.mark.parametrize(
    "option,value",
    [("--max-iterations", "-3"), ("--max-iterations", "0"), ("--max-depth", "0"), ("--timeout", "0"),
     ("--timeout", "nan"), ("--budget", "-1"), ("--max-seconds", "0")],
)
def test_cli_rejects_non_positive_settings_with_exit_2(tmp_path, capsys, option, value):
    ctx = tmp_path / "c.txt"
    ctx.write_text("abc")
    with pytest.raises(SystemExit) as exc:
        main(["run", "--context", str(ctx), "--query", "q", "-m", "scripted/never-called", option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "must be" in err and "Traceback" not in err
