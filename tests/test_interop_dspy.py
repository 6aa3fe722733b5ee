"""JupyterInterpreter: DSPy's CodeInterpreter protocol (dspy/primitives/code_interpreter.py)
on the real environment kernel, and dspy.RLM running on it with DSPy's DummyLM.

Behaviour checked is the protocol's documented one: lifecycle (idempotent start, terminal
shutdown, fresh sessions), persistence, the error taxonomy (SyntaxError / CodeExecutionError /
CodeInterpreterError), host tools, SUBMIT (untyped and typed), last expressions, variables.
"""

from __future__ import annotations

import contextvars
import os
import signal
import time

import dspy
import pandas as pd
import pytest
from dspy.primitives.code_interpreter import CodeExecutionError, CodeInterpreter, CodeInterpreterError, FinalOutput
from dspy.utils.callback import BaseCallback
from dspy.utils.dummies import DummyLM

from rlm_jupyter.interop.dspy import JupyterInterpreter, check_syntax

from conftest import echo as describe
from conftest import fail, host_pid, kernel_children, unsendable

REQUEST = contextvars.ContextVar("request", default="unset")


def add(a: int, b: int = 0) -> int:
    """Add two numbers."""
    return a + b


def which_request() -> str:
    return REQUEST.get()


async def async_double(x: int) -> int:
    return 2 * x


TOOLS = {
    "add": add,
    "describe": describe,
    "host_pid": host_pid,
    "fail": fail,
    "unsendable": unsendable,
    "which_request": which_request,
    "async_double": async_double,
}


@pytest.fixture(scope="module")
def interp():
    it = JupyterInterpreter(tools=dict(TOOLS), timeout=60)
    it.start()
    yield it
    it.shutdown()


@pytest.fixture
def typed(interp):
    interp.output_fields = [{"name": "answer", "type": "str"}, {"name": "n", "type": "int"}, {"name": "extra"}]
    yield interp
    interp.output_fields = None


def test_implements_the_protocol_without_starting():
    it = JupyterInterpreter()
    assert isinstance(it, CodeInterpreter)
    assert it.repl is None  # construction allocates nothing
    assert isinstance(JupyterInterpreter.execution_instructions, str) and "SUBMIT" in JupyterInterpreter.execution_instructions
    make = JupyterInterpreter.factory(timeout=5)
    assert make.execution_instructions == JupyterInterpreter.execution_instructions
    assert make().timeout == 5.0
    it.shutdown()  # never started: still fine, and terminal
    with pytest.raises(CodeInterpreterError):
        it.start()


def test_start_is_idempotent_and_state_persists(interp):
    repl = interp.repl
    interp.start()
    interp.start()
    assert interp.repl is repl
    assert interp.execute("x = 41") is None
    interp.start()
    assert interp.execute("x + 1") == 42


def test_printed_output_and_last_expression(interp):
    assert interp.execute("print('hello')") == "hello"
    assert interp.execute("{'a': [1, 2.5, None, True]}") == {"a": [1, 2.5, None, True]}
    assert interp.execute("'abc'") == "abc"
    assert interp.execute("{3, 1, 2}") == "{1, 2, 3}"  # not JSON: the repr a notebook shows
    assert interp.execute("print('n =', 3)\n3 * 7") == "n = 3\n21"  # both, as a notebook shows them
    assert interp.execute("z = 1;") is None
    assert interp.execute("!echo from-shell") == "from-shell"  # IPython syntax is valid


def test_syntax_error_runs_nothing(interp):
    with pytest.raises(SyntaxError, match=r"line 2: 'y = = 2'"):
        interp.execute("before_syntax = 1\ny = = 2")
    assert interp.execute("'before_syntax' in globals()") is False
    with pytest.raises(SyntaxError):
        check_syntax("def f(:\n  pass")
    check_syntax("%time 1\nawait __import__('asyncio').sleep(0)")  # magics and top-level await parse


