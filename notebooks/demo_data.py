"""Texts for the teaching notebooks, built from what every Python installation has.

Nothing here downloads anything unless asked (:func:`gutenberg_book`), so the notebooks and
``scripts/record_demos.py`` (which imports this file) run offline and on Binder alike.

- :func:`python_docs` — the Python language reference topics that ship with Python
  (``pydoc_data.topics``, about 750,000 characters), one titled section per topic.
- :func:`labelled_questions` — OOLONG-style records: short questions, one per line, each of
  one of six TREC coarse classes (the class is NOT in the text), made from small word lists
  with a fixed seed; returns the lines and the true count of every class.
- :func:`gutenberg_book` — a public-domain book from Project Gutenberg, cached on disk, with
  an offline fallback (the standard library's own sources).
"""

from __future__ import annotations

import collections
import pathlib
import random
import urllib.request


def python_docs() -> str:
    """The ``pydoc_data.topics`` texts as one string: ``TITLE\\n=====\\ntext`` per topic (characters)."""
    from pydoc_data.topics import topics

    return "\n\n".join(f"{key}\n{'=' * len(key)}\n{text.strip()}" for key, text in topics.items())


# -- OOLONG-style records -----------------------------------------------------------------------
CLASSES = ("abbreviation", "entity", "description", "human", "location", "numeric")

_WORDS = {
    "abbreviation": [
        "What does {a} stand for?", "What is the full form of {a}?", "{a} is an abbreviation for what?",
    ],
    "entity": [
        "What breed of dog is {dog}?", "Which instrument did {musician} play?", "What kind of animal is a {animal}?",
    ],
    "description": [
        "Why is the sky blue at {time}?", "How does a {machine} work?", "What is the meaning of the word {word}?",
    ],
    "human": [
        "Who invented the {machine}?", "Who wrote {book}?", "Who was the first person to climb {mountain}?",
    ],
    "location": [
        "Where is {mountain}?", "In which country is the city of {city}?", "Where does the river {river} begin?",
    ],
    "numeric": [
        "How tall is {mountain}?", "How many people live in {city}?", "In what year was {book} published?",
    ],
}
_FILL = {
    "a": ["NASA", "UNESCO", "CPU", "DNA", "HTML", "NATO", "RAM", "GPS"],
    "dog": ["Lassie", "a beagle", "Rin Tin Tin", "a corgi"],
    "musician": ["Miles Davis", "Jimi Hendrix", "Yo-Yo Ma", "Clara Schumann"],
    "animal": ["platypus", "axolotl", "narwhal", "pangolin"],
    "time": ["noon", "midday", "summer"],
    "machine": ["telephone", "steam engine", "printing press", "bicycle", "microwave oven"],
    "word": ["serendipity", "ephemeral", "quixotic", "sonder"],
    "book": ["Moby-Dick", "War and Peace", "Don Quixote", "Middlemarch", "The Odyssey"],
    "mountain": ["Mount Kilimanjaro", "K2", "Mont Blanc", "Aconcagua", "Denali"],
    "city": ["Lyon", "Osaka", "Valparaiso", "Tampere", "Kumasi", "Porto"],
    "river": ["Danube", "Mekong", "Loire", "Orinoco", "Volga"],
}


def question_labels(n: int = 40, seed: int = 0) -> list[tuple[str, str]]:
    """``(record line, its class)`` for the ``n`` records of :func:`labelled_questions`."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.choice(CLASSES)
        template = rng.choice(_WORDS[label])
        fields = {k: rng.choice(v) for k, v in _FILL.items()}
        question = template.format(**fields)
        date = f"2023-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        out.append((f"Date: {date} || User: {rng.randint(1000, 9999)} || Instance: {question}", label))
    return out


def labelled_questions(n: int = 40, seed: int = 0) -> tuple[str, dict[str, int]]:
    """``n`` records ``Date: ... || User: ... || Instance: <question>`` (one per line) and the
    true number of questions of each class in :data:`CLASSES` (the labels are not in the text).

    The same ``n`` and ``seed`` always give the same text.
    """
    rows = question_labels(n, seed)
    counts = collections.Counter(label for _, label in rows)
    return "\n".join(line for line, _ in rows), {c: counts[c] for c in CLASSES}


# -- a real book -------------------------------------------------------------------------------------
def _fallback_text(limit: int = 400_000) -> tuple[str, str]:
    """The standard library's own sources (always on disk), up to ``limit`` characters."""
    import json as some_module

    lib = pathlib.Path(some_module.__file__).resolve().parents[1]
    parts, total = [], 0
    for path in sorted(lib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(f"# ===== {path.name} =====\n{text}")
        total += len(text)
        if total > limit:
            break
    return "\n".join(parts)[:limit], f"the standard library sources in {lib} (offline fallback)"


def gutenberg_book(book_id: int = 2701, timeout: float = 10.0) -> tuple[str, str]:
    """``(text, where it came from)``: Project Gutenberg book ``book_id`` (default 2701, Moby-Dick),
    downloaded once into ``~/.cache/rlm_jupyter/gutenberg/``; with no internet, the standard
    library's sources instead (the second item says which)."""
    cache = pathlib.Path.home() / ".cache" / "rlm_jupyter" / "gutenberg" / f"{book_id}.txt"
    if cache.exists():
        return cache.read_text(encoding="utf-8"), f"Project Gutenberg #{book_id} (cached in {cache})"
    url = f"https://www.gutenberg.org/cache/epub/{book_id}/pg{book_id}.txt"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode("utf-8", errors="replace")
    except Exception as exc:  # offline (CI, air-gapped machines): fall back, say so
        text, where = _fallback_text()
        return text, f"{where}; Gutenberg was unreachable: {type(exc).__name__}"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(text, encoding="utf-8")
    return text, f"Project Gutenberg #{book_id} (downloaded from {url})"


# -- showing a run ---------------------------------------------------------------------------------
def print_steps(result, chars: int = 600, max_subcalls: int = 10) -> None:
    """Print each root iteration of ``result`` (an ``RLMResult``): the model's prose, its code,
    the start of what the code printed (at most ``chars`` characters of each), and the end of
    the prompt and the answer of its first ``max_subcalls`` sub-calls."""

    def cut(s: str) -> str:
        s = s.strip()
        return s if len(s) <= chars else s[:chars] + f" … [{len(s) - chars:,} more characters]"

    for it in result.trajectory.iterations:
        print(f"━━ iteration {it.index} ━━ root LM: {it.usage.input_tokens:,} tokens in, {it.usage.output_tokens:,} out")
        if not it.cells:
            print("  reply: " + cut(it.reply))
        elif it.prose.strip():
            print(cut(it.prose))
        for cell in it.cells:
            print("  code:\n    " + cut(cell.code).replace("\n", "\n    "))
            print("  printed:\n    " + (cut(cell.text).replace("\n", "\n    ") or "(nothing)"))
        for k, sc in enumerate(it.subcalls):
            if k == max_subcalls:
                print(f"  … {len(it.subcalls) - k} more sub-calls")
                break
            prompt = sc.prompt.strip().replace("\n", " ")
            print(f"  sub-call {sc.node_id}: '…{prompt[-60:]}' → {(sc.answer or sc.error or '').strip()[:60]!r}")
