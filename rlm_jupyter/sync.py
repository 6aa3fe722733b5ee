"""Synchronous entry points over rlm_jupyter's one long-lived event loop.

Why one loop in a daemon thread, for the life of the process: litellm keeps per-loop helpers
(its logging worker, cached async HTTP clients); a loop per call (``asyncio.run``, or
``jupyter_core.utils.run_sync``'s per-thread loops, or anyio's ``from_thread`` portals, which
need a portal started per caller) would re-create them and leave warnings about closed loops.
A kept REPL environment (:class:`~rlm_jupyter.result.RunEnvironment`) and a stepped
:class:`~rlm_jupyter.session.Session` also need their kernel client's sockets to stay on the
loop that made them, across notebook cells. The thread is a daemon: it never blocks exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Callable


class _LoopThread:
    """One long-lived event loop in a daemon thread, shared by every synchronous run."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        """The shared loop (started on first use, thread ``rlm-event-loop``)."""
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="rlm-event-loop", daemon=True).start()
                cls._loop = loop
            return cls._loop


def shared_loop() -> asyncio.AbstractEventLoop:
    """The event loop every synchronous call of this package runs on (see the module docstring)."""
    return _LoopThread.get()


def run_sync(coro, on_tick: Callable[[], None] | None = None) -> Any:
    """Run ``coro`` on rlm_jupyter's shared event-loop thread and wait for its result.

    Works from any thread, also one whose own event loop is running (a notebook cell). This is
    how :meth:`RLM.completion <rlm_jupyter.rlm.RLM.completion>` runs; use it for other
    coroutines of this package too (e.g. ``run_sync(LMClient().acomplete(model, messages))``),
    so that litellm keeps one loop. ``on_tick`` is called from the calling thread about every
    0.1 s while waiting.

    A ``KeyboardInterrupt`` while waiting cancels the run's task; the coroutine then
    finishes its cleanup and its (stopped) result is returned.

    Raises:
        whatever ``coro`` raises; KeyboardInterrupt: the task was cancelled before it started.
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
