"""Step mode in a notebook (``%%rlm VAR --step``): a panel of controls under the live view.

Before each root code block runs, :class:`StepPanel` shows the proposed code with **Run**,
**Edit** (the code box becomes editable; **Run edited** runs the edited version), **Skip**,
**Say** (a message to the root model before its next turn), **Continue** (stop pausing) and
**Stop**. While the root model writes, the panel shows its reply growing (``root_delta`` events).

Why the cell returns at once (measured with JupyterLab 4.6, ipykernel 7.4, Chromium): a widget
callback is not delivered while a cell blocks, so ``%%rlm --step`` starts a
:class:`~rlm_jupyter.session.Session` (the run is a task on the package's loop thread) and
returns. :class:`StepDriver` then ticks on the kernel's own main-thread asyncio loop
(``loop.call_later``): it refreshes the live view, the cells view and the panel, and at the end
shows the static rendering (``update_display_data`` by display id, which JupyterLab applies
after the cell has returned). Widget callbacks run on that same thread, so no widget is touched
from two threads.

The Jupyter stop button interrupts an idle kernel with SIGINT, which ipykernel ignores while
idle (``SIG_IGN`` between requests; during a request it installs its own handler and restores
the previous one after). While a stepped run is active the driver installs, when it finds
``SIG_IGN``, a handler that stops the active stepped runs; with none active it ignores SIGINT,
as ipykernel would. ``%rlm stop`` stops them too.

Text from the model reaches the page only through :mod:`rlm_jupyter.safe_html`
(``escape``); the code box is a ``Textarea`` whose value is text, not HTML.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from typing import Any, Callable

from ..core import events as ev
from ..core.gate import RUN, SKIP, Decision
from ..safe_html import escape

log = logging.getLogger("rlm_jupyter.jupyter")

TICK_SECONDS = 0.2
WRITING_CHARS = 3_000  # the tail of a streamed reply shown while it is written (characters)

_ACTIVE: set["StepDriver"] = set()
_lock = threading.Lock()


def _on_sigint(signum, frame) -> None:
    """SIGINT while the kernel is idle: stop every active stepped run (else ignore, as ipykernel)."""
    for driver in list(_ACTIVE):
        driver.session.stop_nowait()


def writing_html(text: str, chars: int = WRITING_CHARS) -> str:
    """The tail (``chars`` characters) of a reply being streamed, escaped, as HTML
    (``<div class="rlm-writing">``); shown by the step panel and the live view."""
    return f"<div class='rlm-writing'><i>the model is writing…</i><pre>{escape(text[-chars:])}</pre></div>"


def active_drivers() -> list["StepDriver"]:
    """The stepped runs of this kernel that have not ended."""
    return list(_ACTIVE)


class StepPanel:
    """The controls of one stepped run (ipywidgets; call every method on the kernel's main thread
    except :meth:`on_event`).

    Args:
        session: the :class:`~rlm_jupyter.session.Session` it steers (may be set later, as
            ``panel.session``, when the panel must subscribe to the run's events first).

    Attributes:
        box: the ``VBox`` shown under the cell (CSS class ``rlm-step``; its buttons have
            ``rlm-step-run``, ``rlm-step-edit``, ``rlm-step-skip``, ``rlm-step-say``,
            ``rlm-step-continue``, ``rlm-step-stop``).
        said: messages the user sent with Say, in order.
    """

    def __init__(self, session: Any = None) -> None:
        import ipywidgets as W

        self.session = session
        self._queue: queue.SimpleQueue[ev.Event] = queue.SimpleQueue()
        self._writing = ""
        self._shown = None  # the proposal on display
        self._editing = False
        self.said: list[str] = []
        self.status = W.HTML(layout=W.Layout(width="100%"))
        self.writing = W.HTML(layout=W.Layout(width="100%"))
        self.code = W.Textarea(layout=W.Layout(width="100%", height="10em"), disabled=True)
        self.code.add_class("rlm-step-code")
        b = {}
        for name, label, style, tip in [
            ("run", "Run", "success", "Run the proposed code as the model wrote it"),
            ("edit", "Edit", "", "Edit the code, then run your version"),
            ("skip", "Skip", "warning", "Do not run this block (the model is told)"),
            ("continue", "Continue", "info", "Run to the end without pausing"),
            ("stop", "Stop", "danger", "Stop the run"),
            ("say", "Say", "", "Send the message to the root model before its next turn"),
        ]:
            b[name] = W.Button(description=label, button_style=style, tooltip=tip)
            b[name].add_class(f"rlm-step-{name}")
        self.buttons = b
        self.say_text = W.Text(placeholder="Message to the root model before its next turn", layout=W.Layout(width="60%"))
        self.say_text.add_class("rlm-step-say-text")
        self.said_html = W.HTML()
        b["run"].on_click(lambda _: self._decide(RUN))
        b["edit"].on_click(lambda _: self._edit())
        b["skip"].on_click(lambda _: self._decide(SKIP))
        b["continue"].on_click(lambda _: self._continue())
        b["stop"].on_click(lambda _: self.session.stop_nowait())
        b["say"].on_click(lambda _: self._say())
        decide_row = W.HBox([b["run"], b["edit"], b["skip"], b["continue"], b["stop"]])
        say_row = W.HBox([self.say_text, b["say"]])
        self.box = W.VBox([self.status, self.writing, self.code, decide_row, say_row, self.said_html])
        self.box.add_class("rlm-step")
        self._widgets = [self.status, self.writing, self.code, *b.values(), self.say_text, self.said_html, decide_row, say_row, self.box]
        self._set_paused(False)
        self.status.value = "<b>step mode</b>: starting…"

    # -- any thread -------------------------------------------------------------------------------
    def on_event(self, e: ev.Event) -> None:
        """Event-bus subscriber (loop thread): only enqueues."""
        if e.node_id == "0" and e.kind in (ev.ROOT_DELTA, ev.ROOT_REPLY, ev.ITERATION_STARTED):
            self._queue.put(e)

    # -- main thread ------------------------------------------------------------------------------
    def _set_paused(self, paused: bool) -> None:
        for name in ("run", "edit", "skip"):
            self.buttons[name].disabled = not paused
        self.code.disabled = not (paused and self._editing)

    def _decide(self, decision: Decision) -> None:
        if self.session.decide(decision):
            self._shown, self._editing = None, False
            self.buttons["edit"].description = "Edit"
            self._set_paused(False)
            self.status.value = "<b>step mode</b>: running the block…" if decision.action != "skip" else "<b>step mode</b>: skipped"

    def _edit(self) -> None:
        if not self._editing:
            self._editing = True
            self.buttons["edit"].description = "Run edited"
            self.code.disabled = False
        else:
            self._decide(Decision("edit", self.code.value))

    def _say(self) -> None:
        text = self.say_text.value.strip()
        if not text:
            return
        self.session.say(text)
        self.said.append(text)
        self.say_text.value = ""
        self.said_html.value = "".join(f"<div class='rlm-step-said'>to the model: {escape(t)}</div>" for t in self.said[-5:])

    def _continue(self) -> None:
        self.session.resume()
        self._shown = None
        self._set_paused(False)
        self.buttons["continue"].disabled = True
        self.status.value = "<b>step mode</b>: continuing to the end without pausing…"

    def tick(self) -> None:
        """Show the streamed reply and the pending proposal (call about every 0.2 s)."""
        while True:
            try:
                e = self._queue.get_nowait()
            except queue.Empty:
                break
            if e.kind == ev.ROOT_DELTA:
                self._writing = "" if e.data.get("reset") else self._writing + str(e.data.get("text", ""))
            else:
                self._writing = ""
        value = writing_html(self._writing) if self._writing else ""
        if self.writing.value != value:
            self.writing.value = value
        p = self.session.pending
        if p is not None and p != self._shown:
            self._shown, self._editing = p, False
            self.buttons["edit"].description = "Edit"
            self.code.value = p.code
            self._set_paused(True)
            self.status.value = (
                f"<b>step mode</b>: iteration {p.iteration}, block {p.block + 1}: the model proposes this code. "
                "Run it, edit it, skip it, or continue without pausing."
            )

    def close(self, status: str) -> None:
        """Disable and close the widgets (the driver replaces the display with a line of text)."""
        for w in self._widgets:
            try:
                w.close()
            except Exception:
                pass


class StepDriver:
    """Ticks a stepped run's views on the kernel's main-thread event loop until the run ends.

    Args:
        session: the run's :class:`~rlm_jupyter.session.Session`.
        loop: the kernel's running asyncio loop (``asyncio.get_running_loop()`` in a cell).
        tickers: called on every tick (live view, cells view, panel).
        on_end: called once with the session when the run has ended (store the result, show
            the static rendering).
        interval: seconds between ticks.
    """

    def __init__(self, session: Any, loop: Any, tickers: list[Callable[[], None]], on_end: Callable[[Any], None],
                 interval: float = TICK_SECONDS) -> None:
        self.session = session
        self.loop = loop
        self.tickers = tickers
        self.on_end = on_end
        self.interval = interval
        self.errors: list[BaseException] = []
        self.ended = False
        self.cell_id: str | None = None  # the notebook cell that started the run (set by %%rlm)

    def start(self) -> None:
        """Register as active and schedule the first tick."""
        with _lock:
            _ACTIVE.add(self)
        self.loop.call_soon(self._tick)

    def _tick(self) -> None:
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # the kernel is idle: its stop button sends SIGINT
            signal.signal(signal.SIGINT, _on_sigint)
        for fn in self.tickers:
            try:
                fn()
            except Exception as exc:  # a broken view must not stop the run's end from being shown
                log.warning("a step-mode view failed: %s: %s", type(exc).__name__, exc)
                if len(self.errors) < 5:
                    self.errors.append(exc)
        if not self.session.done:
            self.loop.call_later(self.interval, self._tick)
            return
        self.ended = True
        with _lock:
            _ACTIVE.discard(self)
            idle_handler = not _ACTIVE and signal.getsignal(signal.SIGINT) is _on_sigint
        if idle_handler:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.on_end(self.session)


def run_stepped(session: Any, panel: StepPanel, view: Any, cells: Any, store: Callable[[Any], None],
                start_wait: float = 10.0) -> StepDriver:
    """Show ``panel`` and ``view`` under the current cell and drive them until ``session`` ends;
    returns at once (call from the ``%%rlm --step`` cell, on the kernel's main thread).

    ``view`` (a :class:`~rlm_jupyter.jupyter.view.LiveView`) first displays itself while the cell
    still runs (so its output belongs to the cell): this waits up to ``start_wait`` seconds for
    the run's first event. At the end the view shows the static rendering, the panel is replaced
    by one line of text, and ``store(result)`` gets the :class:`RLMResult` (not called if the run
    failed before it started: the panel then shows the error).

    Raises:
        RuntimeError: no running asyncio loop in this thread (not a Jupyter kernel).
    """
    import asyncio
    import time

    from IPython.display import display

    loop = asyncio.get_running_loop()
    handle = display(panel.box, display_id=True)
    deadline = time.monotonic() + start_wait
    while True:  # the view's first display must happen while the cell runs
        view.tick()
        if view.trajectory.root is not None or session.done or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    panel.tick()

    def end(s: Any) -> None:
        result = s.result
        if result is None:
            msg = f"{type(s.error).__name__}: {s.error}" if s.error is not None else "stopped before it started"
            view.finish(None, "error", msg)
            cells.finish("error")
        else:
            view.finish(result.answer_text, result.status, result.message, result.trajectory, result.usage, result.wall_seconds)
            cells.finish(result.status)
        status = result.status if result is not None else "error"
        panel.close(status)
        line = f"step mode ended: {status}" + ("" if result is not None else f" ({msg})")
        handle.update({"text/html": f"<div class='rlm-step-ended'>{escape(line)}</div>", "text/plain": line}, raw=True)
        if result is not None:
            store(result)

    driver = StepDriver(session, loop, [view.tick, cells.tick, panel.tick], end)
    driver.start()
    return driver
