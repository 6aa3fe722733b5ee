"""The event stream of an RLM run.

A run is a tree of *nodes*: the root RLM (node ``"0"``), its sub-calls (``"0.s1"``,
``"0.s2"``, ...) and child RLMs started by ``rlm_query`` (``"0.c1"``), whose own sub-calls
nest below them (``"0.c1.s1"``). Every change of state is one :class:`Event`; the
trajectory, the notebook display, the CLI progress and the JSONL/.ipynb exports are all
subscribers of the same stream (see :class:`EventBus`).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import Any, Callable

# Event kinds. Their ``data`` fields are listed beside each one.
RUN_STARTED = "run_started"  # query, context_info, model, sub_model, limits, depth
ITERATION_STARTED = "iteration_started"  # iteration (1-based), max_iterations
ROOT_REPLY = "root_reply"  # iteration, text, usage {input_tokens, output_tokens, usd, seconds}
CODE_STARTED = "code_started"  # iteration, block (0-based), code
CODE_FINISHED = "code_finished"  # iteration, block, outputs (nbformat dicts), text, status, seconds, execution_count
SUBCALL_STARTED = "subcall_started"  # op ("llm_query"), model, prompt, batch (id or None)
SUBCALL_FINISHED = "subcall_finished"  # answer, usage, error (str or None), cached
FINAL = "final"  # answer, source ("FINAL"|"FINAL_VAR"|"answer"|"forced")
NOTICE = "notice"  # message (something the user should know: kernel restarted, repeated reply, ...)
LIMIT = "limit"  # limit (name), value, message
ERROR = "error"  # message, error_type, traceback (internal failures: full detail)
RUN_FINISHED = "run_finished"  # status, answer, usage totals

KINDS = (
    RUN_STARTED,
    ITERATION_STARTED,
    ROOT_REPLY,
    CODE_STARTED,
    CODE_FINISHED,
    SUBCALL_STARTED,
    SUBCALL_FINISHED,
    FINAL,
    NOTICE,
    LIMIT,
    ERROR,
    RUN_FINISHED,
)


@dataclasses.dataclass
class Event:
    """One thing that happened in a run.

    Attributes:
        kind: one of :data:`KINDS`.
        node_id: the node it belongs to (``"0"`` root, ``"0.s3"`` sub-call, ``"0.c1"`` child RLM).
        parent_id: the node's parent, ``None`` for the root.
        depth: recursion depth of the node (root 0; its sub-calls and child RLMs 1).
        t: seconds since the root run started (wall clock).
        data: JSON-serialisable fields, depending on ``kind`` (see the constants above).
        run_id: identifier of the whole run tree.
    """

    kind: str
    node_id: str
    parent_id: str | None
    depth: int
    t: float
    data: dict[str, Any]
    run_id: str = ""

    def to_json(self) -> str:
        """One line of JSON (the JSONL export format)."""
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, default=str)

    @classmethod
    def from_json(cls, line: str) -> "Event":
        """Parse a line written by :meth:`to_json`. Raises ``ValueError`` on a malformed line."""
        obj = json.loads(line)
        if not isinstance(obj, dict) or obj.get("kind") not in KINDS:
            raise ValueError(f"not an RLM event: {line[:80]!r}")
        return cls(**{f.name: obj.get(f.name) for f in dataclasses.fields(cls)})


Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers events to subscribers, in order, from whichever thread emits them.

    Subscribers are called synchronously under a lock, so each sees events in one total
    order. A subscriber that raises is reported once on the bus's ``errors`` list and
    removed; it never breaks the run.
    """

    def __init__(self, run_id: str = "") -> None:
        self.run_id = run_id
        self._subs: list[Subscriber] = []
        self._lock = threading.RLock()
        self._t0 = time.monotonic()
        self.errors: list[tuple[Subscriber, BaseException]] = []

    def subscribe(self, fn: Subscriber) -> Subscriber:
        """Add ``fn`` (called with each :class:`Event`); returns it for later ``unsubscribe``."""
        with self._lock:
            self._subs.append(fn)
        return fn

    def unsubscribe(self, fn: Subscriber) -> None:
        with self._lock:
            if fn in self._subs:
                self._subs.remove(fn)

    def elapsed(self) -> float:
        """Seconds since the bus was created (the run's start)."""
        return time.monotonic() - self._t0

    def emit(self, kind: str, node_id: str, parent_id: str | None, depth: int, **data: Any) -> Event:
        """Create an event and deliver it to every subscriber; returns the event."""
        ev = Event(kind, node_id, parent_id, depth, round(self.elapsed(), 6), data, self.run_id)
        with self._lock:
            for fn in list(self._subs):
                try:
                    fn(ev)
                except Exception as exc:  # a broken view must not break the run
                    self.errors.append((fn, exc))
                    self._subs.remove(fn)
        return ev
