"""Shortening text for the LM and for people: the one set of truncation helpers.

- :func:`truncate` — head and tail kept, a marker in the middle (REPL output fed to the root LM,
  as the paper's implementation does: the model sees how a long output begins and ends);
- :func:`cap` — the head kept, a marker saying how many characters were left out (views, cells);
- :func:`one_line` — whitespace collapsed to single spaces, cut with ``…`` (tables, summaries,
  error messages).

All lengths are in characters (Python ``str`` code points).
"""

from __future__ import annotations

TRUNCATION_MARKER = "\n... [{n:,} characters truncated] ...\n"


def truncate(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters: its first two thirds and last third kept,
    with :data:`TRUNCATION_MARKER` saying how many characters were cut. Unchanged if short."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return text[:head] + TRUNCATION_MARKER.format(n=len(text) - head - tail) + text[len(text) - tail :]


def cap(text: str, limit: int, note: str = "", dots: str = "…") -> str:
    """The first ``limit`` characters of ``text`` and ``"\\n… [N more characters<note>]"``;
    unchanged if short. ``note`` says where the rest is (e.g. ``"; the full text is in ..."``);
    ``dots``: the marker's ellipsis (``"..."`` in notebook cells, plain ASCII)."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n{dots} [{len(text) - limit:,} more characters{note}]"


def one_line(text: str | None, limit: int = 100) -> str:
    """``text`` (``None`` → ``""``) with whitespace runs collapsed to one space, cut to at most
    ``limit`` characters, ``…`` marking a cut."""
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
