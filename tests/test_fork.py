"""Fork at the data level: the root LM's message history after iteration k (checked against
what the scripted root LM really received) and the code that restores the REPL state (run in a
fresh real kernel)."""

import asyncio

import pytest

from conftest import repl
from rlm_jupyter import RLM
from rlm_jupyter.rlm import run_sync
from rlm_jupyter.core import events as ev
from rlm_jupyter.core.fork import fork
from rlm_jupyter.core.limits import Budget, Limits
from rlm_jupyter.core.loop import RLMNode, RunSettings, RunTree
from rlm_jupyter.core.trajectory import Trajectory
from rlm_jupyter.environment.kernel import KernelREPL
from rlm_jupyter.lm.client import LMClient

CONTEXT = "alpha beta gamma delta\n" * 50


@pytest.mark.parametrize("style", ["standard", "small"])
def test_rebuilt_messages_are_what_the_root_lm_received(scripted, style):
    root = scripted([
        "Look.\n" + repl("x = 1\nprint(context[:10])"),
        "Thinking, no code.",
        repl("y = x + 1\nprint(y)") + "\nFINAL(early)",
        repl("1/0"),
        "FINAL_VAR(nope)",
        repl("print('a' * 50)") + "\nand\n" + repl("print('b')"),
        "FINAL()",
        "FINAL(done)",
    ])
    res = RLM(model=root, sub_model=root, prompt_style=style, max_output_chars=30).completion("Which word?", CONTEXT)
    assert res.answer == "done"
    calls = scripted.calls(root)
    assert len(calls) == 8
    for k in range(8):
        fp = fork(res.trajectory, k)
        assert fp.messages + [fp.next_user_message()] == calls[k], f"step {k}"
    fp = fork(res.trajectory, 0)
    assert fp.code == [] and fp.messages[-1]["role"] in ("system", "assistant") and fp.step == 0


def run_code(fp, context, probe):
    """Restore ``fp`` in a fresh kernel (sub-calls answered from the recording), run ``probe``."""
    answers = {sc.prompt: sc.answer for sc in fp.subcalls}

    async def handler(op, payload):
        assert op == "llm_query"
        return answers[payload["prompt"]]

    async def go():
        env = KernelREPL(timeout=60)
        try:
            await env.start(handler)
            await env.load_context(context)
            for code in fp.code:
                await env.execute(code)
            return (await env.execute(probe)).text.strip()
        finally:
            await env.shutdown()

    return asyncio.run(go())


def test_fork_restores_the_repl_state_of_step_k(scripted):
    sub = scripted(lambda msgs: "SUB-" + msgs[0]["content"])
    root = scripted([
        repl("x = 1\nprint(x)"),
        repl("x = x + 10\ny = llm_query('hi ' + context[:5])\nprint(x, y)"),
        "FINAL_VAR(x)",
    ])
    res = RLM(model=root, sub_model=sub).completion("q", CONTEXT)
    assert res.answer == "11"
    one, two = fork(res.trajectory, 1), fork(res.trajectory, 2)
    assert one.code == [res.trajectory.iterations[0].cells[0].code] and one.subcalls == []
    assert [s.answer for s in two.subcalls] == ["SUB-hi alpha"]
    probe = "print(x, globals().get('y'))"
    assert run_code(one, CONTEXT, probe) == "1 None"
    assert run_code(two, CONTEXT, probe) == "11 SUB-hi alpha"


def test_a_kernel_restart_drops_the_code_before_it(scripted):
    root = scripted([repl("x = 1"), repl("import os\nos._exit(3)"), repl("z = 5\nprint(z)"), "FINAL(ok)"])
    res = RLM(model=root, sub_model=root).completion("q", CONTEXT)
    assert res.trajectory.iterations[1].cells[0].status == "died"
    assert [c.strip() for c in fork(res.trajectory, 1).code] == ["x = 1"]
    assert fork(res.trajectory, 2).code == []
    fp = fork(res.trajectory, 3)
    assert [c.strip() for c in fp.code] == ["z = 5\nprint(z)"]
    assert "restarted" in fp.messages[-2]["content"]  # the model was told, and so is the fork
    assert run_code(fp, CONTEXT, "print(z, 'x' in globals(), len(context))") == f"5 False {len(CONTEXT)}"


def test_step_out_of_range_and_empty_trajectory():
    with pytest.raises(ValueError, match="no root run"):
        fork(Trajectory(), 0)
    info = {"type": "str", "total_chars": 3, "n_lines": 1}
    t = Trajectory.from_events([ev.Event(ev.RUN_STARTED, "0", None, 0, 0.0, {"query": "q", "context_info": info, "limits": {"max_iterations": 5}}, "r1")])
    assert fork(t, 0).parent_run_id == "r1"
    with pytest.raises(ValueError, match="between 0 and 0"):
        fork(t, 1)
    t.root.context_info = {"source": "rlms"}
    with pytest.raises(ValueError, match="no context description"):
        fork(t, 0)


def test_a_continuation_records_its_parent_run_and_step(scripted):
    first = scripted([repl("x = 1"), "FINAL_VAR(x)"])
    parent = RLM(model=first, sub_model=first).completion("q", CONTEXT)
    fp = fork(parent.trajectory, 1)
    assert fp.run_started_fields() == {"forked_from": {"run_id": parent.run_id, "step": 1}}
    other = scripted(["FINAL(continued)"])
    settings = RunSettings(model=other, sub_model=other, run_info=fp.run_started_fields())
    bus = ev.EventBus(run_id="child-run")
    traj = Trajectory()
    bus.subscribe(traj.apply)
    tree = RunTree(settings, LMClient(), lambda node: KernelREPL(timeout=60), bus, Budget(Limits()))
    result = run_sync(RLMNode(tree).run("another question", CONTEXT))
    assert result.answer == "continued"
    started = traj.events[0]
    assert started.kind == ev.RUN_STARTED and started.data["forked_from"] == {"run_id": parent.run_id, "step": 1}
    assert started.data["max_output_chars"] == settings.max_output_chars  # what fork() needs to rebuild prompts


def test_a_stepped_run_forks_with_the_edited_code_skips_and_user_messages(scripted):
    from rlm_jupyter.core.gate import SKIP, Decision

    root = scripted([repl("x = 1\nprint(x)"), repl("x = -5"), repl("print(x)"), "FINAL(ok)"])

    async def gate(node, iteration, block, code):
        if iteration == 1:
            node.tree.say.append("use a hundred")
            return Decision("edit", "x = 100\nprint(x)")
        return SKIP if iteration == 2 else Decision("run")

    settings = RunSettings(model=root, sub_model=root)
    bus = ev.EventBus(run_id="stepped")
    traj = Trajectory()
    bus.subscribe(traj.apply)
    tree = RunTree(settings, LMClient(), lambda node: KernelREPL(timeout=60), bus, Budget(Limits()))
    tree.gate = gate
    assert run_sync(RLMNode(tree).run("q", CONTEXT)).answer == "ok"
    calls = scripted.calls(root)
    for k in range(4):
        fp = fork(traj, k)
        assert fp.messages + [fp.next_user_message(fp.next_said)] == calls[k], f"step {k}"
    assert fork(traj, 1).next_said == ["use a hundred"] and fork(traj, 2).next_said == []
    fp = fork(traj, 3)
    assert [c.strip() for c in fp.code] == ["x = 100\nprint(x)", "print(x)"]  # what ran; not the skipped block
    assert run_code(fp, CONTEXT, "print(x)") == "100"
