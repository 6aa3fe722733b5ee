"""Host tools (issue 14): the user's functions called by name from the model's code, run in this
process (never shipped into the kernel), JSON in and out, described to the root, errors raised in
the model's code, recorded like sub-calls. Scripted root models drive a real environment kernel,
with the sandbox (where it works here) and without; ``%%rlm --tools`` in-process and in a real
notebook kernel."""

import asyncio
import os
import textwrap
import time

import pytest
from jupyter_client.manager import start_new_kernel
from traitlets import TraitError

from conftest import collect_iopub, echo, fail, host_pid, repl, unsendable
from rlm_jupyter import RLM
from rlm_jupyter.core import events as ev
from rlm_jupyter.core.tools import make_tools
from rlm_jupyter.jupyter.tree_html import iteration_html

SANDBOX = ["auto", "off"]  # auto = bubblewrap where it works here (as in CI), off = a plain child process
HOST_ONLY = "host-only-marker-5521"  # a string in a tool's body: it must never reach the kernel


def lookup(query: str, k: int = 3) -> list:
    """Find the k best rows for query.

    Returns a list of row strings."""
    time.sleep(0.2)
    secret = HOST_ONLY  # noqa: F841 - a host-side value the kernel never sees
    return [f"{query}-{i}" for i in range(k)]


async def async_double(x: int) -> int:
    await asyncio.sleep(0.01)
    return 2 * x


TOOLS = [lookup, echo, host_pid, fail, unsendable, async_double]

ROUND_TRIP = """
r = lookup('cats', k=2)
print(r)
print(echo(1, 'two', [3], k={'v': None}, flag=True))
print('pids', host_pid(), os.getpid())
print(async_double(21))
"""
IN_KERNEL = """
import inspect
try:
    inspect.getsource(lookup)
    print('source shown')
except TypeError:
    print('no source')
print(type(lookup).__name__, callable(lookup))
print(lookup.__doc__.splitlines()[0])
print('marker in kernel:', any('5521' in repr(v) for v in vars(lookup).values()))
"""
ERRORS = """
try:
    fail('caught')
except ToolError as e:
    print(type(e).__name__, e)
try:
    unsendable()
except ToolError as e:
    print('unsendable:', e)
try:
    echo(object())
except TypeError as e:
    print('bad argument:', e)
try:
    lookup()
except ToolError as e:
    print('bad call:', e)
"""


@pytest.mark.parametrize("sandbox", SANDBOX)
def test_tools_round_trip_errors_and_stay_in_the_host(scripted, sandbox):
    root = scripted([
        repl("import os" + ROUND_TRIP),
        repl(IN_KERNEL),
        repl(ERRORS),
        repl("fail('uncaught')\nprint('not reached')"),
        repl("del lookup\nlookup = 5"),
        repl("print(lookup('dogs', 1))"),
        "FINAL_VAR(r)",
    ])
    res = RLM(model=root, sub_model=root, sandbox=sandbox).completion("q", "ctx", tools=TOOLS)
    assert res.status == "done" and res.answer == "['cats-0', 'cats-1']"
    cells = [c for it in res.trajectory.iterations for c in it.cells]
    out = cells[0].text.splitlines()
    assert out[0] == "['cats-0', 'cats-1']"
    assert out[1] == "{'args': [1, 'two', [3]], 'kwargs': {'k': {'v': None}, 'flag': True}}"
    _, host, kernel = out[2].split()
    assert int(host) == os.getpid() != int(kernel)  # the tool ran in this (the host) process
    assert out[3] == "42"
    # in the kernel the tool is a stub: no source, no host code or values
    assert cells[1].text.splitlines() == [
        "no source", "HostTool True", "lookup(query: str, k: int = 3) -> list", "marker in kernel: False",
    ]
    errors = cells[2].text.splitlines()
    assert errors[0] == "ToolError fail(): ValueError: caught"
    assert errors[1].startswith("unsendable: unsendable(): TypeError: unsendable() returned a object") and "JSON values only" in errors[1]
    assert errors[2].startswith("bad argument: the arguments of echo() must be JSON values")
    assert errors[3].startswith("bad call: lookup(): TypeError: lookup(query: str, k: int = 3) -> list: missing a required argument")
    # an uncaught tool error is the block's error, shown like any other; the run goes on
    assert cells[3].status == "error" and "ToolError: fail(): ValueError: uncaught" in cells[3].text
    assert "----> 1 fail('uncaught')" in cells[3].text and "tools_side" not in cells[3].text
    assert not [o for o in cells[3].outputs if o["output_type"] == "stream"]  # the rest of the block did not run
    # a deleted or rebound tool comes back after the block, like the REPL's own helpers
    assert cells[5].text.strip() == "['dogs-0']"


