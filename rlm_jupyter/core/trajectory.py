"""The trajectory of a run, built by folding its event stream.

:class:`TrajectoryRecorder` is an event-bus subscriber; the same fold rebuilds a trajectory
from a JSONL file (:func:`load_jsonl`), so a recorded run and a live one are the same object.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Iterable

from . import events as ev
from .limits import Usage


@dataclasses.dataclass
class CodeCell:
    """One code block the root LM wrote and the REPL ran.

    Attributes:
        code: source; outputs: nbformat v4 output dicts; text: their plain text (untruncated);
        status: ``ok``/``error``/``timeout``/``died``/``running``; seconds: wall time;
        execution_count: the environment kernel's counter.
    """

    code: str
    outputs: list[dict] = dataclasses.field(default_factory=list)
    text: str = ""
    status: str = "running"
    seconds: float = 0.0
    execution_count: int | None = None


@dataclasses.dataclass
class SubCall:
    """One ``llm_query`` (or one prompt of ``llm_query_batched``).

    Attributes:
        node_id, parent_id, depth: position in the tree; model; prompt; answer;
        error (str or None); usage; batch: batch id shared by prompts of one batched call;
        iteration: the parent's root iteration it was made in; t_start/t_end: seconds since start.
    """

    node_id: str
    parent_id: str
    depth: int
    model: str
    prompt: str
    batch: str | None = None
    iteration: int | None = None
    answer: str | None = None
    error: str | None = None
    usage: Usage = dataclasses.field(default_factory=Usage)
    cached: bool = False
    t_start: float = 0.0
    t_end: float | None = None


@dataclasses.dataclass
class Iteration:
    """One root turn: the LM's reply, the code it ran, the sub-calls that code made.

    Attributes:
        index: 1-based turn number; reply: the full reply text; usage: the root call's usage;
        cells: code blocks run; subcalls: sub-calls made during this turn; children: node ids
        of child RLMs started by ``rlm_query`` during this turn; notices: messages.
    """

    index: int
    reply: str = ""
    usage: Usage = dataclasses.field(default_factory=Usage)
    cells: list[CodeCell] = dataclasses.field(default_factory=list)
    subcalls: list[SubCall] = dataclasses.field(default_factory=list)
    children: list[str] = dataclasses.field(default_factory=list)
    notices: list[str] = dataclasses.field(default_factory=list)

    @property
    def prose(self) -> str:
        from .parsing import parse_reply

        return parse_reply(self.reply).prose


@dataclasses.dataclass
class NodeTrace:
    """One RLM node (root or child) of the tree."""

    node_id: str
    parent_id: str | None
    depth: int
    query: str = ""
    context_info: dict = dataclasses.field(default_factory=dict)
    model: str = ""
    sub_model: str = ""
    iterations: list[Iteration] = dataclasses.field(default_factory=list)
    status: str = "running"
    answer: str | None = None
    answer_source: str | None = None
    message: str = ""


class Trajectory:
    """Everything a run did, as a tree of :class:`NodeTrace` plus the raw events.

    Attributes:
        events: every :class:`~rlm_jupyter.core.events.Event`, in order.
        nodes: RLM nodes by id (``"0"`` is the root); subcalls: every sub-call by id.
    """

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.nodes: dict[str, NodeTrace] = {}
        self.subcalls: dict[str, SubCall] = {}

    @property
    def root(self) -> NodeTrace | None:
        return self.nodes.get("0")

    @property
    def run_id(self) -> str:
        return self.events[0].run_id if self.events else ""

    @property
    def iterations(self) -> list[Iteration]:
        """The root node's iterations."""
        return self.root.iterations if self.root else []

    def usage(self) -> Usage:
        """Usage summed over every LM call of the tree (root, children, sub-calls)."""
        total = Usage()
        for node in self.nodes.values():
            for it in node.iterations:
                total.add(it.usage)
        for sc in self.subcalls.values():
            total.add(sc.usage)
        return total

    # -- the fold -----------------------------------------------------------------------
    def apply(self, e: ev.Event) -> None:
        """Update the trajectory with one event (the recorder's subscriber callback)."""
        self.events.append(e)
        d = e.data
        k = e.kind
        if k == ev.RUN_STARTED:
            self.nodes[e.node_id] = NodeTrace(
                e.node_id, e.parent_id, e.depth, d.get("query", ""), d.get("context_info", {}),
                d.get("model", ""), d.get("sub_model", ""),
            )
            parent = self.nodes.get(e.parent_id) if e.parent_id else None
            if parent is not None and parent.iterations:
                parent.iterations[-1].children.append(e.node_id)
            return
        if k in (ev.SUBCALL_STARTED, ev.SUBCALL_FINISHED):
            self._apply_subcall(e)
            return
        node = self.nodes.get(e.node_id)
        if node is None:
            return
        if k == ev.ITERATION_STARTED:
            node.iterations.append(Iteration(d["iteration"]))
        elif k == ev.ROOT_REPLY:
            it = self._iteration(node, d.get("iteration"))
            it.reply = d.get("text", "")
            it.usage = Usage.from_dict(d.get("usage"))
        elif k == ev.CODE_STARTED:
            self._iteration(node, d.get("iteration")).cells.append(CodeCell(d.get("code", "")))
        elif k == ev.CODE_FINISHED:
            it = self._iteration(node, d.get("iteration"))
            if it.cells:
                cell = it.cells[-1]
                cell.outputs = d.get("outputs", [])
                cell.text = d.get("text", "")
                cell.status = d.get("status", "ok")
                cell.seconds = d.get("seconds", 0.0)
                cell.execution_count = d.get("execution_count")
        elif k == ev.NOTICE and node.iterations:
            node.iterations[-1].notices.append(d.get("message", ""))
        elif k == ev.FINAL:
            node.answer = d.get("answer")
            node.answer_source = d.get("source")
        elif k == ev.RUN_FINISHED:
            node.status = d.get("status", "done")
            if d.get("answer") is not None:
                node.answer = d.get("answer")
            node.message = d.get("message", "")

    def _iteration(self, node: NodeTrace, index: int | None) -> Iteration:
        if not node.iterations or (index is not None and node.iterations[-1].index != index):
            node.iterations.append(Iteration(index or len(node.iterations) + 1))
        return node.iterations[-1]

    def _apply_subcall(self, e: ev.Event) -> None:
        d = e.data
        if e.kind == ev.SUBCALL_STARTED:
            parent = self.nodes.get(e.parent_id or "")
            it = parent.iterations[-1] if parent and parent.iterations else None
            sc = SubCall(
                e.node_id, e.parent_id or "", e.depth, d.get("model", ""), d.get("prompt", ""),
                batch=d.get("batch"), iteration=it.index if it else None, t_start=e.t,
            )
            self.subcalls[e.node_id] = sc
            if it is not None:
                it.subcalls.append(sc)
            return
        sc = self.subcalls.get(e.node_id)
        if sc is None:
            return
        sc.answer = d.get("answer")
        sc.error = d.get("error")
        sc.usage = Usage.from_dict(d.get("usage"))
        sc.cached = bool(d.get("cached"))
        sc.t_end = e.t

    # -- JSONL --------------------------------------------------------------------------
    def to_jsonl(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write the event stream, one JSON event per line; returns the path."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for e in self.events:
                f.write(e.to_json() + "\n")
        return path

    @classmethod
    def from_events(cls, events: Iterable[ev.Event]) -> "Trajectory":
        traj = cls()
        for e in events:
            traj.apply(e)
        return traj


def load_jsonl(path: str | pathlib.Path) -> Trajectory:
    """Rebuild a :class:`Trajectory` from a JSONL file written by :meth:`Trajectory.to_jsonl`.

    Raises:
        ValueError: a line is not an RLM event (with its line number).
    """
    events = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                events.append(ev.Event.from_json(line))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: {exc}") from None
    return Trajectory.from_events(events)


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

    def close(self) -> None:
        """Shut down the kept REPL environment, if any."""
        if self.environment is not None:
            self.environment.close()

    @property
    def run_id(self) -> str:
        return self.trajectory.run_id

    def to_jsonl(self, path: str | pathlib.Path) -> pathlib.Path:
        """Save the event stream as JSONL (see :func:`load_jsonl`)."""
        return self.trajectory.to_jsonl(path)

    def to_notebook(self, path: str | pathlib.Path) -> pathlib.Path:
        """Save the trajectory as a Jupyter notebook (.ipynb, nbformat v4): the root LM's
        code as code cells with their real outputs, its prose as markdown, sub-calls
        summarised."""
        from ..jupyter.notebook import write_notebook

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
        ans = (self.answer or "")[:60]
        return (
            f"RLMResult(status={self.status!r}, answer={ans!r}, iterations={len(self.trajectory.iterations)}, "
            f"tokens={u.total_tokens}, usd={u.usd:.4f}, wall_seconds={self.wall_seconds:.1f})"
        )
