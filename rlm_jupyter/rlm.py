"""The public entry point: :class:`RLM`.

``RLM`` wires the core loop (:mod:`rlm_jupyter.core.loop`) to litellm
(:mod:`rlm_jupyter.lm.client`) and to a Jupyter-kernel REPL environment
(:mod:`rlm_jupyter.environment.kernel`). Its settings are traitlets, so in IPython
``%config RLM.model = "gpt-5"`` (or ``c.RLM.model`` in ``ipython_config.py``) sets defaults.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Callable

from .core import events as ev
from .core.context import check_picklable, normalize_context
from .core.limits import Budget, Limits
from .core.loop import RLMNode, RunSettings, RunTree
from .core.trajectory import Trajectory
from .result import RLMResult, RunEnvironment
from .settings import DEFAULT_OUTPUT_CHARS, SMALL_OUTPUT_CHARS, RLMSettings, default_models  # noqa: F401 (public here)
from .sync import run_sync


class RLM(RLMSettings):
    """A Recursive Language Model whose REPL environment is a Jupyter kernel.

    Every setting is a configurable trait (``RLM(model=..., max_iterations=...)``, or
    ``%config RLM.<name>`` in IPython). Limits are tree-wide: they cover the root, every
    sub-call and every child RLM.
    """

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
        from .lm.providers import prepare_model

        for m in {root, sub, *self.allowed_models}:
            prepare_model(m)  # custom providers (local/, replay/, ...; rlm_jupyter.lm.providers)
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
            allowed_models=list(self.allowed_models),
            stream=self.stream,
        )

    def _environment(self, python: str | None):
        """A new (unstarted) REPL environment of backend ``environment``
        (:mod:`rlm_jupyter.environment.registry`); ``"kernel"`` with ``gateway_url`` set means
        ``"gateway"`` (as before the ``environment`` setting existed)."""
        from .environment.registry import make_environment

        name = "gateway" if self.environment == "kernel" and self.gateway_url else self.environment
        return make_environment(name, self, python)

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
        setup: Callable[[RunTree], None] | None = None,
        tools: Any = None,
        answer_schema: Any = None,
    ) -> RLMResult:
        """Answer ``query`` about ``context`` with an RLM (paper arXiv 2512.24601, Algorithm 1).

        Args:
            query: the question (str).
            context: str, bytes, list, dict, a pandas DataFrame, any picklable value, or a
                ``pathlib.Path`` of a file (read as text) or folder (dict of relative path →
                text). It lives only in the REPL environment; the root LM never sees it.
            on_event: called with every :class:`~rlm_jupyter.core.events.Event` of the run,
                from the event loop's thread.
            setup: called with the :class:`RunTree` before the root starts (sets its step gate,
                follow-up hooks; see :mod:`rlm_jupyter.session`).
            tools: host tools of this run (default ``RLM.tools``): functions, or ``{name:
                function}``, that the model's code calls by name; they run in this process (in a
                worker thread; ``async def`` on the run's loop) with JSON arguments and results,
                and a call that raises raises ``ToolError`` in the model's code.
            answer_schema: the final answer's schema (default ``RLM.answer_schema``): a pydantic
                model class or type, or a JSON schema dict. The root is told it; an answer that
                does not match is refused (the model is told why, the run goes on); the result is
                a :class:`~rlm_jupyter.answers.TypedRLMResult` (``answer`` the validated object,
                ``answer_text`` the text).

        Returns:
            :class:`RLMResult` (also for runs stopped by a limit, a provider error or
            cancellation: ``status`` says which, the partial trajectory is kept).

        Raises:
            ContextError: the context cannot be pickled or loaded.
            FileNotFoundError: a ``Path`` context does not exist.
            TypeError: ``query`` is not a str; ``tools`` or ``answer_schema`` is of the wrong kind.
            ValueError: a tool's name is unusable or taken, or a dict schema is not a JSON schema.
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, not {type(query).__name__}")
        context = normalize_context(context)
        check_picklable(context)
        root, sub = self.resolved_models()
        settings = self._settings(root, sub)
        from .lm.cache import cache_for
        from .lm.client import LMClient

        lm = LMClient(
            num_retries=self.num_retries,
            backoff_seconds=self.retry_backoff,
            timeout_seconds=self.lm_timeout,
            completion_kwargs=dict(self.completion_kwargs),
            cache=cache_for(self.cache),
        )
        bus = ev.EventBus(run_id=uuid.uuid4().hex[:12])
        traj = Trajectory()
        bus.subscribe(traj.apply)
        if on_event is not None:
            bus.subscribe(on_event)
        budget = Budget(self._limits())
        python = self.kernel_python or None
        from .answers import AnswerSchema, typed_result
        from .core.tools import make_tools
        from .environment import tools_side

        settings.tools = make_tools(self.tools if tools is None else tools, tools_side.RESERVED)
        schema = answer_schema if answer_schema is not None else self.answer_schema
        typed = AnswerSchema(schema) if schema is not None else None
        if typed is not None:
            settings.answer_validator, settings.answer_format = typed.validate, typed.prompt()
        stubs = [[name, spec.stub_doc()] for name, spec in settings.tools.items()]
        tree = RunTree(settings, lm, lambda node: tools_side.attach(self._environment(python), stubs), bus, budget)
        tree.keep_root_environment = self.keep_environment
        if setup is not None:
            setup(tree)
        node = RLMNode(tree)
        t0 = time.monotonic()
        self.log.info("run %s started: root %s, sub-model %s", bus.run_id, root, sub)
        try:
            res = await node.run(query, context)
            status, answer, message = res.status, res.answer, res.message
        except asyncio.CancelledError:
            status, answer, message = "stopped", None, "stopped by the user"
        result = RLMResult(answer, status, message, traj, budget.usage, time.monotonic() - t0)
        self.log.info("run %s %s after %.1f s: %d tokens, $%.4f", bus.run_id, status, result.wall_seconds, result.usage.total_tokens, result.usage.usd)
        if typed is not None:
            result = typed_result(result, typed)
        if self.keep_environment and node.env is not None and status != "stopped" and getattr(node.env, "kc", None) is not None:
            result.environment = RunEnvironment(node.env, self.environment_idle_seconds, asyncio.get_running_loop())
        from .followup import follow_up

        result.follow_up = lambda res, q, rlm=self: follow_up(rlm, res, q)
        self.runs.append(result)
        return result

    def fork(self, recording: Any, k: int, context: Any, query: str | None = None, code: str | None = None, on_event=None) -> RLMResult:
        """Continue ``recording`` live from its root iteration ``k`` with this RLM's model (another
        query or edited code optional); see :func:`rlm_jupyter.forking.afork` (args, errors)."""
        from .forking import afork

        return run_sync(afork(self, recording, k, context, query, code, on_event))

    def start(self, query: str, context: Any, step: bool | None = None, on_event: Callable[[ev.Event], None] | None = None):
        """Start a run in the background and return its :class:`~rlm_jupyter.session.Session`
        (``step()``, ``run()``, ``stop()``, ``trajectory``); ``step`` (default ``RLM.step``)
        pauses it before each root code block. Raises as :meth:`acompletion` for bad input."""
        from .session import Session

        return Session(self, query, context, step=self.step if step is None else step, on_event=on_event)

    def completion(
        self,
        query: str,
        context: Any,
        on_event: Callable[[ev.Event], None] | None = None,
        on_tick: Callable[[], None] | None = None,
        tools: Any = None,
        answer_schema: Any = None,
    ) -> RLMResult:
        """Synchronous :meth:`acompletion`; safe inside a running event loop (Jupyter).

        The run gets its own event loop in a worker thread, so this works inside a running loop too. A
        ``KeyboardInterrupt`` (Jupyter's stop button) cancels the run cleanly: its kernels
        are shut down and the result has ``status == "stopped"`` with the partial trajectory.
        ``on_tick`` is called from the calling thread about every 0.1 s while waiting (the
        notebook view updates its display there). ``tools`` and ``answer_schema``: as for
        :meth:`acompletion`.
        """
        return run_sync(self.acompletion(query, context, on_event, tools=tools, answer_schema=answer_schema), on_tick)
