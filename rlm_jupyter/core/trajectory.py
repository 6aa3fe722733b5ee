"""The trajectory of a run, built by folding its event stream.

:class:`TrajectoryRecorder` is an event-bus subscriber; the same fold rebuilds a trajectory
from a JSONL file (:func:`load_jsonl`), so a recorded run and a live one are the same object.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Iterable

from . import events as ev
from .limits import Usage


@dataclasses.dataclass
class CodeCell:
    """One code block the root LM wrote and the REPL ran.

    Attributes:
        code: source; outputs: nbformat v4 output dicts; text: their plain text (untruncated);
        status: ``ok``/``error``/``timeout``/``died``/``running``/``skipped`` (the user
        skipped it in step mode); seconds: wall time; execution_count: the environment
        kernel's counter; original_code: the model's code when the user edited it before it
        ran (``code`` is what ran), else ``None``.
    """

    code: str
    outputs: list[dict] = dataclasses.field(default_factory=list)
    text: str = ""
    status: str = "running"
    seconds: float = 0.0
    execution_count: int | None = None
    original_code: str | None = None


@dataclasses.dataclass
class SubCall:
    """One ``llm_query`` (or one prompt of ``llm_query_batched``, an ``rlm_query`` at the
    depth limit, or a host tool call).

    Attributes:
        node_id, parent_id, depth: position in the tree; model (for ``op == "tool"``: the
        tool's name); prompt; answer; op: ``llm_query`` | ``rlm_query`` | ``tool``;
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
    op: str = "llm_query"


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

    # -- aggregations (what the views show per iteration / per child) -------------------
    def subcall_ops(self) -> dict[str, str]:
        """Sub-call id → its operation: ``llm_query`` (also each prompt of
        ``llm_query_batched``), ``rlm_query`` (at the depth limit it is one sub-call) or ``tool``."""
        return {sid: sc.op for sid, sc in self.subcalls.items()}

    def descendant_usage(self, node_id: str) -> Usage:
        """Usage (tokens, USD, LM seconds, calls) of node ``node_id`` and everything below it:
        its iterations' root calls, its children's, and every sub-call in that subtree."""
        total = Usage()
        prefix = node_id + "."
        for nid, node in self.nodes.items():
            if nid == node_id or nid.startswith(prefix):
                for it in node.iterations:
                    total.add(it.usage)
        for sid, sc in self.subcalls.items():
            if sid.startswith(prefix):
                total.add(sc.usage)
        return total

    def iteration_usage(self, it: Iteration) -> Usage:
        """Usage of one iteration: its root call, its sub-calls and its child RLMs (whole subtrees)."""
        total = Usage()
        total.add(it.usage)
        for sc in it.subcalls:
            total.add(sc.usage)
        for cid in it.children:
            total.add(self.descendant_usage(cid))
        return total

    def iteration_times(self, node_id: str) -> dict[int, tuple[float, float | None]]:
        """Iteration index → ``(start, end)`` in seconds since the run started, for node
        ``node_id`` (end ``None`` while the iteration runs); ``{}`` for an unknown node."""
        times: dict[int, list] = {}
        last = None
        for e in self.events:
            if e.node_id != node_id:
                continue
            if e.kind == ev.ITERATION_STARTED:
                if last is not None and times[last][1] is None:
                    times[last][1] = e.t
                last = e.data.get("iteration")
                times[last] = [e.t, None]
            elif e.kind in (ev.FINAL, ev.RUN_FINISHED) and last is not None and times[last][1] is None:
                times[last][1] = e.t
        return {k: (v[0], v[1]) for k, v in times.items()}

    # -- the fold -----------------------------------------------------------------------
    def apply(self, e: ev.Event) -> None:
        """Update the trajectory with one event (the recorder's subscriber callback).
        ``root_delta`` events (pieces of a streamed reply) are transient: not kept."""
        if e.kind == ev.ROOT_DELTA:
            return
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
            cell = CodeCell(d.get("code", ""), original_code=d.get("original_code"))
            self._iteration(node, d.get("iteration")).cells.append(cell)
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
        elif k == ev.USER_MESSAGE and node.iterations:
            node.iterations[-1].notices.append("message from the user: " + str(d.get("text", "")))
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
                op=d.get("op") or "llm_query",
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
        """A trajectory folded from ``events`` (in emission order), as a live run builds it."""
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
