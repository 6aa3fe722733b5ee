"""What a run returns: :class:`RLMResult` (answer, status, trajectory, usage) and, when the
run's REPL environment is kept, its :class:`RunEnvironment`.

Not core data: a result holds a live kernel and exports itself (:mod:`rlm_jupyter.notebook_io`),
so it lives above ``core``, ``environment`` and the notebook export.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import time
from typing import Any

from .core.limits import Usage
from .core.trajectory import Trajectory


@dataclasses.dataclass
class RLMResult:
    """What a run returns.

    Attributes:
        answer: the final answer text (``None`` if the run stopped without one).
        status: ``done`` | ``max_iterations`` | ``repeated`` | ``limit`` | ``error`` | ``stopped``.
        message: why the run ended, for statuses other than ``done``.
        trajectory: the full :class:`Trajectory`.
        usage: totals over the whole call tree (tokens, USD, seconds of LM time, calls).
        wall_seconds: wall time of the run.
        environment: with ``RLM(keep_environment=True)``, the run's live REPL environment
            (``.execute(code)``, ``.close()``); else ``None``.
    """

    answer: str | None
    status: str
    message: str
    trajectory: Trajectory
    usage: Usage
    wall_seconds: float
    environment: Any = None
    # set by RLM: follow_up(result, query) -> RLMResult (rlm_jupyter.followup.follow_up)
    follow_up: Any = dataclasses.field(default=None, repr=False, compare=False)

    def close(self) -> None:
        """Shut down the kept REPL environment, if any."""
        if self.environment is not None:
            self.environment.close()

    def ask(self, query: str) -> "RLMResult":
        """Ask a follow-up question in this run's kept REPL environment (its variables, the
        model's included, are still there; the root is told the earlier queries and answers),
        as the official implementation's ``persistent=True`` does. A new run, with its own run
        id and ``parent_run`` = this run's id in its ``run_started`` event. Blocks until it ends.

        Raises:
            RuntimeError: the run's environment was not kept (``RLM(keep_environment=True)``;
                ``%%rlm`` keeps it) or is closed.
            TypeError: ``query`` is not a str.
        """
        if self.follow_up is None:
            raise RuntimeError("this result cannot take follow-up questions (it was not made by RLM)")
        return self.follow_up(self, query)

    @property
    def answer_text(self) -> str | None:
        """The final answer as text (``answer`` itself here; a typed run's
        :class:`~rlm_jupyter.answers.TypedRLMResult` keeps the model's text apart from the
        validated object)."""
        return self.answer

    @property
    def run_id(self) -> str:
        """The run's id (12 hex characters; ``run_id`` of every event)."""
        return self.trajectory.run_id

    @property
    def differences(self) -> list | None:
        """For a run of a ``replay/<path>`` model: where its outputs differ from the recording
        (a list of :class:`~rlm_jupyter.core.records.Difference`, empty if none); ``None`` for
        any other run. Raises ``FileNotFoundError``/``ValueError`` if the recording is gone."""
        root = self.trajectory.root
        if root is None or not root.model.startswith("replay/"):
            return None
        from .core.records import compare, load_trajectory

        return compare(load_trajectory(root.model[len("replay/") :]), self.trajectory)

    def to_jsonl(self, path: str | pathlib.Path) -> pathlib.Path:
        """Save the event stream as JSONL (see :func:`load_jsonl`)."""
        return self.trajectory.to_jsonl(path)

    def to_notebook(self, path: str | pathlib.Path) -> pathlib.Path:
        """Save the trajectory as a Jupyter notebook (.ipynb, nbformat v4): the root LM's
        code as code cells with their real outputs, its prose as markdown, sub-calls
        summarised."""
        from .notebook_io import write_notebook

        return write_notebook(self.trajectory, path)

    def save(self, path: str | pathlib.Path) -> pathlib.Path:
        """Save as ``.ipynb`` or ``.jsonl`` according to the suffix.

        Raises:
            ValueError: another suffix.
        """
        suffix = pathlib.Path(path).suffix.lower()
        if suffix == ".ipynb":
            return self.to_notebook(path)
        if suffix == ".jsonl":
            return self.to_jsonl(path)
        raise ValueError(f"cannot save a run as {suffix!r}: use .ipynb or .jsonl")

    def __repr__(self) -> str:
        u = self.usage
        ans = (self.answer_text or "")[:60]
        return (
            f"RLMResult(status={self.status!r}, answer={ans!r}, iterations={len(self.trajectory.iterations)}, "
            f"tokens={u.total_tokens}, usd={u.usd:.4f}, wall_seconds={self.wall_seconds:.1f})"
        )


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
        """Shut the kernel down, on the run's loop (idempotent)."""
        if not self._closed:
            self._closed = True
            await self.env.shutdown()

    def close(self) -> None:
        """Shut the kernel down (idempotent)."""
        if not self._closed:
            asyncio.run_coroutine_threadsafe(self.aclose(), self.loop).result(timeout=60)