def test_runtime_errors_are_recoverable(interp):
    with pytest.raises(CodeExecutionError) as exc:
        interp.execute("print('partial')\nkept = 5\n1 / 0")
    message = str(exc.value)
    assert "partial" in message and "ZeroDivisionError" in message and "1 / 0" in message
    assert not isinstance(exc.value, SyntaxError)
    # a SyntaxError raised while running (not at parse time) is the code's error
    with pytest.raises(CodeExecutionError, match="SyntaxError"):
        interp.execute("exec('1 +')")
    assert interp.execute("kept") == 5  # the session goes on, state included


def test_tools_run_in_the_host_with_args_and_kwargs(interp):
    assert interp.execute("add(2, b=3)") == 5
    assert interp.execute("describe(1, 'two', [3], k={'v': None})") == {
        "args": [1, "two", [3]], "kwargs": {"k": {"v": None}}
    }
    kernel_pid = interp.execute("import os\nos.getpid()")
    assert interp.execute("host_pid()") == os.getpid() != kernel_pid
    assert interp.execute("async_double(21)") == 42
    assert "Add two numbers." in interp.execute("add.__doc__")
    token = REQUEST.set("request-7")  # the caller's contextvars reach the tool (dspy.context)
    try:
        assert interp.execute("which_request()") == "request-7"
    finally:
        REQUEST.reset(token)


def test_tool_errors_reach_the_code(interp):
    with pytest.raises(CodeExecutionError, match="fail\\(\\): ValueError: bad input") as exc:
        interp.execute("fail('bad input')")
    assert "----> 1 fail('bad input')" in str(exc.value) and "kernel_side" not in str(exc.value)
    out = interp.execute("try:\n    fail('caught')\nexcept Exception as e:\n    print(type(e).__name__, e)")
    assert out == "ToolError fail(): ValueError: caught"
    with pytest.raises(CodeExecutionError, match="cannot be sent to the REPL"):
        interp.execute("unsendable()")
    with pytest.raises(CodeExecutionError, match="must be JSON values"):
        interp.execute("add(object())")


def test_tools_dict_is_mutable(interp):
    interp.tools["shout"] = lambda text: text.upper()
    try:
        assert interp.execute("shout('hi')") == "HI"
    finally:
        del interp.tools["shout"]
    with pytest.raises(CodeExecutionError, match="NameError"):
        interp.execute("shout('hi')")


def test_a_tool_may_take_a_task_helpers_name(interp):
    """The kernel's task helpers (grep, search, chunks, ...) are not reserved: a DSPy tool
    named `search` is the one the code calls, also in a later block."""
    interp.tools["search"] = lambda query, k=3: f"host search {query} {k}"
    try:
        assert interp.execute("search('cats', k=2)") == "host search cats 2"
        assert interp.execute("search('dogs')") == "host search dogs 3"
    finally:
        del interp.tools["search"]


def test_dspy_callbacks_see_executions_and_tool_calls(interp):
    seen = []

    class Recorder(BaseCallback):
        def on_interpreter_execute_start(self, call_id, instance, inputs):
            seen.append(("execute", inputs["code"]))

        def on_interpreter_tool_call_start(self, call_id, instance, inputs):
            seen.append(("tool", inputs["tool_name"], inputs["args"], inputs["kwargs"]))

    interp.callbacks = [Recorder()]
    try:
        interp.execute("add(1, b=2)")
    finally:
        interp.callbacks = []
    assert seen == [("execute", "add(1, b=2)"), ("tool", "add", [1], {"b": 2})]


def test_one_block_at_a_time(interp):
    interp.tools["reenter"] = lambda: interp.execute("1")  # a tool that runs code in the same session
    try:
        with pytest.raises(CodeExecutionError, match="already running a block"):
            interp.execute("reenter()")
    finally:
        del interp.tools["reenter"]


def test_untyped_submit_ends_the_block(interp):
    result = interp.execute("SUBMIT([1, 'a'])\nafter_submit = True")
    assert result == FinalOutput({"output": [1, "a"]})
    assert interp.execute("'after_submit' in globals()") is False
    # `except Exception` does not swallow it
    result = interp.execute("try:\n    SUBMIT(output='x')\nexcept Exception:\n    print('swallowed')")
    assert result == FinalOutput({"output": "x"})
    with pytest.raises(CodeExecutionError, match="SUBMIT takes one value"):
        interp.execute("SUBMIT(1, 2)")


