"""A player over a recorded run: step through its root iterations in the notebook, or share it
as one static HTML file.

::

    import rlm_jupyter
    player = rlm_jupyter.show("run.jsonl")     # or .ipynb, an rlms log, a Trajectory, an RLMResult
    player                                    # (the cell's value) previous / next / play / slider
    player.save_html("run.html")              # every step pre-rendered, works without a kernel

``%rlm show PATH`` does the same from the line magic. A step is one root iteration; what a
step shows is described in :mod:`.player_html` (the messages the root LM saw, its reply, the
code's outputs, the sub-call tree so far, tokens and USD up to that step).

The widget (ipywidgets): a ``VBox`` (CSS class ``rlm-player``) with the run's header, a row of
**previous** / **next** buttons (``rlm-player-prev`` / ``rlm-player-next``), a ``Play`` widget
``jslink``-ed to an ``IntSlider`` (``rlm-player-slider``; the arrow keys move it when it has the
focus), and one ``HTML`` (``rlm-player-view``) holding the current step. Callbacks run when the
kernel is idle (nothing else is running when the user clicks), so they are delivered. No
script from the recording ever reaches the page: the step HTML is built by the sanitizing
renderers only.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from ..core.trajectory import Trajectory
from . import player_html as P
from .outputs_html import Caps, fmt_tokens, fmt_usd


def load_run(source: Any, run: int = 0) -> Trajectory:
    """The recorded run ``source`` refers to.

    Args:
        source: a :class:`~rlm_jupyter.core.trajectory.Trajectory`, an ``RLMResult`` (its
            trajectory), or a path (str / ``os.PathLike``) of a ``.jsonl`` written by this project
            (:meth:`Trajectory.to_jsonl`), a ``.jsonl`` log of the official ``rlms`` package
            (detected by its first record, :mod:`rlm_jupyter.core.official`), or an ``.ipynb``
            written by this project (:func:`rlm_jupyter.notebook_io.write_notebook`).
        run: for an ``rlms`` log holding several completions, which one (0-based).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a recording this project reads (suffix, malformed line, a notebook
            without RLM events, an empty recording, ``run`` out of range).
        TypeError: ``source`` is none of the above.
    """
    traj = getattr(source, "trajectory", source)
    if isinstance(traj, Trajectory):
        return traj
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"show() takes a Trajectory, an RLMResult or a path, not {type(source).__name__}")
    from ..core.official import is_official_log, load_official_jsonl
    from ..core.records import load_trajectory

    path = pathlib.Path(source).expanduser()
    if path.suffix.lower() == ".jsonl" and path.is_file() and is_official_log(path):
        try:
            traj = load_official_jsonl(path, run)
        except IndexError as exc:
            raise ValueError(str(exc)) from None
    else:
        traj = load_trajectory(path)
    if traj.root is None:
        raise ValueError(f"{path} holds no RLM run (no run_started event of a root node)")
    return traj


class Player:
    """Steps through a recorded run (see the module docstring).

    Args:
        trajectory: the run (:func:`load_run` makes one from a path).
        caps: character limits of the rendering (:class:`~rlm_jupyter.jupyter.outputs_html.Caps`).

    Attributes:
        trajectory: the run; steps: number of steps (root iterations, a forced final turn
            included); step: the current step (1-based; 0 for a run without iterations).
    """

    def __init__(self, trajectory: Trajectory, caps: Caps = Caps()) -> None:
        self.trajectory = trajectory
        self.caps = caps
        self.steps = len(trajectory.iterations)
        self._step = 1 if self.steps else 0
        self._html: dict[int, str] = {}
        self._ops = trajectory.subcall_ops()
        self._times = trajectory.iteration_times("0")
        self._recorded = P.recorded_messages(trajectory)
        self._box = None

    # -- stepping ---------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self._step

    @step.setter
    def step(self, k: int) -> None:
        self.go(k)

    def go(self, k: int) -> int:
        """Show step ``k`` (clamped to ``1..steps``); returns the step shown."""
        k = max(1, min(int(k), self.steps)) if self.steps else 0
        if self._box is not None and self._slider.value != k:
            self._slider.value = k  # its observer calls _show
        else:
            self._show(k)
        return self._step

    def next(self) -> int:
        """The next step (stays on the last); returns the step shown."""
        return self.go(self._step + 1)

    def previous(self) -> int:
        """The previous step (stays on the first); returns the step shown."""
        return self.go(self._step - 1)

    def html(self, k: int | None = None) -> str:
        """The HTML of step ``k`` (default: the current one); rendered once, then kept.

        Raises:
            IndexError: ``k`` out of ``1..steps``.
        """
        k = self._step if k is None else k
        if not self.steps:
            return '<div class="rlm-player-step-body rlm-player-empty">This run has no root iterations.</div>'
        if k not in self._html:
            self._html[k] = P.step_html(self.trajectory, k, self.caps, self._ops, self._times, self._recorded)
        return self._html[k]

    def _show(self, k: int) -> None:
        self._step = k
        if self._box is not None:
            self._view.value = self.html(k)
            self._prev.disabled = k <= 1
            self._next.disabled = k >= self.steps

    # -- the widget -------------------------------------------------------------------------
    @property
    def widget(self):
        """The ipywidgets ``VBox`` of the player (made on first use)."""
        if self._box is None:
            self._build()
        return self._box

    @property
    def view_html(self) -> str:
        """The HTML the widget shows now (the ``rlm-player-view`` widget's value)."""
        self.widget  # noqa: B018 (made on first use)
        return self._view.value

    def _build(self) -> None:
        import ipywidgets as W

        n = max(self.steps, 1)
        self._prev = W.Button(description="previous", icon="chevron-left", tooltip="previous step", layout=W.Layout(width="auto"))
        self._next = W.Button(description="next", icon="chevron-right", tooltip="next step", layout=W.Layout(width="auto"))
        self._prev.add_class("rlm-player-prev")
        self._next.add_class("rlm-player-next")
        self._slider = W.IntSlider(value=max(self._step, 1), min=1, max=n, description="step", layout=W.Layout(width="360px"),
                                   disabled=self.steps <= 1)
        self._slider.add_class("rlm-player-slider")
        self._play = W.Play(value=max(self._step, 1), min=1, max=n, interval=2000, description="play", show_repeat=False,
                            disabled=self.steps <= 1)
        self._link = W.jslink((self._play, "value"), (self._slider, "value"))
        count = W.HTML(f"of {self.steps} steps")
        self._view = W.HTML(layout=W.Layout(width="100%"))
        self._view.add_class("rlm-player-view")
        head = W.HTML(P.run_summary_html(self.trajectory), layout=W.Layout(width="100%"))
        controls = W.HBox([self._prev, self._play, self._slider, self._next, count])
        self._box = W.VBox([head, controls, self._view], layout=W.Layout(width="100%"))
        self._box.add_class("rlm-player")
        self._prev.on_click(lambda _b: self.previous())
        self._next.on_click(lambda _b: self.next())
        self._slider.observe(lambda change: self._show(int(change["new"])), names="value")
        self._show(self._step)

    def close(self) -> None:
        """Close the widget models (the player can be shown again: they are made anew)."""
        if self._box is None:
            return
        for w in (self._link, self._box, *self._box.children, *self._box.children[1].children):
            try:
                w.close()
            except Exception:
                pass
        self._box = None

    def _repr_mimebundle_(self, **kwargs) -> dict:
        from .view import widgets_available

        text = repr(self)
        if widgets_available():
            bundle = self.widget._repr_mimebundle_(**kwargs)
            bundle["text/plain"] = text
            return bundle
        return {"text/plain": text, "text/html": P.run_summary_html(self.trajectory) + self.html()}

    def __repr__(self) -> str:
        u = self.trajectory.usage()
        return (
            f"<RLM player: run {self.trajectory.run_id}, step {self._step} of {self.steps}, "
            f"{fmt_tokens(u)}, {fmt_usd(u)}>"
        )

    # -- static export ----------------------------------------------------------------------
    def document(self) -> str:
        """The static player as one self-contained HTML document (see :func:`.player_html.document_html`)."""
        return P.document_html(self.trajectory, self.caps, [self.html(k) for k in range(1, self.steps + 1)])

    def to_html(self, path: str | os.PathLike) -> pathlib.Path:
        """Write :meth:`document` to ``path`` (UTF-8; parent folders made); returns the path.
        The file needs no kernel, no network and runs no script."""
        path = pathlib.Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.document(), encoding="utf-8")
        return path

    save_html = to_html


def show(trajectory_or_path: Any, run: int = 0, caps: Caps = Caps()) -> Player:
    """A :class:`Player` over a recorded run; Jupyter displays it when it is a cell's value
    (or ``IPython.display.display(player)``).

    Args:
        trajectory_or_path: see :func:`load_run`; run: which completion of an ``rlms`` log.
        caps: character limits of the rendering.

    Raises:
        FileNotFoundError, ValueError, TypeError: see :func:`load_run`.
    """
    return Player(load_run(trajectory_or_path, run), caps)
