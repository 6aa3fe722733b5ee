"""Interfaces between the RLM loop and the parts it drives.

The loop depends only on these: an LM that answers chat messages, and a REPL environment
that loads a context, runs code and reports outputs. :mod:`rlm_jupyter.lm` and
:mod:`rlm_jupyter.environment` implement them; tests may too.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Awaitable, Callable, Protocol

from .limits import Usage


@dataclasses.dataclass
class LMReply:
    """One LM answer.

    Attributes:
        text: the assistant message content ("" when the provider returned none).
        usage: tokens, USD and seconds of this call (retries included in seconds).
        model: the model id called.
        cached: True if served from a cache.
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


class REPLEnvironment(Protocol):
    """A persistent Python REPL holding ``context`` (paper §2)."""

    async def start(self, handler: SubcallHandler) -> None: ...

    async def load_context(self, context: Any) -> float: ...

    async def execute(self, code: str, timeout: float | None = None) -> ExecResult: ...

    async def variable_text(self, name: str) -> str | None: ...

    async def shutdown(self) -> None: ...
