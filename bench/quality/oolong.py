"""OOLONG-style tasks over TREC questions (after OOLONG-synth ``trec_coarse``, which the paper's
OOLONG and OOLONG-Pairs use). Output is OOLONG-*style*, not OOLONG: do not compare its numbers
with the paper's.

A window is lines ``Date: <Mon D, YYYY> || User: <5-digit id> || Instance: <TREC question>``
filling about 95% of the target length; 80% of lines belong to the 20% most active users. The
labels (the six TREC coarse classes) are never in the context. Questions need a label for every
line, then aggregation. Score (paper): numbers ``0.75 ** |gold - pred|``, else exact match.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections import Counter

from ..common import count_tokens
from .data import pairs_tasks_file, trec_questions
from .tasks import Task

START_DATE = dt.date(2022, 10, 1)
DAYS = 300  # dates fall between 2022-10-01 and 2023-07-27
LABELS_NOTE = (
    "Each instance is a question that can be labelled as one of: description and abstract concept, "
    "entity, human being, numeric value, location, abbreviation. The data does not give the labels; "
    "infer each label from the semantics of the question."
)
COMPARE_OPTIONS = ["more common than", "less common than", "same frequency as"]


def labels() -> list[str]:
    return list(pairs_tasks_file()["labels"])


def fmt_date(d: dt.date) -> str:
    """OOLONG's date format, e.g. ``Dec 12, 2022``."""
    return f"{d:%b} {d.day}, {d.year}"


def make_window(rng: random.Random, length: int) -> list[dict]:
    """Records ``{"date", "user", "label", "question"}`` whose rendered lines fill about 95% of
    ``length`` cl100k tokens."""
    pool = trec_questions()
    target = int(0.95 * length)
    est_lines = max(8, target // 27)
    n_users = max(5, est_lines // 8)
    users = rng.sample(range(10_000, 100_000), n_users)
    top = users[: max(1, n_users // 5)]
    rest = users[len(top):] or top
    records, total = [], 0
    for idx in rng.sample(range(len(pool)), len(pool)):
        label, question = pool[idx]
        rec = {
            "date": START_DATE + dt.timedelta(days=rng.randrange(DAYS)),
            "user": rng.choice(top) if rng.random() < 0.8 else rng.choice(rest),
            "label": label,
            "question": question,
        }
        n = count_tokens(render_line(rec)) + 1
        if total + n > target:
            break
        records.append(rec)
        total += n
    return records


def render_line(rec: dict) -> str:
    return f"Date: {fmt_date(rec['date'])} || User: {rec['user']} || Instance: {rec['question']}"


def render(records: list[dict]) -> str:
    return "\n".join(render_line(r) for r in records)


def _question(rng: random.Random, records: list[dict]) -> tuple[str, object, str] | None:
    counts = Counter(r["label"] for r in records)
    labs = labels()
    qtype = rng.choice(["count", "count", "most_common", "least_common", "user_count", "compare"])
    if qtype == "count":
        lab = rng.choice(labs)
        return qtype, counts.get(lab, 0), (
            f"How many data points should be classified as label '{lab}'? Give your final answer as a number.")
    if qtype in ("most_common", "least_common"):
        ranked = sorted(((counts.get(l, 0), l) for l in labs), reverse=qtype == "most_common")
        if ranked[0][0] == ranked[1][0]:
            return None  # no unique answer: draw another question
        word = "most" if qtype == "most_common" else "least"
        return qtype, ranked[0][1], (
            f"Which of the labels is the {word} common in the data? Give your final answer as the label only.")
    if qtype == "user_count":
        per_user = Counter(r["user"] for r in records)
        user = rng.choice([u for u, _ in per_user.most_common(5)])
        lab = rng.choice(labs)
        gold = sum(1 for r in records if r["user"] == user and r["label"] == lab)
        return qtype, gold, (
            f"How many data points from user {user} should be classified as label '{lab}'? "
            "Give your final answer as a number.")
    a, b = rng.sample(labs, 2)
    ca, cb = counts.get(a, 0), counts.get(b, 0)
    gold = COMPARE_OPTIONS[0] if ca > cb else COMPARE_OPTIONS[1] if ca < cb else COMPARE_OPTIONS[2]
    return qtype, gold, (
        f"Is label '{a}' more common, less common, or the same frequency as label '{b}'? "
        f"Give your final answer as exactly one of: {', '.join(repr(o) for o in COMPARE_OPTIONS)}.")


def make(seed: int, length: int) -> Task:
    """An OOLONG-style counting/aggregation task of about ``length`` tokens (exact gold)."""
    rng = random.Random(f"oolong-{seed}-{length}")
    records = make_window(rng, length)
    q = None
    while q is None:
        q = _question(rng, records)
    qtype, gold, text = q
    context = render(records)
    query = f"In the above data, {text[0].lower()}{text[1:]} {LABELS_NOTE}"
    return Task("oolong", length, seed, context, query, gold, count_tokens(context),
                {"qtype": qtype, "lines": len(records), "users": len({r['user'] for r in records})})


def parse_number(answer: str) -> int | None:
    """The answer's number: the one after the last ``Answer:``, else the last integer."""
    tail = answer.rsplit("Answer:", 1)[-1] if "Answer:" in answer else answer
    nums = re.findall(r"-?\d[\d,]*", tail)
    if not nums:
        return None
    try:
        return int(nums[-1].replace(",", ""))
    except ValueError:
        return None


def score(answer: str | None, gold: object) -> float:
    """Paper's OOLONG score: ``0.75 ** |gold - pred|`` for numeric gold, else exact match
    (case/punctuation-insensitive; an answer naming exactly one of the options counts as that
    option)."""
    if not answer:
        return 0.0
    if isinstance(gold, int):
        pred = parse_number(answer)
        return 0.0 if pred is None else 0.75 ** abs(gold - pred)
    options = COMPARE_OPTIONS if gold in COMPARE_OPTIONS else labels()
    a = " ".join(re.sub(r"[^a-z0-9 ]+", " ", answer.lower()).split())
    named = [o for o in options if o in a]
    if len(named) == 1:
        return float(named[0] == gold)
    return float(a == gold)
