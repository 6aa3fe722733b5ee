"""Parsing the root LM's reply: code blocks and final-answer markers.

The protocol (paper arXiv 2512.24601, §2): code goes in ```` ```repl ```` fences (we also take
``python``/``py``/``ipython`` fences, and dedent blocks that a model indented inside a markdown
list); the answer is ``FINAL(text)`` or ``FINAL_VAR(variable_name)`` written *outside* code
fences. A marker inside a fence is code, not an answer (the official implementation's parsing
bugs came from mixing the two).
"""

from __future__ import annotations

import dataclasses
import re
import textwrap

FENCE_LANGS = ("repl", "python", "py", "ipython", "python3")

_FENCE_RE = re.compile(
    r"^(?P<indent>[ \t]*)```[ \t]*(?P<lang>[A-Za-z0-9_+-]*)[^\n]*\n(?P<body>.*?)^[ \t]*```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_MARKER_RE = re.compile(r"^[ \t>*_-]*(?P<name>FINAL_VAR|FINAL)[ \t]*\(", re.MULTILINE | re.IGNORECASE)
_INLINE_MARKER_RE = re.compile(r"(?<![A-Za-z0-9_.])(?P<name>FINAL_VAR|FINAL)\(")


@dataclasses.dataclass
class FinalMarker:
    """A final-answer marker found in prose.

    Attributes:
        kind: ``"FINAL"`` (``value`` is the answer text) or ``"FINAL_VAR"`` (``value`` is a
            REPL variable name).
        value: the marker's argument with surrounding quotes removed.
    """

    kind: str
    value: str


@dataclasses.dataclass
class ParsedReply:
    """A root reply split into its parts.

    Attributes:
        code_blocks: the code of each repl/python fence, dedented, in order.
        prose: the text outside the fences (markdown), stripped.
        final: the first final-answer marker outside fences, or ``None``.
    """

    code_blocks: list[str]
    prose: str
    final: FinalMarker | None


def _balanced_argument(text: str, start: int) -> str:
    """Text from ``start`` (just after an opening parenthesis) to its matching close.

    Parentheses inside quotes are ignored. When the parentheses never balance, the text up to
    the last ``)`` (or the end) is taken: a truncated ``FINAL(`` still yields its answer.
    """
    depth = 1
    quote: str | None = None
    i = start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    end = text.rfind(")", start)
    return text[start:end] if end >= 0 else text[start:]


def _unquote(value: str) -> str:
    value = value.strip()
    for q in ('"""', "'''", '"', "'"):
        if len(value) >= 2 * len(q) and value.startswith(q) and value.endswith(q):
            return value[len(q) : -len(q)].strip()
    return value


def find_final(prose: str) -> FinalMarker | None:
    """The first ``FINAL(...)``/``FINAL_VAR(...)`` marker in ``prose``.

    At the start of a line, matching is case-insensitive (small models write ``Final(``)
    and tolerates markdown decoration (``**FINAL(...)**``, ``> FINAL(...)``); inside a line
    only the upper-case markers count (``Best guess: FINAL(42)``).
    """
    m = _MARKER_RE.search(prose) or _INLINE_MARKER_RE.search(prose)
    if not m:
        return None
    kind = m.group("name").upper()
    value = _unquote(_balanced_argument(prose, m.end()))
    if kind == "FINAL_VAR":
        value = value.strip().strip("`")
    return FinalMarker(kind, value)


def parse_reply(text: str) -> ParsedReply:
    """Split a root LM reply into code blocks, prose and a final marker.

    Args:
        text: the assistant message content.

    Returns:
        :class:`ParsedReply`. Fences in other languages (``text``, ``json``, ``bash``) stay in
        the prose and are not run.
    """
    blocks: list[str] = []
    prose_parts: list[str] = []
    pos = 0
    for m in _FENCE_RE.finditer(text):
        lang = m.group("lang").lower()
        if lang not in FENCE_LANGS:
            continue
        prose_parts.append(text[pos : m.start()])
        pos = m.end()
        body = textwrap.dedent(m.group("body"))
        if body.strip():
            blocks.append(body.rstrip() + "\n")
    prose_parts.append(text[pos:])
    prose = "".join(prose_parts).strip()
    return ParsedReply(blocks, prose, find_final(prose))
