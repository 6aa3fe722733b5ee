"""A run you can step through (issue 11).

:class:`Session` (from :meth:`rlm_jupyter.rlm.RLM.start`) runs the RLM loop as a task on the
package's shared event-loop thread (:func:`rlm_jupyter.sync.run_sync`'s loop), so the caller's
thread stays free: a notebook cell returns at once and its widgets keep receiving clicks. With
``step=True`` the root pauses before each code block it would run (the step gate of
:mod:`rlm_jupyter.core.gate`); the caller then runs, edits or skips the block, sends the root
model a message (:meth:`Session.say`), continues without pausing, or stops::

    s = RLM(model=..., step=True).start("How many lines?", text)
    p = s.step()                                   # wait for the first proposed block (a Proposal)
    p.code                                         # the code the model wrote
    s.edit("print(len(context.splitlines()))")    # run this instead; wait for the next proposal
    s.say("Answer with a number only.")            # goes into the root's next user message
    result = s.run()                               # to the end, no more pauses (an RLMResult)

Follow-ups (``RLMResult.ask``, ``%%rlm --continue R``) are sessions too: see
:mod:`rlm_jupyter.followup`.

Threading: the gate runs on the loop thread; every public method of :class:`Session` may be
called from any other thread (a notebook's main thread, a widget callback). The blocking ones
(:meth:`~Session.step`, :meth:`~Session.run`, :meth:`~Session.stop`, :meth:`~Session.wait`)
must not be called from the loop thread itself.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import threading
import time
from typing import Any, Callable

from .core import events as ev
from .core.context import check_picklable, normalize_context
from .core.gate import RUN, SKIP, Decision
from .core.loop import RunTree
from .core.trajectory import Trajectory
from .result import RLMResult
from .sync import shared_loop

@dataclasses.dataclass(frozen=True)
class Proposal:
    """A root code block waiting for a decision.

    Attributes:
        iteration: the root turn (1-based); block: the block's index in the reply (0-based);
        code: the code the model wrote.
    """

    iteration: int
    block: int
    code: str


class Session:
    """One RLM run in the background, optionally paused before each root code block.

    Args:
        rlm: the :class:`~rlm_jupyter.rlm.RLM` whose settings the run uses.
        query: the question (str). context: as for :meth:`RLM.acompletion`.
        step: pause before each root code block (else only after :meth:`step`).
        on_event: called with every event, from the loop thread.
        setup: more set-up of the run's :class:`~rlm_jupyter.core.loop.RunTree` (follow-ups).
        loop: the event loop to run on (default: the shared loop thread's).
        finish: called with the :class:`RLMResult` on the loop thread before waiters wake.

    Attributes:
        trajectory: the run so far (:class:`Trajectory`, folded on the loop thread).
        stepping: whether the run pauses before each root block (``False`` after
            :meth:`resume`/:meth:`run`).

    Raises:
        TypeError: ``query`` is not a str. FileNotFoundError: a ``Path`` context is missing.
        ContextError: the context cannot be pickled.
    """

    def __init__(
        self,
        rlm: Any,
        query: str,
        context: Any,
        step: bool = True,
        on_event: Callable[[ev.Event], None] | None = None,
        setup: Callable[[RunTree], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        finish: Callable[[RLMResult], None] | None = None,
    ) -> None:
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, not {type(query).__name__}")
        context = normalize_context(context)
        check_picklable(context)
        self.rlm = rlm
        self.query = query
        self.stepping = bool(step)
        self.trajectory = Trajectory()
        self.result: RLMResult | None = None
        self.error: BaseException | None = None
        self._on_event = on_event
        self._setup_more = setup
        self._finish = finish
        self._cond = threading.Condition()
        self._pending: Proposal | None = None
        self._future: asyncio.Future | None = None
        self._pauses = 0
        self._pause_next = False
        self._say: collections.deque[str] = collections.deque()
        self._task: asyncio.Task | None = None
        self._stop_requested = False
        self._done = False
        self._loop = loop or shared_loop()
        if self._loop.is_closed():
            raise RuntimeError("the event loop of this run is closed")
        self._cf = asyncio.run_coroutine_threadsafe(self._main(context), self._loop)
        self._cf.add_done_callback(self._finished)

    # -- the run (loop thread) ----------------------------------------------------------------
    async def _main(self, context: Any) -> RLMResult:
        self._task = asyncio.current_task()
        if self._stop_requested:
            raise asyncio.CancelledError()
        result = await self.rlm.acompletion(self.query, context, on_event=self._event, setup=self._setup)
        if self._finish is not None:
            self._finish(result)
        return result

    def _event(self, e: ev.Event) -> None:
        self.trajectory.apply(e)
        if self._on_event is not None:
            self._on_event(e)

    def _setup(self, tree: RunTree) -> None:
        tree.gate = self._gate
        tree.say = self._say
        if self._setup_more is not None:
            self._setup_more(tree)

    async def _gate(self, node: Any, iteration: int, block: int, code: str) -> Decision:
        with self._cond:
            if not (self.stepping or self._pause_next):
                return RUN
            self._pause_next = False
            fut = asyncio.get_running_loop().create_future()
            self._pending, self._future = Proposal(iteration, block, code), fut
            self._pauses += 1
            self._cond.notify_all()
        try:
            return await fut
        finally:
            with self._cond:
                if self._future is fut:
                    self._pending, self._future = None, None
                self._cond.notify_all()

    def _finished(self, cf) -> None:
        with self._cond:
            try:
                self.result = cf.result()
            except BaseException as exc:  # cancelled before it began, or bad input
                self.error = exc
            self._done = True
            self._pending, self._future = None, None
            self._cond.notify_all()

    def _cancel(self) -> None:  # loop thread
        self._stop_requested = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    # -- state ----------------------------------------------------------------------------------
    @property
    def pending(self) -> Proposal | None:
        """The root code block waiting for a decision, or ``None`` (running, or done)."""
        with self._cond:
            return self._pending

    @property
    def done(self) -> bool:
        """Whether the run has ended (``result`` or ``error`` is set)."""
        return self._done

    @property
    def run_id(self) -> str:
        return self.trajectory.run_id

    # -- decisions (any thread, never block) ----------------------------------------------------
    def decide(self, decision: Decision) -> bool:
        """Answer the pending proposal with ``decision``; returns False if nothing is pending."""
        if not isinstance(decision, Decision):
            raise TypeError(f"decision must be a Decision, not {type(decision).__name__}")
        with self._cond:
            fut = self._future
            if fut is None:
                return False
            self._future = self._pending = None
            self._cond.notify_all()
        self._loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(decision))
        return True

    def say(self, text: str) -> None:
        """Queue ``text`` for the root model: it ends the root's next user message (after the
        outputs of the current turn's blocks); recorded as a ``user_message`` event.

        Raises:
            TypeError: not a str. ValueError: empty.
        """
        if not isinstance(text, str):
            raise TypeError(f"say() takes a str, not {type(text).__name__}")
        if not text.strip():
            raise ValueError("say() needs a non-empty message")
        self._say.append(text.strip())

    def resume(self) -> None:
        """Stop pausing and let the pending block (if any) run; returns at once (Continue)."""
        with self._cond:
            self.stepping = False
            self._pause_next = False
        self.decide(RUN)

    def stop_nowait(self) -> None:
        """Ask the run to stop (as the stop button does); returns at once."""
        if not self._done:
            self._loop.call_soon_threadsafe(self._cancel)

    # -- blocking ---------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends or ``timeout`` seconds pass; returns whether it ended."""
        with self._cond:
            return self._cond.wait_for(lambda: self._done, timeout)

    def _advance(self, decision: Decision | None, timeout: float | None) -> Proposal | None:
        with self._cond:
            target = self._pauses + 1
            if self._future is None:
                if decision is not None and decision is not RUN:
                    raise RuntimeError("the session is not paused at a code block: nothing to edit or skip")
                self._pause_next = True
            else:
                self.decide(decision or RUN)
            if not self._cond.wait_for(lambda: self._pauses >= target or self._done, timeout):
                raise TimeoutError(f"no next code block within {timeout} s")
            return self._pending

    def step(self, timeout: float | None = None) -> Proposal | None:
        """Run the pending block as proposed (if paused), then wait until the root proposes its
        next code block (one root turn) or the run ends.

        Returns:
            the next :class:`Proposal`, or ``None`` when the run ended (see :attr:`result`).

        Raises:
            TimeoutError: nothing happened within ``timeout`` seconds (the run goes on).
        """
        return self._advance(None, timeout)

    def edit(self, code: str, timeout: float | None = None) -> Proposal | None:
        """Run ``code`` instead of the pending block, then as :meth:`step`.

        Raises:
            RuntimeError: not paused at a block. TypeError: ``code`` is not a str.
        """
        if not isinstance(code, str):
            raise TypeError(f"edit() takes the code as a str, not {type(code).__name__}")
        return self._advance(Decision("edit", code), timeout)

    def skip(self, timeout: float | None = None) -> Proposal | None:
        """Skip the pending block (the model is told it did not run), then as :meth:`step`.

        Raises:
            RuntimeError: not paused at a block.
        """
        return self._advance(SKIP, timeout)

    def run(self, timeout: float | None = None, on_tick: Callable[[], None] | None = None) -> RLMResult:
        """Run to the end without pausing; returns the :class:`RLMResult`.

        A ``KeyboardInterrupt`` while waiting stops the run (its result has status
        ``"stopped"``). ``on_tick`` is called from this thread about every 0.1 s while waiting.

        Raises:
            TimeoutError: not ended within ``timeout`` seconds (the run goes on).
            the run's own error: bad input found when it started (``ContextError``, ...).
        """
        self.resume()
        return self._result(timeout, on_tick)

    def stop(self, timeout: float | None = 60.0) -> RLMResult:
        """Stop the run (its kernels are shut down) and return its result (status ``"stopped"``
        unless it had already ended)."""
        self.stop_nowait()
        return self._result(timeout)

    def _result(self, timeout: float | None, on_tick: Callable[[], None] | None = None) -> RLMResult:
        try:
            if on_tick is None:
                ended = self.wait(timeout)
            else:
                deadline = None if timeout is None else time.monotonic() + timeout
                while not (ended := self.wait(0.1)) and (deadline is None or time.monotonic() < deadline):
                    on_tick()
        except KeyboardInterrupt:
            self.stop_nowait()
            ended = self.wait(60.0)
        if not ended:
            raise TimeoutError(f"the run did not end within {timeout} s")
        if self.result is None:
            if isinstance(self.error, (asyncio.CancelledError, KeyboardInterrupt)) or self.error is None:
                raise RuntimeError("the run was stopped before it started")
            raise self.error
        return self.result

    def __repr__(self) -> str:
        state = "done" if self._done else ("paused" if self._pending else "running")
        return f"Session({state}, run_id={self.run_id!r}, iterations={len(self.trajectory.iterations)})"
