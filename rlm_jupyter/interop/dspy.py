"""DSPy's ``CodeInterpreter`` protocol on this project's sandboxed Jupyter kernel.

:class:`JupyterInterpreter` runs the code of ``dspy.RLM`` (or any DSPy module that takes an
``interpreter_factory``) as cells of a real CPython ipykernel: the REPL environment of
:class:`~rlm_jupyter.environment.kernel.KernelREPL`, confined by bubblewrap where it is available
(no network, read-only system, private ``/tmp``, rlimits), with real Jupyter outputs. DSPy's
default interpreter is Deno/Pyodide (WebAssembly, no native extensions); this one is full
CPython (numpy, pandas, ... as installed) and still sandboxed on the local machine.

Usage (``pip install rlm-jupyter[dspy]``)::

    import dspy
    from rlm_jupyter.interop.dspy import JupyterInterpreter

    dspy.configure(lm=dspy.LM("openai/gpt-5-mini"))
    rlm = dspy.RLM("context, query -> answer", interpreter_factory=JupyterInterpreter)
    print(rlm(context=long_text, query="What is the magic number?").answer)

    # options (timeout in seconds, sandbox, memory limit ...): a factory that keeps DSPy's
    # execution instructions for the root model
    rlm = dspy.RLM("context, query -> answer", interpreter_factory=JupyterInterpreter.factory(timeout=30))
    dspy.configure(interpreter_factory=JupyterInterpreter)   # the default of every RLM

    with JupyterInterpreter(tools={"lookup": lookup}) as interp:   # directly
        interp.execute("x = lookup('cats')\\nprint(x)")

How it maps onto the kernel (protocol of DSPy 3.4, ``dspy/primitives/code_interpreter.py``):

- ``tools``: a mutable dict of host functions. Each is a stub in the kernel that sends
  ``[args, kwargs]`` as JSON over the sub-call channel; the function runs here, in the host
  process (keys and host objects never enter the kernel), in a worker thread under the
  ``contextvars`` of the ``execute`` call (so ``dspy.context(lm=...)`` applies), and its result
  comes back as JSON. DSPy's ``llm_query``/``llm_query_batched`` tools are served through the
  kernel's own helpers of those names.
- ``variables``: pickled here (protocol 5) into a private file that the kernel loads, like a
  run's ``context``; nothing is ever unpickled from the kernel. An immutable value (``str``,
  ``bytes``, numbers) equal to the one injected before is not sent again.
- ``SUBMIT(...)`` ends the block (code after it does not run) and ``execute`` returns
  :class:`dspy.primitives.code_interpreter.FinalOutput`: ``{"output": x}`` untyped, or the
  ``output_fields`` checked (names and simple types) with a message the model can act on.
- errors: invalid syntax raises ``SyntaxError`` before anything runs; an exception in the
  code or a tool, or a block interrupted after ``timeout`` seconds (variables kept), raises
  ``CodeExecutionError``; a kernel that dies (``os._exit``, a crash, out of memory) ends the
  session with ``CodeInterpreterError``, as does any use after :meth:`JupyterInterpreter.shutdown`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import json
import os
import threading
from typing import Any, Callable

try:
    from dspy.primitives.code_interpreter import CodeExecutionError, CodeInterpreterError, FinalOutput
    from dspy.utils.callback import BaseCallback, with_callbacks
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(f"rlm_jupyter.interop.dspy needs DSPy 3.4: pip install 'rlm-jupyter[dspy]' ({exc})") from exc

from ..environment.kernel import EnvironmentError_, KernelREPL, outputs_to_text
from ..sync import run_sync
from ..core.tools import by_keyword, encode_result
from .dspy_support import HELPER_TOOLS as _HELPER_TOOLS
from .dspy_support import bad_names, check_syntax, describe, split_variables, without_own_frames, write_variables

__all__ = ["JupyterInterpreter", "FinalOutput", "CodeExecutionError", "CodeInterpreterError"]

_SETUP = (
    "from rlm_jupyter.interop import dspy_kernel_side as _rlm_dspy\n"
    "_rlm_dspy.install(get_ipython())\n"
)
_UNSET = object()


class JupyterInterpreter:
    """DSPy ``CodeInterpreter`` on a sandboxed ipykernel (see the module docstring).

    Args:
        tools: host functions callable from the code by name (``{name: callable}``); arguments
            and results must be JSON values (pydantic models, dataclasses, datetimes are
            converted like DSPy's own interpreters do). Async functions are awaited.
        output_fields: DSPy output fields for a typed ``SUBMIT``: ``[{"name": str, "type":
            str}]``, ``type`` one of ``str int float bool list dict NoneType`` or absent
            (``dspy.RLM`` sets this). ``None``: ``SUBMIT(x)`` gives ``{"output": x}``.
        timeout: seconds one ``execute`` may run before the kernel is interrupted
            (``KeyboardInterrupt``; variables kept, ``CodeExecutionError``). A block that ignores
            the interrupt gets the kernel restarted: the session ends (``CodeInterpreterError``).
        sandbox: ``None`` (default) bubblewrap if it works here, else a plain child process;
            ``True`` require it; ``False`` never (see :class:`KernelREPL`).
        callbacks: DSPy callbacks of this instance (``on_interpreter_*``).
        **kernel_options: passed to :class:`~rlm_jupyter.environment.kernel.KernelREPL`
            (``startup_timeout``, ``memory_limit_mb``, ``cpu_seconds``, ``max_processes``,
            ``sandbox_paths``, ``max_output_chars``, ``python``, ``extra_env``).

    Attributes:
        repl: the running :class:`KernelREPL` (``None`` before :meth:`start` and after
            :meth:`shutdown`); ``repl.sandboxed`` says whether bubblewrap confines it.
    """

    execution_instructions = (
        "Code runs as cells of a CPython Jupyter kernel (IPython) in a separate process on the local machine, "
        "sandboxed where the host supports it (no network, read-only system files, private /tmp). State, imports "
        "and functions persist across executions; installed packages can be imported, none can be installed. "
        "Host tools and SUBMIT are global functions; tool arguments and results are JSON values. What you print "
        "and the value of a bare last expression are shown, as in a notebook. A block that runs too long is "
        "interrupted with KeyboardInterrupt; its variables are kept."
    )

    def __init__(
        self,
        tools: dict[str, Callable[..., Any]] | None = None,
        output_fields: list[dict[str, Any]] | None = None,
        *,
        timeout: float = 120.0,
        sandbox: bool | None = None,
        callbacks: list[BaseCallback] | None = None,
        **kernel_options: Any,
    ) -> None:
        if timeout is None or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.tools: dict[str, Callable[..., Any]] = dict(tools or {})
        self.output_fields = output_fields
        self.timeout = float(timeout)
        self.callbacks = list(callbacks or [])
        self._kernel_options = {"sandbox": sandbox, "timeout": self.timeout, **kernel_options}
        self.repl: KernelREPL | None = None
        self._ended = False
        self._lock = threading.Lock()  # one execute at a time
        self._start_lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._configured: Any = None  # tools and fields last bound in the kernel
        self._sent: dict[str, Any] | None = {}  # variables last injected (None: unknown)
        self._busy = False
        self._ctx: contextvars.Context | None = None
        self._submitted: Any = _UNSET
        self._value: Any = _UNSET
        self._setup_error: str | None = None

    @classmethod
    def factory(cls, **options: Any) -> Callable[[], JupyterInterpreter]:
        """A zero-argument factory for ``interpreter_factory=`` with these constructor options,
        carrying :attr:`execution_instructions` (DSPy reads them from the factory)."""
        make = functools.partial(cls, **options)
        make.execution_instructions = cls.execution_instructions
        return make

    # -- life cycle ------------------------------------------------------------------
    @with_callbacks
    def start(self) -> None:
        """Start the kernel (seconds: a fresh ipykernel); idempotent while the session lives.

        Raises:
            CodeInterpreterError: after :meth:`shutdown` or a kernel death, or the kernel could
                not start (e.g. ``sandbox=True`` without a working bubblewrap).
        """
        with self._start_lock:
            self._check_open()
            if self.repl is None:
                run_sync(self._astart())
            else:
                run_sync(self._acheck_alive())

    async def _acheck_alive(self) -> None:
        if self.repl.km is None or not await self.repl.km.is_alive():
            await self._end("the Jupyter kernel has died; the session's state is lost: create a new interpreter")

    async def _astart(self) -> None:
        repl = KernelREPL(**self._kernel_options)
        try:
            await repl.start(self._handle)
            result = await repl.execute(_SETUP, timeout=60)
            if result.status != "ok":
                raise EnvironmentError_(f"setup failed: {result.text.strip()[-500:]}")
        except BaseException as exc:
            await repl.shutdown()
            if isinstance(exc, (EnvironmentError_, OSError)):
                raise CodeInterpreterError(f"the Jupyter kernel did not start: {exc}") from None
            raise
        self.repl = repl
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="rlm-dspy-tool")

    @with_callbacks
    def shutdown(self) -> None:
        """Stop the kernel and remove its files; terminal (a new instance starts a new session).
        Idempotent."""
        with self._start_lock:
            self._ended = True
            repl, self.repl = self.repl, None
            if repl is not None:
                run_sync(repl.shutdown())
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None

    def _check_open(self) -> None:
        if self._ended:
            raise CodeInterpreterError(
                "this JupyterInterpreter session has ended (shut down, or its kernel died); "
                "create a new interpreter for a fresh session"
            )

    async def _end(self, message: str) -> None:
        """The session is lost: stop everything and raise ``CodeInterpreterError``."""
        self._ended = True
        repl, self.repl = self.repl, None
        if repl is not None:
            await repl.shutdown()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        raise CodeInterpreterError(message)

    def __enter__(self) -> JupyterInterpreter:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __call__(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        return self.execute(code, variables)

    # -- execution -------------------------------------------------------------------
    @with_callbacks
    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        """Run ``code`` as one cell, after injecting ``variables`` as globals.

        Returns:
            :class:`FinalOutput` if the code called ``SUBMIT``; else the value of a bare last
            expression (when nothing else was printed and it is JSON, at most 1M characters);
            else the text of the cell's outputs as a notebook shows them (prints, then the
            last expression's repr; a note when the environment restored something); else
            ``None``.

        Raises:
            SyntaxError: ``code`` does not parse (IPython syntax: ``%magics`` and ``!shell``
                are valid); nothing ran.
            CodeExecutionError: the code (or a tool it called) raised, or ran longer than
                ``timeout`` seconds and was interrupted; the message is the outputs and the
                traceback. The session goes on.
            CodeInterpreterError: the session has ended, the kernel died or had to be
                restarted (its state is lost: the session ends), a variable cannot be pickled
                or has a reserved name, or another ``execute`` is running.
        """
        if not isinstance(code, str):
            raise CodeInterpreterError(f"code must be a str, not {type(code).__name__}")
        if not self._lock.acquire(blocking=False):
            raise CodeInterpreterError("this JupyterInterpreter is already running a block (one at a time)")
        try:
            self._check_open()
            variables = {} if variables is None else variables
            self._check_names(variables)
            check_syntax(code)
            if self.repl is None:
                self.start()
            return run_sync(self._aexecute(code, variables, contextvars.copy_context()))
        finally:
            self._lock.release()

    def _check_names(self, variables: Any) -> None:
        if not isinstance(variables, dict):
            raise CodeInterpreterError(f"variables must be a dict of name -> value, not {type(variables).__name__}")
        bad_tools, bad = bad_names(self.tools, variables)
        if bad_tools:
            raise CodeInterpreterError(f"invalid or reserved tool names: {bad_tools!r}")
        if bad:
            raise CodeInterpreterError(
                f"variable names must be Python identifiers other than the tools' and the REPL's own names; invalid: {bad!r}"
            )

    async def _aexecute(self, code: str, variables: dict[str, Any], ctx: contextvars.Context) -> Any:
        repl = self.repl
        self._ctx, self._submitted, self._value, self._setup_error = ctx, _UNSET, _UNSET, None
        restarts = repl.restarts
        path = None
        self._busy = True
        try:
            setup, path, sent = self._setup_code(variables)
            if setup:
                # a silent request just before the block (the kernel runs them in order): no
                # round trip of its own; a failure is raised by the block (dspy_kernel_side.setup)
                repl.kc.execute(setup, silent=True, store_history=False, allow_stdin=False)
            try:
                result = await repl.execute(code, timeout=self.timeout)
            except asyncio.CancelledError:
                if repl.km is not None:
                    await repl.km.interrupt_kernel()
                raise
        finally:
            self._busy = False
            if path is not None and os.path.exists(path):
                os.unlink(path)
        if repl.restarts != restarts or result.status == "died":
            await self._end(
                (result.notice or "The Jupyter kernel died.").split(" It was restarted")[0]
                + " The session's state is lost: create a new interpreter."
            )
        if self._setup_error is not None:
            self._configured, self._sent = None, None  # unknown now: set everything up again next time
            raise CodeInterpreterError(f"the variables could not be set up in the kernel: {self._setup_error}")
        self._sent = sent
        if self._submitted is not _UNSET:
            return FinalOutput(self._submitted)
        text = outputs_to_text(without_own_frames(result.outputs)).replace("\r\n", "\n").rstrip("\n")  # ``!cmd``: a pty
        notice = result.notice
        if result.answer is not None:  # the kernel's own FINAL helper (of this project's RLM loop)
            notice = ((notice or "") + " FINAL does not end a DSPy run: call SUBMIT(...) instead.").strip()
        if notice:
            text = f"{text}\n{notice}" if text else notice
        if result.status != "ok":
            raise CodeExecutionError(text or f"the code failed ({result.status})")
        if self._value is not _UNSET and not notice:
            if not any(o.get("output_type") != "execute_result" for o in result.outputs):
                return self._value
        return text or None

    def _setup_code(self, variables: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
        """The setup request for this execute (``""`` when nothing changed), the pickle file
        it reads, and the injected variables to remember once it ran."""
        key = ([(name, id(fn)) for name, fn in self.tools.items()], json.dumps(self.output_fields))
        tools_arg = fields_arg = None
        if self._configured is None or key != self._configured[0]:
            tools = [[name, describe(name, fn)] for name, fn in self.tools.items() if name not in _HELPER_TOOLS]
            tools_arg, fields_arg = json.dumps(tools), key[1]
            self._configured = (key, dict(self.tools))  # keeps the functions alive: their ids stay theirs
        keep, send = split_variables(self._sent, variables)
        path = None
        keep_arg = None
        if self._sent is None or send or set(keep) != set(self._sent):
            if send:
                path = write_variables(self.repl, send)
            keep_arg = keep
        if tools_arg is None and keep_arg is None:
            return "", None, dict(variables)
        return f"_rlm_dspy.setup({tools_arg!r}, {fields_arg!r}, {path!r}, {keep_arg!r})", path, dict(variables)

    # -- host side of the kernel's requests ---------------------------------------------
    async def _handle(self, op: str, msg: dict) -> Any:
        """Serve a request of the kernel (on the event-loop thread); see dspy_kernel_side."""
        if op == "dspy_submit":
            self._submitted = json.loads(msg["value"])
            return None
        if op == "dspy_value":
            self._value = json.loads(msg["value"])
            return None
        if op == "dspy_setup_error":
            self._setup_error = str(msg.get("error"))
            return None
        if op == "tool":
            name = msg.get("name")
            args, kwargs = json.loads(msg.get("call") or "[[], {}]")
        elif op in _HELPER_TOOLS:
            name, args, kwargs = op, [msg.get(_HELPER_TOOLS[op])], {}
        elif op == "rlm_query":
            raise RuntimeError("rlm_query is not available here: use llm_query, or dspy.RLM(...) for a recursive sub-agent")
        else:
            raise ValueError(f"unknown request {op!r}")
        if name not in self.tools:
            raise NameError(f"no tool named {name!r}; the tools are {sorted(self.tools)}")
        if not self._busy or self._pool is None:
            raise RuntimeError("tools can be called only while a code block runs")
        ctx = (self._ctx or contextvars.copy_context()).copy()
        loop = asyncio.get_running_loop()
        # the kernel's own llm_query helpers take the value itself, the tool stubs a JSON string
        encode = op == "tool"
        return await loop.run_in_executor(self._pool, ctx.run, self._call_tool, name, args, kwargs, encode)

    def _call_tool(self, name: str, args: list, kwargs: dict, encode: bool = True) -> Any:
        """Run tool ``name`` (in a worker thread); its result as a JSON string (``encode``) or
        as JSON-compatible Python."""
        text = encode_result(name, self.invoke_tool(name, args, kwargs))
        return text if encode else json.loads(text)

    @with_callbacks
    def invoke_tool(self, tool_name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Call host tool ``tool_name`` with ``args``/``kwargs`` (awaiting an async result).

        Raises:
            CodeInterpreterError: no such tool. Whatever the tool raises propagates (the model's
                code sees it as a ``ToolError``).
        """
        fn = self.tools.get(tool_name)
        if fn is None:
            raise CodeInterpreterError(f"Unknown tool: {tool_name}")
        args, kwargs = by_keyword(tool_name, fn, args, kwargs)
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            async def wait():
                return await result

            result = asyncio.run(wait())
        return result