@pytest.mark.parametrize("sandbox", SANDBOX)
def test_tool_calls_are_in_the_trajectory_and_the_live_view_with_time(scripted, sandbox):
    root = scripted([repl("print(lookup('cats', k=2))\ntry:\n    fail('no')\nexcept ToolError:\n    pass"), "FINAL(done)"])
    seen = []
    res = RLM(model=root, sub_model=root, sandbox=sandbox).completion("q", "ctx", on_event=seen.append, tools=[lookup, fail])
    assert res.status == "done"
    started = [e for e in seen if e.kind == ev.SUBCALL_STARTED]
    assert [e.data["op"] for e in started] == ["tool", "tool"] and [e.data["model"] for e in started] == ["lookup", "fail"]
    calls = res.trajectory.iterations[0].subcalls
    assert [c.node_id for c in calls] == ["0.s1", "0.s2"] and all(c.depth == 1 and c.parent_id == "0" for c in calls)
    ok, err = calls
    assert ok.prompt == "lookup('cats', k=2)" and ok.answer == '["cats-0", "cats-1"]' and ok.error is None
    assert ok.t_end - ok.t_start >= 0.2  # the tool sleeps 0.2 s: its time is the call's
    assert err.answer is None and err.error == "ValueError: no" and err.t_end is not None
    assert ok.usage.total_tokens == 0 and res.usage.calls == 2  # tools are no LM calls: only the 2 root calls
    html = iteration_html(res.trajectory, res.trajectory.root, res.trajectory.iterations[0])
    assert "<code>tool</code> · lookup · lookup(&#x27;cats&#x27;, k=2)" in html
    assert "ValueError: no" in html and "running" not in html


def test_the_root_is_told_each_tool_by_name_signature_and_docstring(scripted):
    root = scripted(["FINAL(x)"])
    RLM(model=root, sub_model=root, sandbox="off", subcalls=False).completion("q", "ctx", tools={"find": lookup})
    system = scripted.calls(root)[0][0]["content"]
    assert "`find(query: str, k: int = 3) -> list`" in system
    assert "Find the k best rows for query." in system and "Returns a list of row strings." in system
    assert "ToolError" in system and "lookup" not in system  # named as given


def test_tools_work_without_sub_calls_and_in_child_rlms(scripted):
    def reply(msgs):
        first_user = next(m["content"] for m in msgs if m["role"] == "user")
        turns = sum(1 for m in msgs if m["role"] == "assistant")
        if "Query: child" in first_user:
            return [repl("c = lookup('kid', k=1)[0]\nprint(c)"), "FINAL_VAR(c)"][min(turns, 1)]
        return [repl("r = rlm_query('child', context='x') + ' ' + lookup('top', 1)[0]\nprint(r)"), "FINAL_VAR(r)"][min(turns, 1)]

    root = scripted(reply)
    res = RLM(model=root, sub_model=root, sandbox="off", max_depth=2, tools=[lookup]).completion("q", "ctx")
    assert res.status == "done" and res.answer == "kid-0 top-0"
    assert [c.model for c in res.trajectory.subcalls.values()] == ["lookup", "lookup"]
    ablation = scripted([repl("print(lookup('x', 1))"), "FINAL(y)"])
    res = RLM(model=ablation, sub_model=ablation, sandbox="off", subcalls=False).completion("q", "ctx", tools=[lookup])
    assert res.trajectory.iterations[0].cells[0].text.strip() == "['x-0']"


def test_bad_tools_are_refused_before_any_run(scripted):
    root = scripted(["FINAL(never)"])
    with pytest.raises(TraitError, match="RLM.tools is not usable: tool name '<lambda>'"):
        RLM(tools=[lambda x: x])
    with pytest.raises(ValueError, match="'llm_query' is taken by the REPL"):
        RLM(model=root, sub_model=root, sandbox="off").completion("q", "ctx", tools={"llm_query": lookup})
    with pytest.raises(TypeError, match="tools must be callables"):
        RLM(model=root, sub_model=root, sandbox="off").completion("q", "ctx", tools=[lookup, "fail"])
    with pytest.raises(ValueError, match="two tools are named 'lookup'"):
        make_tools([lookup, lookup])
    assert scripted.calls(root) == []


def test_magic_tools_option_takes_notebook_functions(ip, scripted):
    root = scripted([repl("print(lookup('owl', k=1), host_pid())"), "FINAL(done)"])
    ip.user_ns.update(docs="x", lookup=lookup, host_pid=host_pid)
    ip.run_cell_magic("rlm", f"docs --out tooled -m {root} --sub-model {root} --tools lookup,host_pid -q", "q")
    result = ip.user_ns["tooled"]
    assert result.trajectory.iterations[0].cells[0].text.strip() == f"['owl-0'] {os.getpid()}"
    ip.run_line_magic("rlm", "close all")


def test_magic_tools_in_a_real_notebook_kernel_run_there():
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        setup = textwrap.dedent(
            """
            %load_ext rlm_jupyter
            import os
            from rlm_jupyter.lm.scripted import script
            calls = []
            def remember(fact: str) -> int:
                '''Store a fact in the notebook; returns how many are stored.'''
                calls.append(fact)
                return len(calls)
            root = script("tools-kernel-root", [
                "```repl\\nn = remember(context.upper())\\nprint(n, os.getpid())\\n```",
                "FINAL(stored)",
            ])
            docs = "a fact"
            """
        )
        assert kc.execute_interactive(setup, timeout=120)["content"]["status"] == "ok"
        msg_id = kc.execute("%%rlm docs --out r -m scripted/tools-kernel-root --tools remember -q\nq")
        msgs = collect_iopub(kc, msg_id)
        assert not [m for m in msgs if m["msg_type"] == "error"]
        out = []
        kc.execute_interactive(
            "print(r.answer, calls, r.trajectory.iterations[0].cells[0].text.split()[1] != str(os.getpid()))",
            output_hook=out.append, timeout=30,
        )
        text = "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")
        assert text.strip() == "stored ['A FACT'] True"  # the call reached the notebook's own list
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
