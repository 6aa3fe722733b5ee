"""What every generator returns."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class Task:
    """One benchmark item with an exact gold answer.

    Attributes:
        kind: ``sniah``, ``sniah_code``, ``oolong`` or ``pairs``.
        length: target context length in cl100k tokens; tokens: its actual length.
        seed: the generator seed.
        context: the long input (str).
        query: the question, including the required answer format.
        gold: ``list[str]`` (S-NIAH), ``int`` or ``str`` (OOLONG), ``list[[int, int]]`` (Pairs).
        meta: generator details (needle depth, question type, pairs task id, resamples, ...).
    """

    kind: str
    length: int
    seed: int
    context: str
    query: str
    gold: Any
    tokens: int = 0
    meta: dict = dataclasses.field(default_factory=dict)

    def header(self) -> dict:
        """Everything but the context (what results files record)."""
        d = dataclasses.asdict(self)
        d.pop("context")
        return d
