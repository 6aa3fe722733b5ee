"""Recorded runs: load any recording, and compare a re-execution with its recording.

:func:`load_trajectory` reads the three kinds of recording this project knows: the JSONL
event stream (:meth:`Trajectory.to_jsonl`), the notebook export (``.ipynb``; the event stream
is in ``metadata["rlm"]["events"]``, see :mod:`rlm_jupyter.notebook_io`), and the JSONL
log of the official ``rlms`` package (:mod:`.official`).

:func:`compare` lists where a replayed run (``replay/<path>`` model, :mod:`rlm_jupyter.lm.replay`)
differs from the recording: root replies, code, each block's status and printed output (and
the kinds of rich output), sub-call prompts and answers, final answer and status.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from .events import Event
from .official import is_official_log, load_official_jsonl
from .text import one_line
from .trajectory import CodeCell, NodeTrace, Trajectory, load_jsonl


def load_trajectory(path: str | pathlib.Path) -> Trajectory:
    """A recorded run from ``path`` (``.jsonl`` of this project or of ``rlms``, or ``.ipynb``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: another suffix, a notebook without RLM events, or a malformed line.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no recorded run at {path}")
    suffix = path.suffix.lower()
    if suffix == ".ipynb":
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{path} is not a notebook: {exc}") from None
        events = ((nb.get("metadata") or {}).get("rlm") or {}).get("events") if isinstance(nb, dict) else None
        if not events:
            raise ValueError(f"{path} holds no RLM trajectory (metadata.rlm.events is missing)")
        return Trajectory.from_events(Event(**{f.name: e.get(f.name) for f in dataclasses.fields(Event)}) for e in events)
    if suffix == ".jsonl":
        return load_official_jsonl(path) if is_official_log(path) else load_jsonl(path)
    raise ValueError(f"cannot read a recorded run from {path.name!r}: use a .jsonl or .ipynb file")


@dataclasses.dataclass
class Difference:
    """One place where a replayed run differs from its recording.

    Attributes:
        where: e.g. ``"node 0, iteration 2, block 0"`` or ``"node 0.c1"``.
        what: ``"output"``, ``"status"``, ``"output kinds"``, ``"code"``, ``"reply"``,
            ``"sub-call prompt"``, ``"sub-call answer"``, ``"iterations"``, ``"blocks"``,
            ``"sub-calls"``, ``"answer"``, ``"run status"`` or ``"node"``.
        recorded, replayed: the two values (``None`` when absent on that side).
    """

    where: str
    what: str
    recorded: Any
    replayed: Any

    def __str__(self) -> str:
        return f"{self.where}: {self.what} differs: recorded {_short(self.recorded)}, replayed {_short(self.replayed)}"


def _short(v: Any, n: int = 80) -> str:
    return one_line(repr(v), n)


def _kinds(cell: CodeCell) -> list[str]:
    kinds = []
    for o in cell.outputs:
        t = o.get("output_type")
        kinds.append(f"{t}:{','.join(sorted((o.get('data') or {}).keys()))}" if "data" in o else f"{t}:{o.get('name') or o.get('ename') or ''}")
    return kinds


def _compare_node(a: NodeTrace, b: NodeTrace, out: list[Difference]) -> None:
    node = f"node {a.node_id}"
    for ia, ib in zip(a.iterations, b.iterations):
        here = f"{node}, iteration {ia.index}"
        if ia.reply != ib.reply:
            out.append(Difference(here, "reply", ia.reply, ib.reply))
        for k, (ca, cb) in enumerate(zip(ia.cells, ib.cells)):
            at = f"{here}, block {k}"
            for what, va, vb in (("code", ca.code, cb.code), ("output", ca.text, cb.text), ("status", ca.status, cb.status), ("output kinds", _kinds(ca), _kinds(cb))):
                if va != vb:
                    out.append(Difference(at, what, va, vb))
        if len(ia.cells) != len(ib.cells):
            out.append(Difference(here, "blocks", len(ia.cells), len(ib.cells)))
        if len(ia.subcalls) != len(ib.subcalls):
            out.append(Difference(here, "sub-calls", len(ia.subcalls), len(ib.subcalls)))
        for sa, sb in zip(ia.subcalls, ib.subcalls):
            if sa.prompt != sb.prompt:
                out.append(Difference(f"{here}, sub-call {sa.node_id}", "sub-call prompt", sa.prompt, sb.prompt))
            if (sa.answer, sa.error) != (sb.answer, sb.error):
                out.append(Difference(f"{here}, sub-call {sa.node_id}", "sub-call answer", sa.answer or sa.error, sb.answer or sb.error))
    if len(a.iterations) != len(b.iterations):
        out.append(Difference(node, "iterations", len(a.iterations), len(b.iterations)))
    if a.answer != b.answer:
        out.append(Difference(node, "answer", a.answer, b.answer))
    if a.status != b.status:
        out.append(Difference(node, "run status", a.status, b.status))


def compare(recorded: Trajectory, replayed: Trajectory) -> list[Difference]:
    """Where ``replayed`` differs from ``recorded``, node by node (root first), in order.

    Timings, execution counts, usage and run ids are not compared. An empty list means the
    re-execution reproduced the recording.
    """
    out: list[Difference] = []
    for nid in list(recorded.nodes) + [n for n in replayed.nodes if n not in recorded.nodes]:
        a, b = recorded.nodes.get(nid), replayed.nodes.get(nid)
        if a is None or b is None:
            out.append(Difference(f"node {nid}", "node", "present" if a else None, "present" if b else None))
            continue
        _compare_node(a, b, out)
    return out
