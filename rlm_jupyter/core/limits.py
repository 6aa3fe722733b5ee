"""Tree-wide limits and usage accounting for one RLM run.

One :class:`Budget` is shared by the root RLM, all its sub-calls and all child RLMs, so that
the totals (tokens, USD, sub-calls) and the limits cover the whole call tree. The official
implementation does not count child-RLM usage in the parent's total (``RLM_FACTS.md``); here
every LM call anywhere in the tree is added to the same budget.
"""

from __future__ import annotations

import dataclasses
import threading
import time


class LimitExceeded(Exception):
    """Raised when a tree-wide limit is reached.

    Attributes:
        limit: the limit's name (a field of :class:`Limits`).
        message: human-readable explanation with the value reached.
    """

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.message = message


@dataclasses.dataclass
class Usage:
    """Usage of one LM call or a sum of calls.

    Attributes:
        input_tokens: prompt tokens.
        output_tokens: completion tokens.
        usd: cost in US dollars from litellm's price map (0.0 when unknown).
        seconds: wall time of the call(s), seconds.
        calls: number of LM calls summed.
        cost_known: False if any summed call had no price in litellm's map.
        cache_hits: calls served from the LM cache (they cost 0 USD; their tokens are the
            recorded reply's).
        cached_seconds: wall time of those cache hits, seconds (not in ``seconds``).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0
    seconds: float = 0.0
    calls: int = 0
    cost_known: bool = True
    cache_hits: int = 0
    cached_seconds: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: "Usage") -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.usd += other.usd
        self.seconds += other.seconds
        self.calls += other.calls
        self.cost_known = self.cost_known and other.cost_known
        self.cache_hits += other.cache_hits
        self.cached_seconds += other.cached_seconds

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Usage":
        d = d or {}
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


@dataclasses.dataclass
class Limits:
    """Limits of a run. ``None`` means unlimited.

    Attributes:
        max_iterations: root-LM turns per RLM node (paper/official default 30).
        max_depth: recursion depth; 1 means ``rlm_query`` is a plain sub-call (paper).
        max_subcalls: sub-calls (``llm_query`` prompts and ``rlm_query`` children) in the tree.
        max_tokens: input + output tokens over every LM call in the tree.
        max_usd: US dollars over every LM call in the tree.
        max_seconds: wall-clock seconds for the whole run.
    """

    max_iterations: int = 30
    max_depth: int = 1
    max_subcalls: int | None = 1000
    max_tokens: int | None = None
    max_usd: float | None = None
    max_seconds: float | None = None


class Budget:
    """Thread-safe usage totals of a run tree, checked against :class:`Limits`."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.usage = Usage()
        self.root_usage = Usage()
        self.subcalls = 0
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self.exceeded: LimitExceeded | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def record(self, usage: Usage, root: bool = False) -> None:
        """Add one LM call's usage (``root`` marks calls of the top-level root LM)."""
        with self._lock:
            self.usage.add(usage)
            if root:
                self.root_usage.add(usage)

    def reserve_subcalls(self, n: int = 1) -> None:
        """Count ``n`` new sub-calls; raises :class:`LimitExceeded` past ``max_subcalls``."""
        with self._lock:
            lim = self.limits.max_subcalls
            if lim is not None and self.subcalls + n > lim:
                raise self._exceed(
                    "max_subcalls", f"sub-call limit reached: {self.subcalls} made, {n} more asked, max_subcalls={lim}"
                )
            self.subcalls += n

    def _exceed(self, name: str, message: str) -> LimitExceeded:
        exc = LimitExceeded(name, message)
        if self.exceeded is None:
            self.exceeded = exc
        return exc

    def check(self) -> None:
        """Raise :class:`LimitExceeded` if tokens, USD or wall time are over their limits."""
        lim = self.limits
        with self._lock:
            if self.exceeded is not None:
                raise self.exceeded
            if lim.max_tokens is not None and self.usage.total_tokens >= lim.max_tokens:
                raise self._exceed(
                    "max_tokens", f"token limit reached: {self.usage.total_tokens} tokens used, max_tokens={lim.max_tokens}"
                )
            if lim.max_usd is not None and self.usage.usd >= lim.max_usd:
                raise self._exceed("max_usd", f"cost limit reached: ${self.usage.usd:.4f} spent, max_usd=${lim.max_usd}")
            if lim.max_seconds is not None and self.elapsed() >= lim.max_seconds:
                raise self._exceed(
                    "max_seconds", f"time limit reached: {self.elapsed():.1f} s elapsed, max_seconds={lim.max_seconds}"
                )

    def remaining_seconds(self) -> float | None:
        if self.limits.max_seconds is None:
            return None
        return max(0.0, self.limits.max_seconds - self.elapsed())
