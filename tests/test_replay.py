"""Replay: a recorded run (.jsonl / .ipynb) re-executed in a fresh kernel through the
``replay/<path>`` litellm provider, and the comparison of the two runs."""


import pytest

from conftest import repl
from rlm_jupyter import RLM
from rlm_jupyter.rlm import run_sync
from rlm_jupyter.core.records import Difference, compare, load_trajectory
from rlm_jupyter.lm.client import LMClient, LMError
from rlm_jupyter.lm.replay import Replayer, replay_model

CONTEXT = "\n".join(f"record {i}: value={i * 7}" for i in range(300))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A recorded run: two root turns with code, an llm_query and a batched sub-call."""
    from rlm_jupyter.lm.scripted import script

    sub = script("replay-sub", lambda msgs: "SUB(" + msgs[0]["content"][:12] + ")")
    root = script("replay-root", [
        "Peek first.\n" + repl("lines = context.splitlines()\nprint(len(lines), lines[42])"),
        repl("a = llm_query(lines[42])\nb = llm_query_batched([lines[1], lines[2]])\nprint(a, b)\n1 + 1"),
        "FINAL_VAR(a)",
    ])
    res = RLM(model=root, sub_model=sub).completion("What is record 42?", CONTEXT)
    assert res.status == "done"
    d = tmp_path_factory.mktemp("rec")
    return res, res.save(d / "run.jsonl"), res.save(d / "run.ipynb")


@pytest.mark.parametrize("kind", ["jsonl", "ipynb"])
def test_replay_reproduces_answer_and_outputs_in_a_fresh_kernel(recorded, kind):
    res, jsonl, ipynb = recorded
    path = jsonl if kind == "jsonl" else ipynb
    rec = load_trajectory(path)
    again = RLM(model=f"replay/{path}").completion(rec.root.query, CONTEXT)
    assert again.status == "done" and again.answer == res.answer == "SUB(record 42: v)"
    assert again.differences == []
    its, old = again.trajectory.iterations, res.trajectory.iterations
    assert [c.text for it in its for c in it.cells] == [c.text for it in old for c in it.cells]
    assert [c.outputs for it in its for c in it.cells] == [c.outputs for it in old for c in it.cells]
    assert [s.answer for s in its[1].subcalls] == [s.answer for s in old[1].subcalls]
    assert again.usage.usd == 0 and again.usage.calls == res.usage.calls


def test_replay_reports_where_the_re_execution_differs(recorded):
    res, jsonl, _ = recorded
    other = CONTEXT.replace("record 42: value=294", "record 42: CHANGED")
    again = RLM(model=replay_model(jsonl)).completion("What is record 42?", other)
    diffs = again.differences
    assert diffs and all(isinstance(d, Difference) for d in diffs)
    first = diffs[0]
    assert (first.where, first.what) == ("node 0, iteration 1, block 0", "output")
    assert "294" in first.recorded and "CHANGED" in first.replayed and "iteration 1" in str(first)
    assert any(d.what == "sub-call answer" for d in diffs)  # its prompt was never recorded


def test_one_model_id_replays_runs_one_after_another(recorded):
    _, jsonl, _ = recorded
    model = replay_model(jsonl)
    answers = [RLM(model=model).completion("What is record 42?", CONTEXT).answer for _ in range(2)]
    assert answers == ["SUB(record 42: v)"] * 2


def test_replayer_answers_root_calls_in_order_and_sub_calls_by_prompt(recorded):
    _, jsonl, _ = recorded
    r = Replayer(jsonl)
    system = {"role": "system", "content": "s"}
    assert r.answer([system, {"role": "user", "content": "u"}])[0].startswith("Peek first.")
    assert r.answer([{"role": "user", "content": "record 2: value=14"}])[0] == "SUB(record 2: va)"
    with pytest.raises(LookupError, match="no \\(further\\) sub-call"):
        r.answer([{"role": "user", "content": "record 2: value=14"}])
    r.answer([system, {"role": "assistant", "content": r.root_replies[0][2]}])
    r.answer([system, {"role": "assistant", "content": r.root_replies[1][2]}])
    with pytest.raises(LookupError, match="no more root replies"):
        r.answer([system, {"role": "assistant", "content": r.root_replies[2][2]}])


def test_exhausted_recording_is_a_clear_non_retried_error(recorded):
    _, jsonl, _ = recorded
    model = replay_model(jsonl)
    client = LMClient(num_retries=3, backoff_seconds=5)
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    for _ in range(3):
        reply = run_sync(client.acomplete(model, msgs))
        msgs += [{"role": "assistant", "content": reply.text}, {"role": "user", "content": "u"}]
    with pytest.raises(LMError, match="no more root replies.*after 1 attempt"):
        run_sync(client.acomplete(model, msgs))


def test_bad_recordings_fail_with_one_line(tmp_path):
    with pytest.raises(FileNotFoundError):
        replay_model(tmp_path / "missing.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="use a .jsonl or .ipynb"):
        load_trajectory(tmp_path / "x.txt")
    (tmp_path / "empty.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    with pytest.raises(ValueError, match="no RLM trajectory"):
        load_trajectory(tmp_path / "empty.ipynb")


def test_compare_of_a_run_with_itself_is_empty_and_other_runs_have_no_differences(recorded):
    res, jsonl, ipynb = recorded
    assert compare(res.trajectory, load_trajectory(jsonl)) == [] == compare(load_trajectory(ipynb), res.trajectory)
    assert res.differences is None  # not a replay


def test_a_depth_two_run_replays_its_child_rlm_too(scripted, tmp_path):
    root = scripted([
        repl("r = rlm_query('count the words', context='a b c d')\nprint('child said', r)"),
        repl("n = len(context.split())\nprint(n)"),  # the child RLM's turns
        "FINAL_VAR(n)",
        "FINAL_VAR(r)",
    ])
    res = RLM(model=root, sub_model=root, max_depth=2).completion("q", CONTEXT)
    assert res.answer == "4" and "0.c1" in res.trajectory.nodes
    path = res.save(tmp_path / "deep.jsonl")
    again = RLM(model=f"replay/{path}", max_depth=2).completion("q", CONTEXT)
    assert again.answer == "4" and again.differences == []
    assert again.trajectory.nodes["0.c1"].iterations[0].cells[0].text.strip() == "4"
