"""Live counters of a run, folded from its events, and the one status line of a run (shared by
the notebook view, its static rendering and the CLI)."""

from __future__ import annotations

import dataclasses

from . import events as ev
from .limits import Usage


@dataclasses.dataclass
class RunStats:
    """What a progress line shows.

    Attributes:
        status: ``running`` until the root node finishes, then its final status.
        iteration / max_iterations: the root's current turn.
        usage: tokens, USD and LM seconds over the whole tree so far.
        subcalls: sub-calls started; subcalls_running: not yet finished.
        elapsed: seconds since the run started (time of the latest event).
        model / sub_model: ids; answer: the root's answer once known; message: why it ended.
    """

    status: str = "running"
    iteration: int = 0
    max_iterations: int = 0
    usage: Usage = dataclasses.field(default_factory=Usage)
    subcalls: int = 0
    subcalls_running: int = 0
    elapsed: float = 0.0
    model: str = ""
    sub_model: str = ""
    answer: str | None = None
    message: str = ""

    def apply(self, e: ev.Event) -> None:
        """Update from one event (an :class:`~rlm_jupyter.core.events.EventBus` subscriber)."""
        self.elapsed = e.t
        d = e.data
        if e.kind == ev.RUN_STARTED and e.node_id == "0":
            self.model, self.sub_model = d.get("model", ""), d.get("sub_model", "")
            self.max_iterations = d.get("limits", {}).get("max_iterations", 0)
        elif e.kind == ev.ITERATION_STARTED and e.node_id == "0":
            self.iteration = d.get("iteration", 0)
        elif e.kind == ev.ROOT_REPLY:
            self.usage.add(Usage.from_dict(d.get("usage")))
        elif e.kind == ev.SUBCALL_STARTED:
            self.subcalls += 1
            self.subcalls_running += 1
        elif e.kind == ev.SUBCALL_FINISHED:
            self.subcalls_running -= 1
            self.usage.add(Usage.from_dict(d.get("usage")))
        elif e.kind == ev.FINAL and e.node_id == "0":
            self.answer = d.get("answer")
        elif e.kind == ev.RUN_FINISHED and e.node_id == "0":
            self.status = d.get("status", "done")
            self.message = d.get("message", "")
            if d.get("answer") is not None:
                self.answer = d.get("answer")

    def line(self) -> str:
        """The status line: status, iteration i/N, elapsed seconds, input/output tokens, USD
        (``+``: some prices unknown), sub-calls (and how many run), root / sub-model ids."""
        running = f" ({self.subcalls_running} running)" if self.subcalls_running and self.status == "running" else ""
        return (
            f"RLM {self.status} · iteration {self.iteration}/{self.max_iterations} · {self.elapsed:.1f} s · "
            f"{fmt_tokens(self.usage)} · {fmt_usd(self.usage)} · {self.subcalls} sub-calls{running} · "
            f"models {self.model} / {self.sub_model}"
        )


def fmt_tokens(u: Usage) -> str:
    """``"1,234 in / 56 out tokens"``."""
    return f"{u.input_tokens:,} in / {u.output_tokens:,} out tokens"


def fmt_usd(u: Usage) -> str:
    """``"$0.0123"`` (``+`` when part of the cost is unknown: a model without a price)."""
    return f"${u.usd:.4f}" if u.cost_known else f"${u.usd:.4f}+"
