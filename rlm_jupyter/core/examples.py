"""Worked examples by task shape for the small-model prompt, and the helper documentation of
both prompt styles (issue 15).

A small root model (the embedded 1.5B) copies the strategy of the one worked example it is
shown: with a look-up example it regex-counts words on a counting task. So the example is
chosen by the shape of the query, by rules (:func:`task_shape`, checked in this order):

* ``pairs``: the query asks for pairs (``pair``/``pairs`` with ``user``, ``id`` or ``both``);
* ``count``: a counting/aggregation word (how many, count, number of, most/least/more/less
  common, frequency, how often) together with a word about records or labels (label, classify,
  category, data points, records, lines, instances, entries, items, each, every, all);
* ``multihop``: ``whose``; ``of the <word> who/that/which``; ``who/which/that wrote/made/...``;
  ``author/founder/capital/... of`` (find X, then search for what X led to);
* ``lookup``: anything else (the example that solved 5 of 5 needle tasks).

Each example is a different task of the same shape (reviews, a book catalogue), as prior chat
turns with REPL output labelled ``<line N>``, so nothing in it can be copied into an answer.
"""

from __future__ import annotations

import re

SHAPES = ("lookup", "count", "pairs", "multihop")

_PAIRS = re.compile(r"\bpairs?\b", re.I)
_PAIRS_WITH = re.compile(r"\b(?:users?|ids?|both)\b", re.I)
_COUNT = re.compile(
    r"\b(?:how many|count|number of|most common|least common|more common|less common|frequen\w*|how often)\b", re.I
)
_COUNT_WITH = re.compile(
    r"\b(?:label\w*|classif\w*|categor\w*|data points?|records?|lines?|instances?|entries|entry|items?|each|every|all)\b",
    re.I,
)
_MULTIHOP = re.compile(
    r"\bwhose\b|\bof the \w+ (?:who|that|which)\b|\b(?:who|which|that) (?:wrote|made|built|founded|owns|invented|directed)\b"
    r"|\b(?:author|writer|owner|founder|creator|director|inventor|mother|father|wife|husband|employer|capital) of\b",
    re.I,
)


def task_shape(query: str) -> str:
    """``"pairs"``, ``"count"``, ``"multihop"`` or ``"lookup"`` for ``query`` (see the module
    docstring for the rules)."""
    q = query or ""
    if _PAIRS.search(q) and _PAIRS_WITH.search(q):
        return "pairs"
    if _COUNT.search(q) and _COUNT_WITH.search(q):
        return "count"
    if _MULTIHOP.search(q):
        return "multihop"
    return "lookup"


# -- what each reply should be (SMALL_SYSTEM's first option) and the turn lines -------------------
SMALL_STEP = {
    "lookup": "searches `context` for the exact words of the question and prints the lines it finds",
    "multihop": "searches `context` for the exact words of the question, then for what it found, and prints the lines",
    "count": "labels EVERY record the question is about with llm_classify and counts the labels and computes the answer in code (look at a few lines first)",
    "pairs": "labels EVERY record with llm_classify once, then builds the pairs in code (look at a few lines first)",
}

FIRST_TURN = {
    "lookup": "search `context` for the question's exact words.",
    "multihop": "search `context` for the question's exact words.",
    "count": "look at a few lines of `context` to see how a record is written.",
    "pairs": "look at a few lines of `context` to see how a record is written.",
}

# Shapes whose answer is derived from computed figures (a count, the least common label, a
# comparison): the turn message repeats the question, which a small model otherwise loses
# sight of (seen: "entity", the most common label, answered to "which is the least common").
RESTATE = frozenset({"count", "pairs"})

NEXT_TURN = {
    "lookup": "answer with FINAL(answer) if the output answers the question, else search again.",
    "multihop": "answer with FINAL(answer) if the output answers the question, else search for what you found.",
    "count": "if the output answers the question, answer with FINAL(answer) in the form the question asks for; else label every record with llm_classify, then count and compute the answer in code.",
    "pairs": "answer with FINAL_VAR(variable) if a variable holds the pairs, else label every record with llm_classify and build the pairs in code.",
}

# -- helper documentation ------------------------------------------------------------------------
SMALL_HELPERS = """\
Helpers in the REPL (a block's last line is shown, as in Jupyter):
- grep(pattern, window=0): numbered lines of `context` matching pattern (case-insensitive regex).
- search(words, k=5): the k lines of `context` that best match the words (BM25).
- chunks(text, size): text cut into pieces of about size characters, at line ends.
{subcall_helpers}Never give a variable a helper's name."""

