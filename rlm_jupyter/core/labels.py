"""Label-constrained sub-calls (``llm_map(..., labels=[...])``, ``llm_classify``).

A sub-call given a label set must answer with exactly one of the labels. The embedded model
(llama.cpp) is held to it by a grammar (:func:`gbnf`); any other model's free text is mapped by
the strict parser :func:`match_label`. Both run in the parent process; the kernel only sends
the labels with its ``llm_query_batched`` request (see ``environment/kernel_side``).
"""

from __future__ import annotations

import re

MAX_LABELS = 64
MAX_LABEL_CHARS = 200
UNLABELLED = "[unlabelled] "
# providers whose models take a llama.cpp grammar as ``rlm_labels`` (the embedded model)
GRAMMAR_PROVIDERS = ("local/",)


def check_labels(labels) -> list[str]:
    """The label set as a list of str.

    Raises:
        ValueError: not a list/tuple of 1..64 distinct (case-insensitive), non-empty strings of
            at most 200 characters.
    """
    if not isinstance(labels, (list, tuple)) or not labels:
        raise ValueError("labels must be a non-empty list of strings")
    out = []
    for lab in labels:
        if not isinstance(lab, str) or not lab.strip():
            raise ValueError(f"each label must be a non-empty string, not {lab!r:.60}")
        if len(lab) > MAX_LABEL_CHARS:
            raise ValueError(f"a label has {len(lab):,} characters; at most {MAX_LABEL_CHARS}")
        out.append(lab.strip())
    if len(out) > MAX_LABELS:
        raise ValueError(f"{len(out)} labels given; at most {MAX_LABELS}")
    if len({x.casefold() for x in out}) != len(out):
        raise ValueError("labels must be distinct (case-insensitive)")
    return out


def match_label(answer: str, labels: list[str]) -> str:
    """Map a sub-model's ``answer`` (str) to one of ``labels``.

    The answer, stripped of quotes, brackets and a trailing full stop, equal to a label
    (case-insensitive) gives that label; else the label mentioned first in the answer (a whole
    word or phrase, case-insensitive; the longest one at the same position); else
    ``"[unlabelled] <answer>"``.
    """
    text = (answer or "").strip()
    bare = text.strip(" \t\n\"'`*[](){}<>").rstrip(".").strip().casefold()
    for lab in labels:
        if bare == lab.casefold():
            return lab
    best = None
    for lab in labels:
        m = re.search(r"(?<!\w)" + re.escape(lab.casefold()) + r"(?!\w)", text.casefold())
        if m and (best is None or (m.start(), -len(lab)) < (best[0], -len(best[1]))):
            best = (m.start(), lab)
    if best is not None:
        return best[1]
    return UNLABELLED + text


def gbnf(labels: list[str]) -> str:
    """A llama.cpp (GBNF) grammar whose only sentences are the labels."""

    def lit(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'

    return "root ::= " + " | ".join(lit(lab) for lab in labels) + "\n"


def lm_kwargs(model: str, labels: list[str] | None) -> dict:
    """Extra LM-call arguments that constrain ``model`` to ``labels``: ``{"rlm_labels": labels}``
    for the embedded model (a grammar), ``{}`` for others (their answers are parsed)."""
    if labels and model.startswith(GRAMMAR_PROVIDERS):
        return {"rlm_labels": list(labels)}
    return {}
