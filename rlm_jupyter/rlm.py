"""The public entry point: :class:`RLM`.

``RLM`` wires the core loop (:mod:`rlm_jupyter.core.loop`) to litellm
(:mod:`rlm_jupyter.lm.client`) and to a Jupyter-kernel REPL environment
(:mod:`rlm_jupyter.environment.kernel`). Its settings are traitlets, so in IPython
``%config RLM.model = "gpt-5"`` (or ``c.RLM.model`` in ``ipython_config.py``) sets defaults.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import pickle
import threading
import time
import uuid
from typing import Any, Callable

from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode
from traitlets.config import Configurable

from .core import events as ev
from .core.context import ContextError, normalize_context
from .core.limits import Budget, Limits
from .core.loop import RLMNode, RunSettings, RunTree
from .core.trajectory import RLMResult, Trajectory

# Provider keys checked, in order, when no model is configured: (env var, root, sub).
CLOUD_DEFAULTS = [
    ("OPENAI_API_KEY", "gpt-5", "gpt-5-mini"),
    ("ANTHROPIC_API_KEY", "anthropic/claude-sonnet-4-5", "anthropic/claude-haiku-4-5"),
    ("GEMINI_API_KEY", "gemini/gemini-2.5-pro", "gemini/gemini-2.5-flash"),
]


def default_models(env: dict[str, str] | None = None) -> tuple[str, str]:
    """``(root, sub)`` model ids used when none is configured.

    The first provider whose key is set in ``env`` (default ``os.environ``) wins (see
    :data:`CLOUD_DEFAULTS`; paper setup: GPT-5 root, GPT-5-mini sub-calls); with no key, the
    embedded offline model for both.
    """
    from .lm import local

    env = os.environ if env is None else env
    for key, root, sub in CLOUD_DEFAULTS:
        if env.get(key):
            return root, sub
    return local.MODEL_ID, local.MODEL_ID


DEFAULT_OUTPUT_CHARS = 20_000  # official implementation's per-block cap
SMALL_OUTPUT_CHARS = 4_000  # the embedded model reads ~80 tokens/s: keep its feedback short


class RLM(Configurable):
    """A Recursive Language Model whose REPL environment is a Jupyter kernel.

    Every setting is a configurable trait (``RLM(model=..., max_iterations=...)``, or
    ``%config RLM.<name>`` in IPython). Limits are tree-wide: they cover the root, every
    sub-call and every child RLM.
    """

    model = Unicode("", help="litellm model id of the root LM ('' = default: a provider key's model, else the embedded model).").tag(config=True)
    sub_model = Unicode("", help="litellm model id for sub-calls (llm_query); '' = the root model, or the provider's smaller model.").tag(config=True)
    max_iterations = Int(30, help="Root-LM turns per RLM before a forced final answer.").tag(config=True)
    max_depth = Int(1, help="Recursion depth; 1 = rlm_query is a plain sub-call (paper).").tag(config=True)
    max_subcalls = Int(1000, allow_none=True, help="Sub-calls in the whole tree (None = unlimited).").tag(config=True)
    max_tokens = Int(None, allow_none=True, help="Input+output tokens over the whole tree.").tag(config=True)
    max_usd = Float(None, allow_none=True, help="US dollars over the whole tree.").tag(config=True)
    max_seconds = Float(None, allow_none=True, help="Wall-clock seconds for the whole run.").tag(config=True)
    timeout = Float(120.0, help="Per-code-block timeout in seconds (interrupt, then restart the kernel).").tag(config=True)
    max_output_chars = Int(None, allow_none=True, help="REPL output shown to the root LM per block, in characters (None = 20,000; 4,000 for the embedded model).").tag(config=True)
    subcalls = Bool(True, help="False: the paper's 'no sub-calls' ablation (llm_query & co. are not offered and fail if called).").tag(config=True)
    concurrency = Int(16, help="Sub-calls in flight at once (llm_query_batched).").tag(config=True)
    prompt_style = Enum(["auto", "standard", "small"], "auto", help="'small' adds a worked example for small models; 'auto' picks it for the embedded model.").tag(config=True)
    constrain_root = Enum(["auto", "on", "off"], "auto", help="Grammar-constrain the embedded root model's replies to one repl block or one FINAL ('auto' = on for the embedded model).").tag(config=True)
    num_retries = Int(4, help="Retries of an LM call on rate limits, 5xx, timeouts.").tag(config=True)
    retry_backoff = Float(1.0, help="First retry delay in seconds (doubles each retry).").tag(config=True)
    lm_timeout = Float(600.0, help="Per-request LM timeout in seconds.").tag(config=True)
    completion_kwargs = Dict(help="Extra keyword arguments for every litellm call (api_base, temperature, ...).").tag(config=True)
    kernel_python = Unicode("", help="Python interpreter of the environment kernel ('' = this one).").tag(config=True)
    sandbox = Enum(["auto", "on", "off"], "auto", help="Run the environment kernel in bubblewrap: 'auto' = when bwrap works (Linux), with a warning otherwise; 'on' = required (error if unavailable); 'off' = plain child process.").tag(config=True)
    memory_limit_mb = Int(None, allow_none=True, help="Address-space limit of the environment kernel in MiB (None = half the RAM, at least 2 GiB; 0 = no limit).").tag(config=True)
    cpu_seconds = Int(None, allow_none=True, help="CPU-time limit of the environment kernel in seconds over its life (None = no limit).").tag(config=True)
    max_processes = Int(512, allow_none=True, help="Process limit inside the sandbox (None = no limit).").tag(config=True)
    sandbox_paths = List(Unicode(), help="Extra host paths bound read-only into the sandbox.").tag(config=True)
    gateway_url = Unicode("", help="Run the environment kernel on a Jupyter Kernel/Enterprise Gateway at this URL ('' = a local kernel).").tag(config=True)
    gateway_kernel_name = Unicode("python3", help="Kernelspec name on the gateway.").tag(config=True)
    gateway_channel_host = Unicode("127.0.0.1", help="Address of this machine that the remote kernel can reach for sub-calls (TCP, token-authenticated).").tag(config=True)
    gateway_token = Unicode("", help="The gateway's auth token, if it needs one.").tag(config=True)
    keep_environment = Bool(False, help="Keep the root's REPL environment kernel alive after the run (RLMResult.environment) to explore or re-run the model's code.").tag(config=True)
    environment_idle_seconds = Float(1800.0, help="A kept environment shuts down after this many idle seconds.").tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runs: list[RLMResult] = []

    # -- resolution -----------------------------------------------------------------------
    def resolved_models(self) -> tuple[str, str]:
        """The ``(root, sub)`` model ids this RLM will call."""
        root, sub = self.model, self.sub_model
        if not root:
            root, default_sub = default_models()
            sub = sub or default_sub
        return root, sub or root

    def _settings(self, root: str, sub: str) -> RunSettings:
        from .lm import local
        from .lm.client import context_window_tokens

        for m in {root, sub}:
            if m.startswith(local.PROVIDER + "/"):
                local.register()
        is_local = root.startswith(local.PROVIDER + "/")
        style = self.prompt_style if self.prompt_style != "auto" else ("small" if is_local else "standard")
        root_kwargs: dict[str, Any] = {}
        if is_local:
            root_kwargs.update(temperature=0.0, max_tokens=512)
            if self.constrain_root != "off":
                root_kwargs["rlm_grammar"] = "root"
        elif self.constrain_root == "on":
            raise ValueError("constrain_root='on' needs the embedded model as root (a llama.cpp grammar)")
        sub_kwargs: dict[str, Any] = {}
        if sub.startswith(local.PROVIDER + "/"):
            sub_kwargs.update(temperature=0.0, max_tokens=512)
        return RunSettings(
            model=root,
            sub_model=sub,
            prompt_style=style,
            max_output_chars=self.max_output_chars or (SMALL_OUTPUT_CHARS if is_local else DEFAULT_OUTPUT_CHARS),
            block_timeout=self.timeout,
            concurrency=self.concurrency,
            root_kwargs=root_kwargs,
            sub_kwargs=sub_kwargs,
            sub_window_tokens=context_window_tokens(sub),
            subcalls=self.subcalls,
        )

    def _environment(self, python: str | None):
        """A new (unstarted) REPL environment kernel: on the gateway if ``gateway_url`` is
        set, else a local kernel with this RLM's sandbox settings."""
        from .environment.kernel import KernelREPL

        if self.gateway_url:
            from .environment.gateway import GatewayREPL

            return GatewayREPL(
                self.gateway_url,
                kernel_name=self.gateway_kernel_name,
                channel_host=self.gateway_channel_host,
                auth_token=self.gateway_token or None,
                timeout=self.timeout,
            )

        return KernelREPL(
            timeout=self.timeout,
            python=python,
            sandbox={"auto": None, "on": True, "off": False}[self.sandbox],
            memory_limit_mb="auto" if self.memory_limit_mb is None else (self.memory_limit_mb or None),
            cpu_seconds=self.cpu_seconds,
            max_processes=self.max_processes,
            sandbox_paths=list(self.sandbox_paths),
        )

    def _limits(self) -> Limits:
        return Limits(
            max_iterations=self.max_iterations,
            max_depth=self.max_depth,
            max_subcalls=self.max_subcalls,
            max_tokens=self.max_tokens,
            max_usd=self.max_usd,
            max_seconds=self.max_seconds,
        )

    # -- running --------------------------------------------------------------------------
    async def acompletion(
        self,
        query: str,
        context: Any,
        on_event: Callable[[ev.Event], None] | None = None,
    ) -> RLMResult:
        """Answer ``query`` about ``context`` with an RLM (paper arXiv 2512.24601, Algorithm 1).

        Args:
            query: the question (str).
            context: str, bytes, list, dict, a pandas DataFrame, any picklable value, or a
                ``pathlib.Path`` of a file (read as text) or folder (dict of relative path →
                text). It lives only in the REPL environment; the root LM never sees it.
            on_event: called with every :class:`~rlm_jupyter.core.events.Event` of the run,
                from the event loop's thread.

        Returns:
            :class:`RLMResult` (also for runs stopped by a limit, a provider error or
            cancellation: ``status`` says which, the partial trajectory is kept).

        Raises:
            ContextError: the context cannot be pickled or loaded.
            FileNotFoundError: a ``Path`` context does not exist.
            TypeError: ``query`` is not a str.
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, not {type(query).__name__}")
        context = normalize_context(context)
        _check_picklable(context)
        root, sub = self.resolved_models()
        settings = self._settings(root, sub)
        from .lm.client import LMClient

        lm = LMClient(
            num_retries=self.num_retries,
            backoff_seconds=self.retry_backoff,
            timeout_seconds=self.lm_timeout,
            completion_kwargs=dict(self.completion_kwargs),
        )
        bus = ev.EventBus(run_id=uuid.uuid4().hex[:12])
        traj = Trajectory()
        bus.subscribe(traj.apply)
        if on_event is not None:
            bus.subscribe(on_event)
        budget = Budget(self._limits())
        python = self.kernel_python or None
        tree = RunTree(settings, lm, lambda node: self._environment(python), bus, budget)
        tree.keep_root_environment = self.keep_environment
        node = RLMNode(tree)
        t0 = time.monotonic()
        try:
            res = await node.run(query, context)
            status, answer, message = res.status, res.answer, res.message
        except asyncio.CancelledError:
            status, answer, message = "stopped", None, "stopped by the user"
        result = RLMResult(answer, status, message, traj, budget.usage, time.monotonic() - t0)
        if self.keep_environment and node.env is not None and status != "stopped" and getattr(node.env, "kc", None) is not None:
            result.environment = RunEnvironment(node.env, self.environment_idle_seconds, asyncio.get_running_loop())
        self.runs.append(result)
        return result

    def completion(
        self,
        query: str,
        context: Any,
        on_event: Callable[[ev.Event], None] | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> RLMResult:
        """Synchronous :meth:`acompletion`; safe inside a running event loop (Jupyter).

        The run gets its own event loop in a worker thread, so this works inside a running loop too. A
        ``KeyboardInterrupt`` (Jupyter's stop button) cancels the run cleanly: its kernels
        are shut down and the result has ``status == "stopped"`` with the partial trajectory.
        ``on_tick`` is called from the calling thread about every 0.1 s while waiting (the
        notebook view updates its display there).
        """
        return run_sync(self.acompletion(query, context, on_event), on_tick)


def _check_picklable(context: Any) -> None:
    if isinstance(context, (str, bytes, bytearray)):
        return
    try:
        pickle.dumps(context, protocol=5)
    except Exception as exc:
        raise ContextError(
            f"the context ({type(context).__name__}) cannot be pickled to send it to the REPL environment: "
            f"{type(exc).__name__}: {exc}. Convert it to a str, list or dict first."
        ) from None


class RunEnvironment:
    """The REPL environment kernel of a finished run, kept alive to explore what the model did.

    Its variables are the model's (``context`` included); sub-calls still work through the
    run's channel. Closed by :meth:`close`, or after ``idle_seconds`` without use.

    Args:
        env: the run's :class:`~rlm_jupyter.environment.kernel.KernelREPL`.
        idle_seconds: idle time (seconds) after which it shuts down.
        loop: the event loop the run ran on (the kernel client's sockets belong to it). In
            async code use :meth:`aexecute`/:meth:`aclose` on that loop; the synchronous
            methods are for other threads (a notebook cell).
    """

    def __init__(self, env: Any, idle_seconds: float, loop: asyncio.AbstractEventLoop) -> None:
        self.env = env
        self.idle_seconds = idle_seconds
        self.loop = loop
        self._last_use = time.monotonic()
        self._closed = False
        loop.call_soon_threadsafe(self._schedule_idle_check)

    @property
    def alive(self) -> bool:
        return not self._closed

    def _schedule_idle_check(self) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        idle = time.monotonic() - self._last_use
        if idle >= self.idle_seconds:
            loop.create_task(self.aclose())
        else:
            loop.call_later(min(60.0, self.idle_seconds - idle + 0.01), self._schedule_idle_check)

    async def aexecute(self, code: str, timeout: float | None = None):
        """Run ``code`` in the environment; returns an ``ExecResult`` (outputs, text, status).

        Raises:
            RuntimeError: the environment was closed.
        """
        if self._closed:
            raise RuntimeError("this run's REPL environment is closed")
        self._last_use = time.monotonic()
        try:
            return await self.env.execute(code, timeout=timeout)
        finally:
            self._last_use = time.monotonic()

    def execute(self, code: str, timeout: float | None = None):
        """Synchronous :meth:`aexecute`, from a thread other than the run's event loop."""
        return asyncio.run_coroutine_threadsafe(self.aexecute(code, timeout), self.loop).result()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self.env.shutdown()

    def close(self) -> None:
        """Shut the kernel down (idempotent)."""
        if not self._closed:
            asyncio.run_coroutine_threadsafe(self.aclose(), self.loop).result(timeout=60)


class _LoopThread:
    """One long-lived event loop in a daemon thread, shared by every synchronous run.

    litellm keeps per-loop helpers (its logging worker, HTTP clients); a loop that lives
    as long as the process avoids re-creating them and warnings about closed loops.
    """

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="rlm-event-loop", daemon=True).start()
                cls._loop = loop
            return cls._loop


def run_sync(coro, on_tick: Callable[[], None] | None = None) -> Any:
    """Run ``coro`` on rlm_jupyter's shared event-loop thread and wait for its result.

    Works from any thread, also one whose own event loop is running (a notebook cell). This is
    how :meth:`RLM.completion` runs; use it for other coroutines of this package too (e.g.
    ``run_sync(LMClient().acomplete(model, messages))``), so that litellm keeps one loop.

    A ``KeyboardInterrupt`` while waiting cancels the run's task; the coroutine then
    finishes its cleanup and its (stopped) result is returned.
    """
    loop = _LoopThread.get()
    holder: dict[str, asyncio.Task] = {}

    async def wrapper():
        holder["task"] = asyncio.current_task()
        return await coro

    future = asyncio.run_coroutine_threadsafe(wrapper(), loop)
    interrupted = False
    while True:
        try:
            try:
                return future.result(timeout=0.1)
            except concurrent.futures.TimeoutError:
                pass
            if on_tick is not None:
                on_tick()
        except KeyboardInterrupt:
            if not interrupted and "task" in holder:
                interrupted = True
                loop.call_soon_threadsafe(holder["task"].cancel)
        except concurrent.futures.CancelledError:
            raise KeyboardInterrupt("the run was cancelled before it could clean up") from None