SMALL_SUBCALL_HELPERS = """\
- llm_classify(texts, labels, instruction): one label (from the list labels) for each text, \
from a helper model that sees only one text and the instruction: put the question's sentences \
that say what the labels are in the instruction (not the question itself: a label it names \
would bias every answer). Count them in code with collections.Counter.
- llm_map(texts, instruction): the helper model's answer for each text.
- llm_query(prompt): ask the helper model about a text you put in the prompt.
- summarize(text, focus): a summary of a long text, made chunk by chunk.
"""

STANDARD_HELPERS = """\
- Task helpers: `grep(pattern, context=None, window=0)`: lines matching a regex \
(case-insensitive), numbered `<line N>`, with `window` lines around each; \
`search(query, k=5, items=None)`: the k lines (or `items`, e.g. chunks) ranked by BM25; \
`chunks(text, size=4000, overlap=0)`: pieces cut at line ends.
"""

STANDARD_SUBCALL_HELPERS = """\
- Sub-call helpers (concurrent, through `llm_query_batched`): `llm_map(items, instruction, \
labels=None, batch=1)`: one sub-call per item (or per `batch` items); with `labels` (list of str) \
every answer is exactly one label; `llm_classify(items, labels, instruction)`; \
`llm_reduce(parts, question)`: answer per part, then combine; `summarize(text, focus="")`. For a \
question over every record (counting, aggregation, pairs), label each record with \
`llm_classify` and aggregate in code rather than guessing labels from keywords; a sub-LM sees \
only its item and the instruction, so put what the labels mean in the instruction.
"""


def helpers_doc(style: str, subcalls: bool) -> str:
    """The helper lines of the system prompt for ``style`` (``"small"``/``"standard"``)."""
    if style == "small":
        return SMALL_HELPERS.format(subcall_helpers=SMALL_SUBCALL_HELPERS if subcalls else "")
    return STANDARD_HELPERS + (STANDARD_SUBCALL_HELPERS if subcalls else "")


# -- the worked examples (prior chat turns) ------------------------------------------------------
def turn_text(shape: str, iteration: int, max_iterations: int, question: str) -> str:
    """The small style's "Turn i/N" line for ``shape``; for :data:`RESTATE` shapes after the
    first turn it starts with the question again."""
    if iteration == 1:
        return f"Turn 1/{max_iterations}: {FIRST_TURN[shape]}"
    again = f"The question was: {question}\n" if shape in RESTATE and question else ""
    return f"{again}Turn {iteration}/{max_iterations}: {NEXT_TURN[shape]}"


def _turns(question: str, shape: str, steps: list[tuple[str, str]], final: str) -> list[dict]:
    msgs = [{"role": "user", "content": f"Question: {question}\n{turn_text(shape, 1, 8, question)}"}]
    for i, (code, output) in enumerate(steps, 2):
        msgs.append({"role": "assistant", "content": f"```repl\n{code}\n```"})
        msgs.append({"role": "user", "content": f"REPL output:\n```\n{output}\n```\n{turn_text(shape, i, 8, question)}"})
    msgs.append({"role": "assistant", "content": final})
    return msgs


_PEEK = (
    "lines = context.splitlines()\nprint(len(lines))\nfor line in lines[:3]:\n    print(line)",
    "412\nDate: Mar 3, 2021 || User: 55120 || Review: The battery died after two days.\n"
    "Date: Jan 9, 2021 || User: 71342 || Review: Great sound, fair price.\n"
    "Date: May 30, 2021 || User: 55120 || Review: Nice screen but the case cracked.",
)
_REVIEWS = (
    "Each line holds one review that can be labelled as one of: positive, negative, mixed and unclear. "
    "Infer the label from the text."
)

# -- the counting example, in the variant the question's aggregate asks for ----------------------
_COMPARE = re.compile(r"\bsame (?:frequency|number|count)\b|\bmore (?:common|frequent)\b.*\bless (?:common|frequent)\b", re.I)
_MOST = re.compile(r"\bmost (?:common|frequent)\b", re.I)
_LEAST = re.compile(r"\bleast (?:common|frequent)\b", re.I)
_FILTER = re.compile(r"\b(?:from|by|of|for) (?:the )?user\b", re.I)
_NAMES_LABELS = re.compile(r"\blabel\w*|\bclassif\w*|\bcategor\w*|\bclass(?:es)?\b|\bone of\b", re.I)


