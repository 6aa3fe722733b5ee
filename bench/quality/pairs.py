"""OOLONG-Pairs: the paper's 20 pair queries (shared/data/oolong_pairs, Appendix D.1) over an
OOLONG-style window, with exact gold sets from the machine-readable predicates (the project's
reading, see ``semantics_notes`` in the tasks file). Windows whose gold set is empty are
resampled. Score: F1 over the set of pairs (paper)."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import re
from collections import Counter, defaultdict

from ..common import count_tokens
from . import oolong
from .data import pairs_tasks_file
from .tasks import Task

MAX_RESAMPLES = 40


def task_spec(task_id: int) -> dict:
    return next(t for t in pairs_tasks_file()["tasks"] if t["task_id"] == task_id)


def _user_ok_symmetric(recs: list[dict], pred: dict) -> bool:
    if not any(r["label"] in pred["each_user_has_any_of"] for r in recs):
        return False
    dc = pred.get("date_constraint")
    if dc:
        limit = dt.date.fromisoformat(dc["date"])
        for r in recs:
            if r["label"] == dc["label"]:
                if dc["relation"] == "after" and not r["date"] > limit:
                    return False
                if dc["relation"] == "before" and not r["date"] < limit:
                    return False
    return True


def _meets(counts: Counter, conds: list[dict]) -> bool:
    for c in conds:
        n = counts.get(c["label"], 0)
        if c["op"] == ">=" and not n >= c["n"]:
            return False
        if c["op"] == "==" and not n == c["n"]:
            return False
    return True


def gold_pairs(records: list[dict], pred: dict) -> set[tuple[int, int]]:
    """The set of ``(lower id, higher id)`` pairs satisfying the predicate."""
    by_user: dict[int, list[dict]] = defaultdict(list)
    for r in records:
        by_user[r["user"]].append(r)
    users = sorted(by_user)
    out = set()
    if pred["kind"] == "symmetric":
        ok = [u for u in users if _user_ok_symmetric(by_user[u], pred)]
        return set(itertools.combinations(ok, 2))
    counts = {u: Counter(r["label"] for r in by_user[u]) for u in users}
    one = {u for u in users if _meets(counts[u], pred["one_user"])}
    other = {u for u in users if _meets(counts[u], pred["other_user"])}
    for a, b in itertools.combinations(users, 2):
        if (a in one and b in other) or (b in one and a in other):
            out.add((a, b))
    return out


def make(seed: int, length: int, task_id: int) -> Task:
    """OOLONG-Pairs task ``task_id`` (1-20) on a window of about ``length`` tokens; windows
    with an empty gold set are redrawn (``meta["resamples"]`` counts them).

    Raises:
        ValueError: no non-empty window in :data:`MAX_RESAMPLES` draws.
    """
    spec = task_spec(task_id)
    for attempt in range(MAX_RESAMPLES):
        rng = random.Random(f"pairs-{task_id}-{seed}-{length}-{attempt}")
        records = oolong.make_window(rng, length)
        gold = gold_pairs(records, spec["predicate"])
        if gold:
            context = oolong.render(records)
            return Task("pairs", length, seed, context, spec["query"], sorted(gold), count_tokens(context),
                        {"task_id": task_id, "resamples": attempt, "n_gold": len(gold),
                         "users": len({r['user'] for r in records}), "lines": len(records)})
    raise ValueError(f"OOLONG-Pairs task {task_id}: empty gold set in {MAX_RESAMPLES} windows of {length} tokens")


def parse_pairs(answer: str) -> set[tuple[int, int]]:
    """Pairs ``(a, b)`` found in the answer, normalised to (lower, higher), self-pairs dropped."""
    out = set()
    for a, b in re.findall(r"(\d{3,})\s*[,;]\s*(\d{3,})", answer or ""):
        a, b = int(a), int(b)
        if a != b:
            out.add((min(a, b), max(a, b)))
    return out


def score(answer: str | None, gold: list) -> float:
    """F1 between the pairs in ``answer`` and the gold pairs (1.0 when both are empty)."""
    g = {tuple(p) for p in gold}
    p = parse_pairs(answer or "")
    if not g and not p:
        return 1.0
    hit = len(g & p)
    if hit == 0:
        return 0.0
    prec, rec = hit / len(p), hit / len(g)
    return 2 * prec * rec / (prec + rec)