def test_typed_submit_checks_fields(typed):
    assert typed.execute("SUBMIT('yes', 3, {'k': 1})") == FinalOutput({"answer": "yes", "n": 3, "extra": {"k": 1}})
    assert typed.execute("SUBMIT(n=4, answer='no', extra=None)") == FinalOutput({"answer": "no", "n": 4, "extra": None})
    with pytest.raises(CodeExecutionError, match=r"missing field\(s\) \['n'\].*SUBMIT\(answer=\.\.\., n=\.\.\., extra=\.\.\.\)"):
        typed.execute("SUBMIT(answer='a', extra=1)")
    with pytest.raises(CodeExecutionError, match=r"field 'n' must be int, got str '3'.*SUBMIT\(n=int\(\.\.\.\)\)") as exc:
        typed.execute("SUBMIT(answer='a', n='3', extra=1)")
    assert "dspy_kernel_side" not in str(exc.value)  # the model sees its line and the message only
    with pytest.raises(CodeExecutionError, match=r"unknown field\(s\) \['answr'\]"):
        typed.execute("SUBMIT(answr='a', n=1, extra=1)")
    with pytest.raises(CodeExecutionError, match="must be int, got bool"):
        typed.execute("SUBMIT('a', True, 1)")


def test_variables_of_several_types(interp):
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    variables = {
        "text": "héllo\n" * 3, "count": 7, "ratio": 0.5, "items": [1, [2, "3"]], "mapping": {"k": [1, 2]},
        "nothing": None, "raw": b"\x00\xff", "table": df,
    }
    out = interp.execute(
        "[type(v).__name__ for v in (text, count, ratio, items, mapping, nothing, raw, table)]", variables=variables
    )
    assert out == ["str", "int", "float", "list", "dict", "NoneType", "bytes", "DataFrame"]
    assert interp.execute("[text, count, ratio, items, mapping, nothing, list(raw)]", variables=variables) == [
        "héllo\n" * 3, 7, 0.5, [1, [2, "3"]], {"k": [1, 2]}, None, [0, 255]
    ]
    assert interp.execute("[list(table.shape), int(table['a'].sum()), table['b'].tolist()]", variables={"table": df}) == [
        [3, 2], 6, ["x", "y", "z"]
    ]


def test_variables_are_injected_before_every_execution(interp):
    interp.execute("text = 'changed by the code'", variables={"text": "input"})
    assert interp.execute("text", variables={"text": "input"}) == "input"  # unchanged input, injected again
    assert interp.execute("text", variables={"text": "new input"}) == "new input"
    interp.execute("derived = text + '!'", variables={"text": "v"})
    assert interp.execute("derived") == "v!"  # without variables the namespace is left as it is
    items = [1, 2]
    interp.execute("items.append(3)", variables={"items": items})
    assert interp.execute("items", variables={"items": items}) == [1, 2]  # a fresh copy each time
    assert items == [1, 2]  # the host's object is never touched


def test_bad_variables_are_refused(interp):
    for name in ("SUBMIT", "llm_query", "add", "not an identifier", "class"):
        with pytest.raises(CodeInterpreterError, match="invalid"):
            interp.execute("1", variables={name: 1})
    with pytest.raises(CodeInterpreterError, match="'fn' \\(function\\) cannot be pickled"):
        interp.execute("1", variables={"fn": lambda: 1})
    assert interp.execute("x") == 41  # the session goes on


class OnlyInTheHost:
    """Pickles in the host; its module is not importable in the kernel."""


def test_variable_the_kernel_cannot_load_runs_nothing(interp):
    with pytest.raises(CodeInterpreterError, match="could not be set up.*ModuleNotFoundError"):
        interp.execute("ran_anyway = True", variables={"obj": OnlyInTheHost(), "s": "v"})
    assert interp.execute("'ran_anyway' in globals()") is False
    assert interp.execute("s", variables={"s": "w"}) == "w"  # set up again, the session goes on