def count_kind(query: str) -> str:
    """Which aggregate a counting query asks for, by rules checked in this order:
    ``"compare"`` (more/less common ... or the same frequency), ``"most"`` / ``"least"`` (the
    most/least common label), ``"filter"`` (a count over one user's records), else ``"count"``
    (how many records have a label), or ``"yesno"`` when the query names no labels at all ("how
    many of the questions ask about a location?": every record gets a yes or a no). Seen without
    these variants: the small root answered "which is the most common" with a count, "same
    frequency as" for 10 vs 7, counted every user's records for a per-user question, and, given
    no labels, copied the example's labels."""
    q = query or ""
    for kind, rule in (("compare", _COMPARE), ("most", _MOST), ("least", _LEAST), ("filter", _FILTER)):
        if rule.search(q):
            return kind
    return "count" if _NAMES_LABELS.search(q) else "yesno"


_TEXTS = "texts = [line.split('Review: ', 1)[-1] for line in lines]\n"
_LABELS = "labels = ['positive', 'negative', 'mixed and unclear']  # exactly as the question lists them\n"
_CLASSIFY = (
    _LABELS
    + f"about = {_REVIEWS!r}  # the question's sentences that say what the labels are\n"
    "found = llm_classify(texts, labels, about + ' Which label fits this review?')\n"
    "counts = Counter(found)\n"
)
_COUNTS = "[('positive', 187), ('negative', 151), ('mixed and unclear', 74)]"
_COMPARE_ANSWERS = "'more common than', 'less common than', 'same frequency as'"
# kind -> (question, the second turn's code after its Counter import, its output, the final reply)
_COUNT_VARIANTS = {
    "count": (
        f"How many reviews in the data should be labelled 'negative'? {_REVIEWS} Give your final answer as a number.",
        _TEXTS + _CLASSIFY + "print(counts.most_common())\n"
        "answer = counts['negative']  # what the question asks: how many are 'negative'\nprint('answer:', answer)",
        f"{_COUNTS}\nanswer: 151",
        "FINAL(151)",
    ),
    "most": (
        f"Which label is the most common among the reviews? {_REVIEWS} Give your final answer as the label only.",
        _TEXTS + _CLASSIFY + "print(counts.most_common())\n"
        "answer = max(labels, key=lambda label: counts[label])  # what the question asks: the most common label\n"
        "print('answer:', answer)",
        f"{_COUNTS}\nanswer: positive",
        "FINAL(positive)",
    ),
    "least": (
        f"Which label is the least common among the reviews? {_REVIEWS} Give your final answer as the label only.",
        _TEXTS + _CLASSIFY + "print(counts.most_common())\n"
        "answer = min(labels, key=lambda label: counts[label])  # what the question asks: the least common label\n"
        "print('answer:', answer)",
        f"{_COUNTS}\nanswer: mixed and unclear",
        "FINAL(mixed and unclear)",
    ),
    "compare": (
        "Is label 'negative' more common, less common, or the same frequency as label 'positive'? "
        f"{_REVIEWS} Give your final answer as exactly one of: {_COMPARE_ANSWERS}.",
        _TEXTS + _CLASSIFY + "print(counts.most_common())\n"
        "a, b = counts['negative'], counts['positive']  # the label the question asks about, then the one it compares with\n"
        "answer = 'more common than' if a > b else 'less common than' if a < b else 'same frequency as'\n"
        "print(a, b, 'answer:', answer)",
        f"{_COUNTS}\n151 187 answer: less common than",
        "FINAL(less common than)",
    ),
    "filter": (
        f"How many reviews by user 55120 should be labelled 'negative'? {_REVIEWS} Give your final answer as a number.",
        "mine = [line for line in lines if 'User: 55120 ' in line]  # only the records the question is about\n"
        "texts = [line.split('Review: ', 1)[-1] for line in mine]\n" + _CLASSIFY
        + "print(len(mine), 'records;', counts.most_common())\n"
        "answer = counts['negative']  # what the question asks: how many of them are 'negative'\nprint('answer:', answer)",
        "17 records; [('negative', 9), ('positive', 6), ('mixed and unclear', 2)]\nanswer: 9",
        "FINAL(9)",
    ),
    "yesno": (
        "How many of the reviews complain about the battery (its life, charging or heat)? Give your final answer as a number.",
        _TEXTS + "labels = ['yes', 'no']  # the question names no labels: each review gets a yes or a no\n"
        "about = 'Does this review complain about the battery (its life, charging or heat)?'  # the question's own words, asked of one review\n"
        "found = llm_classify(texts, labels, about)\n"
        "counts = Counter(found)\nprint(counts.most_common())\n"
        "answer = counts['yes']  # what the question asks: how many get a yes\nprint('answer:', answer)",
        "[('no', 371), ('yes', 41)]\nanswer: 41",
        "FINAL(41)",
    ),
}


