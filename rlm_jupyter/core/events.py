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
import logging
import threading
import time
import warnings
from typing import Any, Callable, TypedDict

from typing_extensions import NotRequired

log = logging.getLogger("rlm_jupyter.events")

# Event kinds. Their ``data`` fields are listed beside each one.
RUN_STARTED = "run_started"  # query, context_info, model, sub_model, limits, depth; follow-ups: parent_run, earlier_runs
ITERATION_STARTED = "iteration_started"  # iteration (1-based), max_iterations
ROOT_REPLY = "root_reply"  # iteration, text, usage {input_tokens, output_tokens, usd, seconds}
CODE_STARTED = "code_started"  # iteration, block (0-based), code (what runs); original_code (the model's, if the user edited it)
CODE_FINISHED = "code_finished"  # iteration, block, outputs (nbformat dicts), text, status ("skipped": the user skipped it), seconds, execution_count
SUBCALL_STARTED = "subcall_started"  # op ("llm_query" | "rlm_query" | "tool"), model, prompt, batch (id or None)
SUBCALL_FINISHED = "subcall_finished"  # answer, usage, error (str or None), cached
FINAL = "final"  # answer, source ("FINAL"|"FINAL_VAR"|"answer"|"forced")
NOTICE = "notice"  # message (something the user should know: kernel restarted, repeated reply, ...)
LIMIT = "limit"  # limit (name), value, message
ERROR = "error"  # message, error_type, traceback (internal failures: full detail)
RUN_FINISHED = "run_finished"  # status, answer, usage totals
# Additive kinds (issue 11). ROOT_DELTA is transient: views show it, trajectories do not keep it.
ROOT_DELTA = "root_delta"  # iteration, text (the next piece of the streamed root reply), reset (True: discard the pieces so far, the call is retried)
USER_MESSAGE = "user_message"  # iteration, text (a message from the user, added to the root's next user message)

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
    ROOT_DELTA,
    USER_MESSAGE,
)


# -- payloads: the ``data`` of each kind ------------------------------------------------------
# Units: tokens are integers, seconds are wall-clock floats, USD floats. ``usage`` dicts are
# :meth:`rlm_jupyter.core.limits.Usage.to_dict` (input_tokens, output_tokens, usd, seconds,
# calls, ...) or ``None`` when unknown (an imported log, a host tool).


class RunStartedData(TypedDict):
    """``run_started``: a node (root or child RLM) begins. Follow-ups add ``parent_run`` (run
    id) and ``earlier_runs`` (``[{"run_id", "query", "answer"}]``); forks add ``forked_from``."""

    query: str
    context_info: dict  # rlm_jupyter.core.context.describe_context: type, total_chars, parts
    model: str
    sub_model: str
    limits: dict  # dataclasses.asdict(Limits)
    prompt_style: NotRequired[str]
    max_output_chars: NotRequired[int]  # characters
    sub_window_tokens: NotRequired[int | None]  # tokens
    subcalls: NotRequired[bool]
    allowed_models: NotRequired[list[str]]
    parent_run: NotRequired[str]
    earlier_runs: NotRequired[list[dict]]
    forked_from: NotRequired[dict]


class IterationStartedData(TypedDict):
    """``iteration_started``: a root turn begins (``iteration`` is 1-based)."""

    iteration: int
    max_iterations: NotRequired[int]
    messages: NotRequired[Any]  # imported rlms logs only: the prompt sent


class RootReplyData(TypedDict):
    """``root_reply``: the root LM's whole reply of this turn."""

    iteration: int
    text: str
    usage: dict | None


class CodeStartedData(TypedDict):
    """``code_started``: one code block starts in the REPL environment (``block`` 0-based)."""

    iteration: int
    block: int
    code: str  # what runs
    original_code: NotRequired[str]  # the model's code, when the user edited it


class CodeFinishedData(TypedDict):
    """``code_finished``: the block ended. ``status``: ok | error | timeout | died | skipped."""

    iteration: int
    block: int
    outputs: list[dict]  # nbformat v4 output dicts
    text: str  # plain text of the outputs (untruncated, characters)
    status: str
    seconds: float
    execution_count: int | None


