"""S-NIAH, RULER-style single needle (RULER ``niah_single``; paper arXiv 2512.24601 §3).

A needle "One of the special magic numbers for <key> is: <7 digits>." is put at a random
line boundary of a haystack of real text (books, or Python standard-library sources), with
distractors a few lines around it: the same sentence for other keys, and plain sentences with
other 7-digit numbers. Score: fraction of gold strings present in the answer,
case-insensitive (RULER ``string_match_all``).
"""

from __future__ import annotations

import random

from ..common import count_tokens, encoding
from .data import tokens_of
from .tasks import Task

ADJ = ["amber", "brisk", "calm", "dusky", "eager", "fierce", "gilded", "humble", "icy", "jaunty", "keen", "lucid",
       "mellow", "nimble", "opal", "placid", "quiet", "rustic", "sable", "tawny", "umber", "vivid", "wistful", "zesty"]
NOUN = ["anchor", "beacon", "canyon", "dagger", "ember", "falcon", "glacier", "harbor", "island", "jasmine", "kettle",
        "lantern", "meadow", "nectar", "orchard", "pylon", "quartz", "ribbon", "saddle", "thistle", "urchin", "valley"]
NEEDLE = "One of the special magic numbers for {key} is: {value}."
PLAIN = [
    "The ledger for that winter recorded {value} bushels in the storehouse.",
    "Someone had scrawled the number {value} on the back of the envelope.",
    "The clerk stamped receipt number {value} and filed it away.",
]
QUERY = (
    "What is the special magic number for {key} mentioned in the provided text? "
    "Answer with the number only."
)


def _number(rng: random.Random) -> str:
    return str(rng.randrange(1_000_000, 10_000_000))


def make(seed: int, length: int, haystack: str = "books", n_key_distractors: int = 3, n_plain: int = 3) -> Task:
    """An S-NIAH task of about ``length`` cl100k tokens.

    Args:
        seed: fixes the haystack slice, key, value, needle depth and distractors.
        length: context length in tokens (the slice is cut at line boundaries).
        haystack: ``"books"`` (shared/data/books) or ``"code"`` (stdlib sources; the needle
            and distractors are then ``#`` comments).
        n_key_distractors / n_plain: distractor sentences within ±8 lines of the needle.
    """
    rng = random.Random(f"sniah-{haystack}-{seed}-{length}")
    text, toks = tokens_of(haystack, max(1_000_000, 6 * length))
    start = rng.randrange(0, max(1, len(toks) - length))
    chunk = encoding().decode(toks[start : start + length])
    lines = chunk.split("\n")[1:-1]  # drop partial first/last lines
    keys = rng.sample([f"{a}-{n}" for a in ADJ for n in NOUN], 1 + n_key_distractors)
    key, value = keys[0], _number(rng)
    comment = "# " if haystack == "code" else ""
    needle = comment + NEEDLE.format(key=key, value=value)
    distract = [comment + NEEDLE.format(key=k, value=_number(rng)) for k in keys[1:]]
    distract += [comment + rng.choice(PLAIN).format(value=_number(rng)) for _ in range(n_plain)]
    # make room: drop lines from the end so the total stays near `length`
    extra = count_tokens("\n".join([needle, *distract]))
    while lines and extra > 0:
        extra -= count_tokens(lines.pop()) + 1
    pos = rng.randrange(0, len(lines) + 1)
    lines.insert(pos, needle)
    for d in distract:
        off = rng.choice([o for o in range(-8, 9) if o != 0])
        lines.insert(min(max(0, pos + off), len(lines)), d)
    needle_line = lines.index(needle)
    context = "\n".join(lines)
    kind = "sniah" if haystack == "books" else "sniah_code"
    return Task(
        kind, length, seed, context, QUERY.format(key=key), [value], count_tokens(context),
        {"key": key, "depth": round(needle_line / max(1, len(lines)), 3), "haystack": haystack},
    )


def score(answer: str | None, gold: list[str]) -> float:
    """Fraction of ``gold`` strings present in ``answer``, case-insensitive (RULER)."""
    if not answer:
        return 0.0
    a = answer.lower()
    return sum(g.lower() in a for g in gold) / len(gold)
