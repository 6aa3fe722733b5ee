"""Follow-up questions (issue 11): result.ask(...) and %%rlm --continue run a new query in the
same REPL environment; the earlier run's variables are still there and the root is told what
the earlier runs found."""

from __future__ import annotations

import pytest
from conftest import repl
from IPython.core.error import UsageError

from rlm_jupyter.core import events as ev
from rlm_jupyter.rlm import RLM


def _started(result):
    return next(e for e in result.trajectory.events if e.kind == ev.RUN_STARTED and e.node_id == "0")


def test_ask_sees_the_earlier_runs_variables_and_answers(scripted):
    root = scripted(
        [
            repl("secret = 41\nprint('stored')"),
            "FINAL(stored the secret)",
            repl("print(secret + 1, len(context))"),
            "FINAL(42)",
            repl("print(secret * 2)"),
            "FINAL(82)",
        ]
    )
    first = RLM(model=root, sub_model=root, cache=False, keep_environment=True).completion("Store a secret", "abcdef")
    try:
        assert first.answer == "stored the secret" and first.environment is not None
        second = first.ask("What is the secret plus one?")
        assert second.answer == "42" and second.status == "done"
        assert second.trajectory.iterations[0].cells[0].text.strip() == "42 6"  # variable and context kept
        assert second.run_id != first.run_id and second.environment is first.environment
        data = _started(second).data
        assert data["parent_run"] == first.run_id
        assert data["earlier_runs"] == [{"run_id": first.run_id, "query": "Store a secret", "answer": "stored the secret"}]
        assert second.trajectory.root.query == "What is the secret plus one?"
        assert second.trajectory.root.context_info == first.trajectory.root.context_info
        prompt = scripted.calls(root)[2][1]["content"]  # the follow-up root's first user message
        assert "follow-up question" in prompt and "Query: Store a secret" in prompt and "Answer: stored the secret" in prompt

        third = second.ask("And twice the secret?")
        assert third.answer == "82"
        runs = _started(third).data["earlier_runs"]
        assert [r["run_id"] for r in runs] == [first.run_id, second.run_id] and runs[1]["answer"] == "42"
        assert first.environment.alive  # still one kernel, still alive
    finally:
        first.close()
    assert not first.environment.alive
    with pytest.raises(RuntimeError, match="closed"):
        first.ask("again?")


def test_ask_needs_a_kept_environment(scripted):
    root = scripted(["FINAL(done)"])
    res = RLM(model=root, sub_model=root, cache=False).completion("q", "ctx")
    with pytest.raises(RuntimeError, match="not kept"):
        res.ask("more?")


def test_continue_magic_runs_in_the_earlier_environment(ip, scripted):
    root = scripted([repl("found = context.upper()\nprint(found)"), "FINAL(upper-cased)", repl("print(found[::-1])"), "FINAL(reversed)"])
    ip.user_ns["docs"] = "abc"
    ip.run_cell_magic("rlm", f"docs --out first -m {root} --sub-model {root}", "Upper-case it")
    first = ip.user_ns["first"]
    ip.run_cell_magic("rlm", f"--continue first --out second -m {root} --sub-model {root}", "Now reverse what you found")
    second = ip.user_ns["second"]
    assert second.answer == "reversed" and second.trajectory.iterations[0].cells[0].text.strip() == "CBA"
    assert _started(second).data["parent_run"] == first.run_id
    ip.run_cell_magic("rlm", f"--continue {first.run_id} -m {root} --sub-model {root}", "Once more")  # by run id too
    assert _started(ip.user_ns["_rlm"]).data["parent_run"] == first.run_id
    with pytest.raises(UsageError, match="no run 'nope'"):
        ip.run_cell_magic("rlm", "--continue nope", "q")
    with pytest.raises(UsageError, match="either a variable or --continue"):
        ip.run_cell_magic("rlm", "docs --continue first", "q")
    with pytest.raises(UsageError, match="which variable"):
        ip.run_cell_magic("rlm", "", "q")


def test_step_magic_needs_a_kernel(ip, scripted):
    root = scripted([repl("print(1)"), "FINAL(x)"])
    ip.user_ns["docs"] = "abc"
    with pytest.raises(UsageError, match="--step needs a Jupyter kernel"):
        ip.run_cell_magic("rlm", f"docs --step -m {root}", "q")
    ip.run_line_magic("rlm", "stop")  # nothing to stop: says so, no error
