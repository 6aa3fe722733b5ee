"""Read-only access to the shared evaluation data (``../shared/data``; never copied into the
repo) and to the Python standard library sources used as a code haystack."""

from __future__ import annotations

import functools
import json
import os
import pathlib
import sysconfig

from ..common import DATA_DIR, encoding

BOOKS = [
    "pg2600_war_and_peace.txt",
    "pg2701_moby_dick.txt",
    "pg1342_pride_and_prejudice.txt",
    "pg1661_sherlock_holmes.txt",
    "tinyshakespeare.txt",
]
STDLIB_SKIP = {"test", "tests", "idlelib", "lib2to3", "site-packages", "__pycache__", "turtledemo"}


def _clean(text: str) -> str:
    return text.lstrip("\ufeff").replace("\r\n", "\n")


@functools.lru_cache(maxsize=4)
def books_text(min_chars: int) -> str:
    """The five books of ``shared/data/books`` joined (BOM and CRLF removed), stopping once at
    least ``min_chars`` characters are collected; beyond their ~7M characters the books repeat
    (a haystack of 10M+ characters for S-NIAH; the needle stays unique)."""
    parts, total = [], 0
    books = [_clean((DATA_DIR / "books" / name).read_text(encoding="utf-8")) for name in BOOKS]
    while total < min_chars:
        for t in books:
            parts.append(t)
            total += len(t)
            if total >= min_chars:
                break
    return "\n\n".join(parts)


@functools.lru_cache(maxsize=4)
def stdlib_text(min_chars: int) -> str:
    """Python standard-library sources (sorted paths, without tests, idlelib, lib2to3), each
    preceded by a ``# file: <path>`` line, stopping once ``min_chars`` characters are collected."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in STDLIB_SKIP)
        for fn in sorted(filenames):
            if not fn.endswith(".py"):
                continue
            p = pathlib.Path(dirpath) / fn
            try:
                t = p.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            parts.append(f"# file: {p.relative_to(root)}\n{t}")
            total += len(parts[-1])
            if total >= min_chars:
                return "\n".join(parts)
    return "\n".join(parts)


@functools.lru_cache(maxsize=4)
def tokens_of(kind: str, min_chars: int) -> tuple[str, list[int]]:
    """``(text, cl100k tokens)`` of the haystack corpus ``kind`` (``books`` or ``code``)."""
    text = books_text(min_chars) if kind == "books" else stdlib_text(min_chars)
    return text, encoding().encode(text, disallowed_special=())


@functools.lru_cache(maxsize=1)
def trec_questions() -> list[tuple[str, str]]:
    """``(coarse label name, question)`` for the 5,452 TREC training questions (file is
    Latin-1). Label names are OOLONG's (``trec_coarse_to_label`` of the tasks file)."""
    to_label = pairs_tasks_file()["trec_coarse_to_label"]
    out = []
    with open(DATA_DIR / "trec" / "TREC.train.label", encoding="latin-1") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            tag, question = line.split(" ", 1)
            out.append((to_label[tag.split(":", 1)[0]], question))
    return out


@functools.lru_cache(maxsize=1)
def pairs_tasks_file() -> dict:
    """The parsed ``shared/data/oolong_pairs/oolong_pairs_tasks.json`` (20 queries, predicates)."""
    return json.loads((DATA_DIR / "oolong_pairs" / "oolong_pairs_tasks.json").read_text())
