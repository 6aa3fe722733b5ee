"""Step mode from Python: RLM.start() sessions pause before each root code block (issue 11)."""

from __future__ import annotations

import pytest

from rlm_jupyter.core import events as ev
from rlm_jupyter.core.gate import SKIPPED_OUTPUT, USER_MESSAGE_PREFIX, Decision
from rlm_jupyter.rlm import RLM

from conftest import kernel_children, repl


def _rlm(root, **kw):
    return RLM(model=root, sub_model=root, cache=False, **kw)


def test_step_edit_skip_say_then_run_to_the_end(scripted):
    root = scripted(
        [
            repl("x = 1\nprint('first', x)"),
            repl("x = x + 1\nprint('model version', x)"),
            repl("x = -100\nprint('must not run')"),
            "FINAL_VAR(x)",
        ]
    )
    s = _rlm(root, step=True).start("What is x?", "ctx")
    p = s.step(timeout=60)  # the first proposal: nothing ran yet
    assert p is not None and (p.iteration, p.block) == (1, 0) and "print('first', x)" in p.code
    assert s.trajectory.iterations[0].cells == []  # paused before the block ran
    p = s.step(timeout=60)  # run block 1 as proposed; pause before iteration 2's block
    assert p.iteration == 2 and "model version" in p.code
    p = s.edit("x = x + 41\nprint('edited version', x)", timeout=60)
    assert p.iteration == 3 and "must not run" in p.code
    s.say("x is special, answer with it")
    assert s.skip(timeout=60) is None  # the FINAL_VAR reply ends the run
    result = s.run(timeout=60)
    assert result.status == "done" and result.answer == "42"

    its = result.trajectory.iterations
    assert its[0].cells[0].text.strip() == "first 1" and its[0].cells[0].original_code is None
    edited = its[1].cells[0]
    assert edited.code.startswith("x = x + 41") and "model version" in edited.original_code
    assert edited.text.strip() == "edited version 42"
    skipped = its[2].cells[0]
    assert skipped.status == "skipped" and skipped.text == "" and "must not run" in skipped.code
    started = [e for e in result.trajectory.events if e.kind == ev.CODE_STARTED]
    assert "original_code" in started[1].data and "original_code" not in started[0].data

    calls = scripted.calls(root)
    assert "edited version 42" in calls[2][-1]["content"] and "the user edited this block" in calls[2][-1]["content"]
    last = calls[3][-1]["content"]
    assert SKIPPED_OUTPUT in last and USER_MESSAGE_PREFIX + "x is special, answer with it" in last
    said = [e for e in result.trajectory.events if e.kind == ev.USER_MESSAGE]
    assert [(e.data["iteration"], e.data["text"]) for e in said] == [(4, "x is special, answer with it")]
    assert "message from the user: x is special, answer with it" in its[3].notices


def test_continue_stops_pausing(scripted):
    root = scripted([repl("print(1)"), repl("print(2)"), "FINAL(two blocks)"])
    s = _rlm(root, step=True).start("q", "ctx")
    assert s.step(timeout=60).iteration == 1
    result = s.run(timeout=60)
    assert result.answer == "two blocks" and [c.status for it in result.trajectory.iterations for c in it.cells] == ["ok", "ok"]


def test_stop_while_paused_ends_the_run_and_its_kernel(scripted):
    root = scripted([repl("print(1)"), "FINAL(never)"])
    before = kernel_children()
    s = _rlm(root, step=True).start("q", "ctx")
    assert s.step(timeout=60) is not None
    result = s.stop()
    assert result.status == "stopped" and result.answer is None
    assert result.trajectory.root.status == "stopped"
    assert not (kernel_children() - before)


def test_stop_decision_stops_the_run(scripted):
    root = scripted([repl("print(1)"), "FINAL(never)"])
    s = _rlm(root, step=True).start("q", "ctx")
    assert s.step(timeout=60) is not None
    assert s.decide(Decision("stop"))
    assert s.run(timeout=60).status == "stopped"


def test_unstepped_session_runs_freely_and_step_pauses_at_the_next_block(scripted):
    root = scripted([repl("print(1)"), "FINAL(free)"])
    s = _rlm(root).start("q", "ctx")  # RLM.step is False: no pause
    assert s.run(timeout=60).answer == "free"
    assert s.done and s.pending is None and s.step(timeout=5) is None


def test_bad_decisions_and_input_are_clear_errors(scripted):
    root = scripted([repl("print(1)"), "FINAL(x)"])
    with pytest.raises(ValueError, match="unknown step decision"):
        Decision("jump")
    with pytest.raises(ValueError, match="needs the code"):
        Decision("edit")
    with pytest.raises(TypeError, match="query must be a str"):
        _rlm(root).start(3, "ctx")
    s = _rlm(root, step=True).start("q", "ctx")
    with pytest.raises(RuntimeError, match="not paused"):
        s.skip(timeout=60)  # nothing proposed yet
    with pytest.raises(ValueError, match="non-empty"):
        s.say("  ")
    s.step(timeout=60)
    with pytest.raises(TypeError):
        s.edit(None)
    assert s.run(timeout=60).answer == "x"
