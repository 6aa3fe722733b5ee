"""Task helpers bound in every REPL environment, beside ``llm_query`` & co. (runs INSIDE the
environment kernel; stdlib only, plus ``bm25s`` imported on the first :func:`search`).

They make the strategies that work one-liners a small root model can pick (issue 15; the
paper's strategies, arXiv 2512.24601 §4: grep to narrow, chunk + map with sub-calls, count in
code, verify):

* ``grep(pattern, context=None, window=0)``: numbered matching lines (``<line N> text``).
* ``search(query, k=5, items=None)``: the ``k`` lines (or items) most relevant to ``query``,
  ranked by BM25 (``bm25s``), numbered like ``grep``.
* ``chunks(text, size=4000, overlap=0)``: ``text`` cut at line ends into pieces.
* ``llm_map(items, instruction, labels=None, batch=1)``: one sub-call per item (or per batch of
  items), run concurrently through ``llm_query_batched``; with ``labels`` every answer is one of
  the labels (a grammar for the embedded model, a strict parser for others, in the parent).
* ``llm_classify(items, labels, instruction=...)``: ``llm_map`` with labels.
* ``llm_reduce(parts, question)``: answer ``question`` per part, then combine the partial
  answers; ``summarize(text, focus="")``: the same over ``chunks(text)``.

Results that are lists of lines come back as :class:`Lines`, a ``list`` whose ``repr`` shows
one line per row, so that a cell ending in ``grep(...)`` shows readable output.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any, Callable

CHUNK_CHARS = 4000
SHOW_ROWS = 60  # rows a Lines repr shows before "... N more"
SHOW_ROW_CHARS = 400
DEFAULT_CLASSIFY = "Which label fits this text best?"


def _match_label() -> Callable[[str, list], str]:
    """``core.labels.match_label``: imported from the package, or (a gateway kernel, which got
    the modules as source) the module ``rlm_jupyter_labels`` that SourceBootstrap sent."""
    try:
        from rlm_jupyter.core.labels import match_label
    except ImportError:
        import sys

        match_label = sys.modules["rlm_jupyter_labels"].match_label
    return match_label


class Lines(list):
    """A list of ``str`` rows whose ``repr``/``str`` is the rows, one per line (at most
    :data:`SHOW_ROWS`, each cut to :data:`SHOW_ROW_CHARS` characters, then a count of the rest)."""

    def __repr__(self) -> str:
        if not self:
            return "(no matches)"
        rows = [r if len(r) <= SHOW_ROW_CHARS else r[:SHOW_ROW_CHARS] + " …" for r in map(str, self[:SHOW_ROWS])]
        if len(self) > SHOW_ROWS:
            rows.append(f"... {len(self) - SHOW_ROWS:,} more (len {len(self):,}; index or slice the list to see them)")
        return "\n".join(rows)

    __str__ = __repr__

    def __getitem__(self, i):
        out = super().__getitem__(i)
        return Lines(out) if isinstance(i, slice) else out


def _items_of(value: Any) -> list[str]:
    """Rows of a context: the lines of a str/bytes, the items of a list/tuple, the
    ``key: value`` lines of a dict."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value.splitlines()
    if isinstance(value, dict):
        return [f"{k}: {v}" for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [v if isinstance(v, str) else str(v) for v in value]
    return str(value).splitlines()


def make_helpers(request: Callable[..., Any], namespace: Callable[[], dict]) -> dict:
    """The helpers, bound to the kernel's sub-call channel and namespace.

    Args:
        request: ``request(op, **payload)`` sends a sub-call request (``kernel_side._Channel``).
        namespace: returns the REPL's namespace (to read the current ``context``).

    Returns:
        ``{name: function}`` to merge into the kernel's helpers.
    """
    indexes: dict = {}

    def _context():
        ns = namespace()
        if "context" not in ns:
            raise NameError("no `context` in the REPL; pass the text explicitly")
        return ns["context"]

    def grep(pattern, context=None, window=0) -> Lines:
        """Lines of ``context`` (default: the REPL's ``context``; a str, or a list of rows)
        matching ``pattern`` (a regex, case-insensitive; taken literally if it is not a valid
        regex), as ``"<line N> text"`` with N the index in ``context.splitlines()``.
        ``window`` (int) adds that many lines before and after each match."""
        rows = _items_of(_context() if context is None else context)
        try:
            rx = re.compile(str(pattern), re.IGNORECASE)
        except re.error:
            rx = re.compile(re.escape(str(pattern)), re.IGNORECASE)
        window = max(0, int(window))
        hits = [i for i, line in enumerate(rows) if rx.search(line)]
        if window:
            keep = sorted({j for i in hits for j in range(max(0, i - window), min(len(rows), i + window + 1))})
        else:
            keep = hits
        return Lines(f"<line {i}> {rows[i]}" for i in keep)

    def chunks(text=None, size=CHUNK_CHARS, overlap=0) -> list:
        """``text`` (default: ``context``) cut into pieces of at most ``size`` characters, at
        line ends when a piece holds one; consecutive pieces share about ``overlap``
        characters. A list is cut into lists of ``size`` items (``overlap`` items shared).

        Raises:
            ValueError: ``size`` < 1, or ``overlap`` not in ``0 .. size - 1``.
        """
        text = _context() if text is None else text
        size, overlap = int(size), int(overlap)
        if size < 1 or not 0 <= overlap < size:
            raise ValueError("chunks needs size >= 1 and 0 <= overlap < size")
        if isinstance(text, (list, tuple)):
            return [list(text[i : i + size]) for i in range(0, len(text), size - overlap)] if text else []
        text = text if isinstance(text, str) else str(text)
        out, start, n = [], 0, len(text)
        while start < n:
            end = min(n, start + size)
            if end < n:
                cut = text.rfind("\n", start, end)
                if cut > start:
                    end = cut + 1
            out.append(text[start:end])
            if end >= n:
                break
            nxt = end - overlap
            if overlap:  # start the overlap at a line start when one is inside it
                nl = text.find("\n", nxt, end)
                if nl != -1 and nl + 1 < end:
                    nxt = nl + 1
            start = max(nxt, start + 1)
        return out

    def _ask(prompts: list[str], labels=None, model=None) -> list:
        if not prompts:
            return []
        payload: dict = {"prompts": prompts, "model": model}
        if labels is not None:
            payload["labels"] = labels
        return request("llm_query_batched", **payload)

    def llm_map(items, instruction, labels=None, batch=1, model=None) -> list:
        """Ask a sub-LM ``instruction`` (str) about every item of ``items`` (list of str),
        all sub-calls concurrently; returns one answer (str) per item, in order.

        ``labels`` (list of str): every answer is exactly one of them (the embedded model is
        held to it by a grammar; another model's answer is mapped to the first label it names,
        else ``"[unlabelled] <answer>"``). ``batch`` > 1 puts that many items in one sub-call
        (numbered; fewer calls, answers parsed per line). A failed sub-call's answer starts
        with ``"[sub-call error] "``. ``llm_map(instruction, items)`` is accepted too.
        """
        if isinstance(items, str) and not isinstance(instruction, str):
            items, instruction = instruction, items
        if isinstance(items, str):
            raise TypeError("llm_map needs a list of items (e.g. context.splitlines() or chunks(context))")
        items = [i if isinstance(i, str) else str(i) for i in items]
        labels = list(labels) if labels is not None else None
        rule = ""
        if labels:
            rule = "\nAnswer with exactly one of these labels: " + "; ".join(labels) + "."
        batch = max(1, int(batch))
        if batch == 1:
            prompts = [f"{instruction}{rule}\n\nText:\n{item}" for item in items]
            return list(_ask(prompts, labels, model))
        groups = [items[i : i + batch] for i in range(0, len(items), batch)]
        prompts = [
            f"{instruction}{rule}\nAnswer every numbered text on its own line, as `N: answer`.\n\n"
            + "\n".join(f"{j + 1}. {t}" for j, t in enumerate(g))
            for g in groups
        ]
        out = []
        match_label = _match_label() if labels else None
        for g, reply in zip(groups, _ask(prompts, None, model)):
            found = {}
            for line in str(reply).splitlines():
                m = re.match(r"\s*\**\s*(\d+)\s*[.:)\]-]\**\s*(.*)", line)
                if m:
                    found.setdefault(int(m.group(1)), m.group(2).strip())
            for j in range(len(g)):
                ans = found.get(j + 1)
                if str(reply).startswith("[sub-call error] "):
                    ans = str(reply)
                elif ans is None:
                    ans = "[unanswered]"
                elif labels:
                    ans = match_label(ans, labels)
                out.append(ans)
        return out

    def llm_classify(items, labels, instruction=DEFAULT_CLASSIFY, model=None) -> list:
        """One label (from ``labels``, list of str) per item of ``items`` (list of str), asked
        of a sub-LM with ``instruction``; see :func:`llm_map`. Count them in code, e.g.
        ``collections.Counter(llm_classify(texts, labels))``."""
        if not labels or isinstance(labels, str):
            raise TypeError("llm_classify needs labels as a list of strings, e.g. ['yes', 'no']")
        return llm_map(items, instruction, labels=list(labels), model=model)

    def llm_reduce(parts, question, model=None, max_chars=CHUNK_CHARS * 2) -> str:
        """Answer ``question`` (str) over ``parts`` (list of str, e.g. ``chunks(context)``):
        one sub-call per part (concurrent), then the partial answers are combined by more
        sub-calls, in groups of at most ``max_chars`` characters, until one answer remains."""
        if isinstance(parts, str):
            parts = chunks(parts)
        partial = llm_map(list(parts), f"Answer from this text only, briefly; say 'nothing relevant' if it does not help.\nQuestion: {question}", model=model)
        partial = [p for p in partial if "nothing relevant" not in p.lower()] or partial[:1]
        while len(partial) > 1:
            groups, cur, size = [], [], 0
            for p in partial:
                if cur and size + len(p) > max_chars:
                    groups.append(cur)
                    cur, size = [], 0
                cur.append(p)
                size += len(p)
            groups.append(cur)
            if len(groups) == len(partial) and len(groups) > 1:  # every answer is too long: pair them
                groups = [partial[i : i + 2] for i in range(0, len(partial), 2)]
            texts = ["\n\n".join(f"Partial answer {i + 1}:\n{p}" for i, p in enumerate(g)) for g in groups]
            partial = list(_ask([f"Combine these partial answers into one answer to the question.\nQuestion: {question}\n\n{t}" for t in texts], model=model))
        return partial[0] if partial else ""

    def summarize(text=None, focus="", size=CHUNK_CHARS * 2, model=None) -> str:
        """A summary of ``text`` (default: ``context``), made chunk by chunk with sub-calls
        (:func:`llm_reduce` over ``chunks(text, size)``); ``focus`` (str) says what to keep."""
        q = "Summarize the text" + (f", keeping everything about: {focus}" if focus else "") + "."
        return llm_reduce(chunks(text, size), q, model=model)

    def search(query, k=5, items=None) -> Lines:
        """The ``k`` lines of ``context`` (or items of ``items``, a list of str such as
        ``chunks(context)``) most relevant to the words of ``query`` (str), best first, ranked
        by BM25 (``bm25s``, English stop words removed), as ``"<line N> text"`` (``"<item N>"``
        for ``items``). The index is built on the first search and kept."""
        source = _context() if items is None else items
        rows = _items_of(source)
        key = (id(source), len(rows))
        if key not in indexes:
            try:
                import bm25s
            except ImportError:
                raise ImportError("search() needs the bm25s package in the kernel's Python (pip install bm25s); use grep()") from None

            tok = bm25s.tokenization.Tokenizer(stopwords="en")
            index = bm25s.BM25()
            index.index(tok.tokenize(rows, return_as="ids", show_progress=False), show_progress=False)
            indexes.clear()  # one index at a time: they can be large
            indexes[key] = (tok, index, source)
        tok, index, _ = indexes[key]
        q = tok.tokenize([str(query)], update_vocab=False, return_as="ids", show_progress=False)
        if not rows or not any(len(x) for x in q):
            return Lines()
        docs, scores = index.retrieve(q, k=min(int(k), len(rows)), show_progress=False)
        tag = "line" if items is None else "item"
        return Lines(f"<{tag} {int(d)}> {rows[int(d)]}" for d, s in zip(docs[0], scores[0]) if s > 0)

    return {
        "grep": grep,
        "search": search,
        "chunks": chunks,
        "llm_map": llm_map,
        "llm_classify": llm_classify,
        "llm_reduce": llm_reduce,
        "summarize": summarize,
        # pre-imported: a small root that drops the example's import line otherwise repeats the
        # same NameError until the run stops (seen: status "repeated" on a counting task)
        "Counter": Counter,
        "defaultdict": defaultdict,
    }