def count_example(kind: str) -> list[dict]:
    """The counting worked example (prior chat turns) for :func:`count_kind` ``kind``."""
    question, code, output, final = _COUNT_VARIANTS[kind]
    return _turns(question, "count", [_PEEK, ("from collections import Counter\n" + code, output)], final)


# -- the pairs example: one condition both users meet, or one for each user of a pair -----------
_ONE_OTHER = re.compile(r"\bone (?:user|id|of them)\b.*\bthe other\b", re.I | re.S)


def pairs_kind(query: str) -> str:
    """``"one_other"`` when a pairs query sets one condition for one user and another for the
    other ("one user has ..., and the other user has ..."), else ``"both"``. Seen with only the
    symmetric example: the small root required both conditions of every user (0 pairs)."""
    return "one_other" if _ONE_OTHER.search(query or "") else "both"


_PAIRS_TAIL = (
    "Give each pair as (id1, id2) on its own line, each pair once, lower ID first. " + _REVIEWS
)
_LABELS_OF = (
    "import re\nfrom collections import defaultdict\n"
    + _TEXTS
    + _LABELS
    + "about = 'Each text is one record; its label is one of: ' + ', '.join(labels) + '.'\n"
    "found = llm_classify(texts, labels, about + ' Which label fits this text?')\n"
    "labels_of = defaultdict(list)  # user -> the labels of their records\nfor line, label in zip(lines, found):\n"
    "    labels_of[re.search(r'User: (\\d+)', line).group(1)].append(label)\n"
)
_RESULT = "result = '\\n'.join(f'({a}, {b})' for a, b in pairs)\n"
# kind -> (question, code after the peek, its output)
_PAIRS_VARIANTS = {
    "both": (
        "List all pairs of user IDs where both users wrote at least one review labelled 'negative' or "
        f"'mixed and unclear'. {_PAIRS_TAIL}",
        _LABELS_OF
        + "good = sorted((u for u, got in labels_of.items() if got.count('negative') >= 1 or got.count('mixed and unclear') >= 1), key=int)\n"
        "pairs = [(a, b) for i, a in enumerate(good) for b in good[i + 1:]]\n" + _RESULT
        + "print(len(good), 'users,', len(pairs), 'pairs')\nprint(result[:200])",
        "23 users, 253 pairs\n(10392, 11873)\n(10392, 15530)\n(10392, 20417)",
    ),
    "one_other": (
        "List all pairs of user IDs such that one user wrote at least two reviews labelled 'negative', and the "
        f"other user wrote exactly one review labelled 'positive'. {_PAIRS_TAIL}",
        _LABELS_OF
        + "first = [u for u, got in labels_of.items() if got.count('negative') >= 2]  # what one user must have\n"
        "second = [u for u, got in labels_of.items() if got.count('positive') == 1]  # what the other user must have\n"
        "pairs = sorted({tuple(sorted((a, b), key=int)) for a in first for b in second if a != b})\n" + _RESULT
        + "print(len(first), 'and', len(second), 'users,', len(pairs), 'pairs')\nprint(result[:200])",
        "6 and 9 users, 51 pairs\n(10392, 15530)\n(10392, 31870)\n(11873, 20417)",
    ),
}


def pairs_example(kind: str) -> list[dict]:
    """The pairs worked example (prior chat turns) for :func:`pairs_kind` ``kind``."""
    question, code, output = _PAIRS_VARIANTS[kind]
    return _turns(question, "pairs", [_PEEK, (code, output)], "FINAL_VAR(result)")


MULTIHOP_EXAMPLE = _turns(
    "In which town was the author of the novel 'The Glass Orchard' born?",
    "multihop",
    [
        (
            "grep('Glass Orchard')",
            "<line 3310> 'The Glass Orchard' was written by Mira Okonjo in 1987.\n"
            "<line 9021> He never finished reading The Glass Orchard.",
        ),
        (
            "grep('Mira Okonjo')",
            "<line 3310> 'The Glass Orchard' was written by Mira Okonjo in 1987.\n"
            "<line 5127> Mira Okonjo was born in Kisumu and moved to Lagos at ten.",
        ),
    ],
    "FINAL(Kisumu)",
)


def example_for(shape: str, lookup: list[dict], query: str = "") -> list[dict]:
    """The worked example for ``shape`` (counting and pairs: in the :func:`count_kind` /
    :func:`pairs_kind` variant of ``query``); ``lookup`` is the look-up example (prompts.py's)."""
    if shape == "count":
        return count_example(count_kind(query))
    if shape == "pairs":
        return pairs_example(pairs_kind(query))
    return MULTIHOP_EXAMPLE if shape == "multihop" else lookup
