"""The `%%rlm` cell's progress display: one output that updates while the run goes on.

Events arrive on the run's worker thread; they are only queued there. The cell's own thread
(the kernel's main thread, which waits for the run) drains the queue in :meth:`tick` and
updates the display through IPython's ``display(..., display_id=...)`` / ``update_display``
(Jupyter ``update_display_data`` messages), at most every ``min_interval`` seconds.
"""

from __future__ import annotations

import html
import queue
import time

from ..core import events as ev
from ..core.stats import RunStats


class ProgressView:
    """A live one-line status under the cell, replaced by the answer when the run ends.

    Args:
        quiet: show nothing while running (the final answer is still shown).
        min_interval: seconds between display updates.
    """

    def __init__(self, quiet: bool = False, min_interval: float = 0.25) -> None:
        self.stats = RunStats()
        self.quiet = quiet
        self.min_interval = min_interval
        self._queue: queue.SimpleQueue[ev.Event] = queue.SimpleQueue()
        self._handle = None
        self._last = 0.0
        self.updates = 0

    def on_event(self, e: ev.Event) -> None:
        """Event-bus subscriber; thread-safe (only enqueues)."""
        self._queue.put(e)

    def _drain(self) -> bool:
        changed = False
        while True:
            try:
                e = self._queue.get_nowait()
            except queue.Empty:
                return changed
            self.stats.apply(e)
            changed = True

    def tick(self) -> None:
        """Apply queued events and refresh the display (call from the cell's thread)."""
        if not self._drain() or self.quiet:
            return
        now = time.monotonic()
        if now - self._last < self.min_interval and self.stats.status == "running":
            return
        self._last = now
        self._show(self._bundle())

    def finish(self, answer: str | None, status: str, message: str) -> None:
        """Final rendering: status line and the answer."""
        self._drain()
        self.stats.status = status
        self.stats.message = message
        if answer is not None:
            self.stats.answer = answer
        self._show(self._bundle(final=True))

    def _show(self, bundle: dict) -> None:
        from IPython.display import display

        self.updates += 1
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)

    def _bundle(self, final: bool = False) -> dict:
        s = self.stats
        text = s.line()
        if s.message and s.status != "done":
            text += f"\n{s.message}"
        if final and s.answer is not None:
            text += f"\n\nAnswer:\n{s.answer}"
        color = {"running": "#555", "done": "#1a7f37", "stopped": "#9a6700"}.get(s.status, "#cf222e")
        body = f'<div class="rlm-progress" style="font-family:monospace;color:{color}">{html.escape(s.line())}</div>'
        if s.message and s.status != "done":
            body += f'<div class="rlm-message">{html.escape(s.message)}</div>'
        if final and s.answer is not None:
            body += (
                '<div class="rlm-answer" style="margin-top:.5em;padding:.5em;border-left:3px solid #1a7f37">'
                f"<b>Answer</b><pre style='white-space:pre-wrap'>{html.escape(s.answer)}</pre></div>"
            )
        return {"text/plain": text, "text/html": body}
