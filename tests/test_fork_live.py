"""Fork live (rlm_jupyter.forking): a recorded run continued from root iteration k by another
scripted model in a real kernel, with its REPL state restored from the recording."""

import pytest

from conftest import repl
from rlm_jupyter import RLM
from rlm_jupyter.core import events as ev
from rlm_jupyter.core.fork import fork

CONTEXT = "alpha beta gamma\n" * 20


@pytest.fixture
def recorded(scripted):
    sub = scripted(lambda msgs: "SUB-" + msgs[0]["content"])
    root = scripted([
        repl("x = 41\ns = llm_query('hello')\nprint(s)"),
        repl("print(x + 1)"),
        "FINAL(42)",
    ])
    res = RLM(model=root, sub_model=sub).completion("What is x + 1?", CONTEXT)
    assert res.answer == "42" and len(scripted.calls(sub)) == 1
    return res, root, sub


def started(res):
    return next(e for e in res.trajectory.events if e.kind == ev.RUN_STARTED and e.node_id == "0")


def test_fork_continues_with_another_model_from_restored_state(scripted, recorded, tmp_path):
    parent, old_root, sub = recorded
    new = scripted([repl("print(x, s)"), "FINAL(from new)"])
    res = RLM(model=new, sub_model=sub).fork(parent, 2, CONTEXT)
    assert res.status == "done" and res.answer == "from new"
    calls = scripted.calls(new)
    # its first call is iteration 2: exactly what the recorded root LM received then
    assert calls[0] == scripted.calls(old_root)[1]
    assert res.trajectory.iterations[0].index == 2
    assert res.trajectory.iterations[0].cells[0].text.strip() == "41 SUB-hello"  # restored, sub-call from the recording
    assert len(scripted.calls(sub)) == 1  # no live sub-call while restoring
    assert started(res).data["forked_from"] == {"run_id": parent.run_id, "step": 2}
    assert started(res).data["model"] == new
    # the same from a saved .jsonl recording
    path = tmp_path / "run.jsonl"
    parent.to_jsonl(path)
    again = scripted([repl("print(x + 100)"), "FINAL(ok)"])
    res2 = RLM(model=again, sub_model=sub).fork(str(path), 2, CONTEXT)
    assert res2.answer == "ok" and res2.trajectory.iterations[0].cells[0].text.strip() == "141"


def test_fork_with_code_replaces_the_code_of_step_k(scripted, recorded):
    parent, old_root, sub = recorded
    new = scripted(["FINAL(saw it)"])
    res = RLM(model=new, sub_model=sub).fork(parent, 2, CONTEXT, code="print(x * 2)")
    assert res.answer == "saw it"
    it2 = res.trajectory.iterations[0]
    assert it2.index == 2 and it2.reply == parent.trajectory.iterations[1].reply  # recorded reply, no LM call
    assert it2.cells[0].code == "print(x * 2)" and it2.cells[0].text.strip() == "82"
    calls = scripted.calls(new)
    assert len(calls) == 1 and calls[0][:-1] == scripted.calls(old_root)[2][:-1]
    assert "82" in calls[0][-1]["content"] and "print(x * 2)" in calls[0][-1]["content"]
    # the fork's own recording forks again, with the edited code in its history
    assert fork(res.trajectory, 2).code[-1] == "print(x * 2)"


def test_fork_with_another_query(scripted, recorded):
    parent, old_root, sub = recorded
    new = scripted(["FINAL(other)"])
    res = RLM(model=new, sub_model=sub).fork(parent.trajectory, 1, CONTEXT, query="How many words?")
    assert res.answer == "other" and started(res).data["query"] == "How many words?"
    first_user = [m for m in scripted.calls(new)[0] if m["role"] == "user"][-1]["content"]
    assert "How many words?" in first_user and "What is x + 1?" not in first_user


def test_bad_fork_arguments_are_one_line_errors(recorded):
    parent, old_root, sub = recorded
    rlm = RLM(model=old_root, sub_model=sub)
    with pytest.raises(ValueError, match="step must be between"):
        rlm.fork(parent, 9, CONTEXT)
    with pytest.raises(ValueError, match="1-based"):
        rlm.fork(parent, 0, CONTEXT)
    with pytest.raises(ValueError, match="no code block"):
        rlm.fork(parent, 3, CONTEXT, code="print(1)")
    with pytest.raises(TypeError, match="Trajectory"):
        rlm.fork(42, 1, CONTEXT)