def test_timeout_interrupts_and_keeps_state(interp):
    interp.timeout = 2.0
    try:
        with pytest.raises(CodeExecutionError, match="interrupted"):
            interp.execute("import time\nstarted = True\ntime.sleep(60)")
    finally:
        interp.timeout = 60.0
    assert interp.execute("started and x") == 41


def test_fresh_instance_shares_nothing_and_shutdown_is_terminal(interp):
    interp.execute("secret = 'only here'")
    other = JupyterInterpreter()
    assert other.execute("'secret' in globals()") is False  # started lazily
    workdir = other.repl.workdir
    other.shutdown()
    other.shutdown()  # idempotent
    assert other.repl is None and not os.path.exists(workdir)
    for call in (other.start, lambda: other.execute("1")):
        with pytest.raises(CodeInterpreterError, match="session has ended"):
            call()


def test_killed_kernel_ends_the_session():
    it = JupyterInterpreter()
    before = kernel_children()
    it.execute("x = 1")
    with pytest.raises(CodeInterpreterError, match="state is lost"):
        it.execute("import os\nos._exit(3)")
    for call in (it.start, lambda: it.execute("x")):
        with pytest.raises(CodeInterpreterError):
            call()
    assert it.repl is None
    assert kernel_children() <= before  # no kernel left behind


def test_kernel_killed_while_idle_ends_the_session_at_start():
    it = JupyterInterpreter(sandbox=False)
    it.start()
    pid = it.repl.km.provisioner.pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while it.repl.km.provisioner.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(CodeInterpreterError, match="has died"):
        it.start()
    with pytest.raises(CodeInterpreterError, match="session has ended"):
        it.execute("1")


def test_final_is_not_the_way_to_finish(interp):
    out = interp.execute("FINAL('x')")
    assert out.startswith("Final answer set.") and "call SUBMIT(...) instead" in out


def lookup(topic: str) -> str:
    """Look a topic up in the host's knowledge base."""
    return {"cats": "cats purr"}.get(topic, "unknown")


def test_dspy_rlm_end_to_end():
    actions = DummyLM([
        {"reasoning": "Look at the data", "code": "```python\nprint(len(context), lookup(topic='cats'))\n```"},
        {"reasoning": "Ask a sub-LM and a sub-agent",
         "code": "r = llm_query('say pong')\nsub = dspy.Predict('question -> answer')\nprint(r, '|', sub(question='ping').answer)"},
        {"reasoning": "Submit", "code": "SUBMIT(answer=str(len(context)) + ' ' + lookup('cats'))"},
    ])
    sub_lm = DummyLM([{"answer": "pong"}, {"answer": "sub-agent pong"}])
    rlm = dspy.RLM("context, query -> answer", max_iters=4, tools=[lookup], sub_lm=sub_lm,
                   interpreter_factory=JupyterInterpreter)
    with dspy.context(lm=actions):
        result = rlm(context="abc" * 10, query="how long?")
    assert result.answer == "30 cats purr"
    outputs = [step["output"] for step in result.trajectory]
    assert outputs[0] == "30 cats purr"
    assert "pong" in outputs[1] and "sub-agent pong" in outputs[1]
    assert "Jupyter kernel" in rlm.generate_action.signature.instructions


def test_dspy_rlm_with_configured_factory_and_typed_output():
    actions = DummyLM([
        {"reasoning": "Wrong type first", "code": "SUBMIT(total='six')"},
        {"reasoning": "Fix it", "code": "SUBMIT(total=sum(numbers))"},
    ])
    dspy.configure(interpreter_factory=JupyterInterpreter.factory(timeout=30))
    try:
        rlm = dspy.RLM("numbers: list[int] -> total: int", max_iters=3)
        assert "Jupyter kernel" in rlm.generate_action.signature.instructions
        with dspy.context(lm=actions):
            result = rlm(numbers=[1, 2, 3])
    finally:
        dspy.configure(interpreter_factory=None)
    assert result.total == 6
    assert "field 'total' must be int" in result.trajectory[0]["output"]