class SubcallStartedData(TypedDict):
    """``subcall_started``: ``op`` is llm_query (also each prompt of llm_query_batched),
    rlm_query (at the depth limit) or tool (``model`` is then the tool's name)."""

    op: str
    model: str
    prompt: str
    batch: str | None  # batch id shared by the prompts of one llm_query_batched


class SubcallFinishedData(TypedDict):
    """``subcall_finished``: ``error`` is ``None`` on success (``"stopped"`` when cancelled)."""

    answer: str | None
    usage: dict | None
    error: str | None
    cached: bool  # served from the LM cache (0 USD)


class FinalData(TypedDict):
    """``final``: the node's answer. ``source``: FINAL | FINAL_VAR | answer | forced."""

    answer: str
    source: str
    iteration: NotRequired[int]


class NoticeData(TypedDict):
    """``notice``: something the user should know (kernel restarted, repeated reply, a view
    that failed, ...)."""

    message: str
    iteration: NotRequired[int]
    load_seconds: NotRequired[float]


class LimitData(TypedDict):
    """``limit``: a tree-wide limit stopped the node."""

    limit: str  # name: max_subcalls | max_tokens | max_usd | max_seconds | ...
    message: str
    value: NotRequired[Any]


class ErrorData(TypedDict):
    """``error``: an internal failure, with full detail."""

    message: str
    error_type: str
    traceback: str


class RunFinishedData(TypedDict):
    """``run_finished``: status done | max_iterations | repeated | limit | error | stopped."""

    status: str
    answer: str | None
    message: str
    usage: dict | None  # totals of this node's subtree


class RootDeltaData(TypedDict):
    """``root_delta`` (transient): the next piece of the streamed root reply; ``reset`` True
    means discard the pieces so far (the call is retried)."""

    iteration: int
    text: str
    reset: bool


class UserMessageData(TypedDict):
    """``user_message``: text the user sent; added to the root's next user message."""

    iteration: int
    text: str


PAYLOADS: dict[str, type] = {
    RUN_STARTED: RunStartedData,
    ITERATION_STARTED: IterationStartedData,
    ROOT_REPLY: RootReplyData,
    CODE_STARTED: CodeStartedData,
    CODE_FINISHED: CodeFinishedData,
    SUBCALL_STARTED: SubcallStartedData,
    SUBCALL_FINISHED: SubcallFinishedData,
    FINAL: FinalData,
    NOTICE: NoticeData,
    LIMIT: LimitData,
    ERROR: ErrorData,
    RUN_FINISHED: RunFinishedData,
    ROOT_DELTA: RootDeltaData,
    USER_MESSAGE: UserMessageData,
}
"""Event kind → the TypedDict documenting its ``data``."""


@dataclasses.dataclass
class Event:
    """One thing that happened in a run.

    Attributes:
        kind: one of :data:`KINDS`.
        node_id: the node it belongs to (``"0"`` root, ``"0.s3"`` sub-call, ``"0.c1"`` child RLM).
        parent_id: the node's parent, ``None`` for the root.
        depth: recursion depth of the node (root 0; its sub-calls and child RLMs 1).
        t: seconds since the root run started (wall clock).
        data: JSON-serialisable fields, depending on ``kind`` (see :data:`PAYLOADS`).
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
    order. A subscriber that raises never breaks the run: it is removed, kept on the bus's
    ``errors`` list, reported by a :class:`RuntimeWarning` and a log warning (logger
    ``rlm_jupyter.events``), and a ``notice`` event naming it goes to the other subscribers
    (the view shows it, the trajectory keeps it).
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
        failed: list[str] | None = None
        with self._lock:
            for fn in list(self._subs):
                try:
                    fn(ev)
                except Exception as exc:  # a broken view must not break the run
                    self.errors.append((fn, exc))
                    self._subs.remove(fn)
                    failed = (failed or []) + [_failure(fn, kind, exc)]
            for message in failed or ():
                log.warning("%s", message)
                warnings.warn(message, RuntimeWarning, stacklevel=2)
                self.emit(NOTICE, node_id, parent_id, depth, message=message)
        return ev


def _failure(fn: Subscriber, kind: str, exc: BaseException) -> str:
    """One line saying which subscriber failed on which event kind, and why."""
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"an event subscriber ({name}) failed on a {kind} event and was removed: {type(exc).__name__}: {exc}"
