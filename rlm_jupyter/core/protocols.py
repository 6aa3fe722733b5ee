"""Interfaces between the RLM loop and the parts it drives.

The loop depends only on these: an LM that answers chat messages, and a REPL environment
that loads a context, runs code and reports outputs. :mod:`rlm_jupyter.lm` and
:mod:`rlm_jupyter.environment` implement them; tests may too.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Awaitable, Callable, Protocol, runtime_checkable

from .limits import Usage


@dataclasses.dataclass
class LMReply:
    """One LM answer.

    Attributes:
        text: the assistant message content ("" when the provider returned none).
        usage: tokens, USD and seconds of this call (retries included in seconds).
        model: the model id called.
        cached: True if served from the persistent LM cache (:mod:`rlm_jupyter.lm.cache`):
            then ``usage.usd`` is 0, ``usage.cache_hits`` is 1 and the time is in
            ``usage.cached_seconds``, not ``usage.seconds``.
    """

    text: str
    usage: Usage
    model: str
    cached: bool = False


class LM(Protocol):
    async def acomplete(self, model: str, messages: list[dict], **kwargs: Any) -> LMReply: ...

    def count_tokens(self, model: str, text: str) -> int: ...


@dataclasses.dataclass
class ExecResult:
    """The result of running one code block in the REPL environment.

    Attributes:
        outputs: nbformat v4 output dicts (``stream``, ``display_data``, ``execute_result``,
            ``error``), as a notebook would store them.
        text: the outputs rendered as plain text for the root LM (not yet truncated).
        status: ``"ok"``, ``"error"`` (the code raised), ``"timeout"`` (interrupted after the
            per-block timeout) or ``"died"`` (the kernel died or was restarted).
        seconds: wall time of the execution.
        execution_count: the kernel's execution counter for this block (``None`` if unknown).
        answer: an answer set in the REPL by ``FINAL(...)``/``FINAL_VAR(...)``, if any.
        notice: a message for the model and user about what the environment did (restart).
    """

    outputs: list[dict]
    text: str
    status: str
    seconds: float
    execution_count: int | None = None
    answer: str | None = None
    notice: str | None = None


# handler(op, payload) -> result; ops: llm_query, llm_query_batched, rlm_query
SubcallHandler = Callable[[str, dict], Awaitable[Any]]


@runtime_checkable
class REPLEnvironment(Protocol):
    """A persistent Python REPL holding ``context`` (paper §2): what the RLM loop drives.

    Implemented by :class:`rlm_jupyter.environment.kernel.KernelREPL` (a local kernel) and
    :class:`rlm_jupyter.environment.gateway.GatewayREPL` (a remote one); a third party adds
    a backend with :func:`rlm_jupyter.environment.registry.register_environment` or an entry
    point of group ``rlm_jupyter.environments``. All methods are coroutines run on the RLM's
    event loop; none may raise for anything the model's code does (a crash is a ``"died"``
    result), only for the errors listed.
    """

    async def start(self, handler: SubcallHandler) -> None:
        """Start the REPL; the model's ``llm_query``/``llm_query_batched``/``rlm_query`` call
        ``handler(op, payload)`` (in the parent process) and get its result.

        Raises:
            RuntimeError: the REPL could not be started (e.g. ``EnvironmentError_``).
        """

    async def load_context(self, context: Any) -> float:
        """Bind ``context`` (any picklable value) in the REPL; returns seconds taken. Reloaded
        after every restart.

        Raises:
            rlm_jupyter.core.context.ContextError: the value cannot be transferred.
        """

    async def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run ``code`` as one cell (``timeout`` seconds at most, ``None`` = the REPL's default;
        past it: interrupt, then restart) and return its outputs."""

    async def variable_text(self, name: str) -> str | None:
        """``str()`` of the REPL variable ``name`` (for ``FINAL_VAR``), or ``None`` if it is
        missing or cannot be turned into text."""

    async def interrupt(self) -> None:
        """Interrupt the running block (like SIGINT / Jupyter's interrupt request)."""

    async def restart(self, already_restarted: bool = False, reason: str = "requested") -> None:
        """Start a fresh interpreter: helpers installed again, ``context`` reloaded, other
        variables lost; ``reason`` is for the log."""

    async def shutdown(self) -> None:
        """Stop the REPL and remove everything it left (processes, files). Idempotent."""
