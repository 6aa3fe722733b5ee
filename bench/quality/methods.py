"""The methods compared (paper arXiv 2512.24601, Table 1 rows): the base model with the
context stuffed into its prompt, the RLM, the RLM without sub-calls, the summary agent and
CodeAct + BM25. Each returns a :class:`Outcome`; every LM call goes through litellm, so any
litellm model id works.

* ``summary``: the paper's summary agent: reads the context in window-sized parts, rewriting
  running notes about the question after each part, then answers from the notes.
* ``codeact``: CodeAct + BM25: a code agent (our REPL, no sub-LM) whose prompt holds the
  context (cut to half its window, like the base model's) and whose REPL offers ``search(words,
  k)`` over the whole context (BM25). Unlike the paper's agent, the REPL's ``context`` variable
  still holds the input (a code agent there could read it): the table is a lower bound on the
  RLM's edge over it.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import time
from typing import Any

from rlm_jupyter import RLM
from rlm_jupyter.core import events as ev
from rlm_jupyter.lm import local
from rlm_jupyter.lm._litellm import litellm_module
from rlm_jupyter.lm.client import LMClient, context_window_tokens
from rlm_jupyter.rlm import run_sync

from .tasks import Task

BASE_MAX_OUTPUT_TOKENS = 256
BLOCK_TIMEOUT_SECONDS = 3600.0
TEMPLATE_MARGIN_TOKENS = 96
CUT_MARKER = "\n[... {n:,} characters cut to fit the model's window ...]\n"


@dataclasses.dataclass
class Outcome:
    """One method on one task.

    Attributes:
        answer: final text (``None`` if the method produced none); status: ``done`` or why not.
        input_tokens, output_tokens, usd, lm_seconds, calls: usage over every LM call.
        wall_seconds: end to end, including kernel start (RLM).
        iterations: root turns (RLM); subcalls: sub-calls made (RLM without sub-calls: refused).
        truncated / kept_fraction / prompt_tokens: base model only (context cut to the window).
        error: exception text when the method failed outright.
        trace: the root's code blocks, their output and the final answer (RLM; diagnosis).
        lm_busy_seconds: wall-clock seconds during which at least one LM call was in flight
            (RLM: the union of every root and sub-call interval); ``lm_seconds`` sums calls
            that overlap (concurrent sub-calls), this does not.
    """

    answer: str | None
    status: str
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0
    cost_known: bool = True
    lm_seconds: float = 0.0
    calls: int = 0
    wall_seconds: float = 0.0
    iterations: int = 0
    subcalls: int = 0
    truncated: bool | None = None
    kept_fraction: float | None = None
    prompt_tokens: int | None = None
    error: str | None = None
    evaluated_tokens: int | None = None
    unique_tokens: int | None = None
    one_state_tokens: int | None = None
    helpers: dict = dataclasses.field(default_factory=dict)
    trace: list = dataclasses.field(default_factory=list)
    lm_busy_seconds: float | None = None


def prepare_model(model: str) -> None:
    """Register the embedded provider when ``model`` is ``local/...``."""
    if model.startswith(local.PROVIDER + "/"):
        local.register()


def model_tokens(model: str, text: str) -> int:
    """Tokens of ``text`` for ``model``: llama.cpp's own tokenizer for the embedded model,
    else litellm's ``token_counter`` (the model's tokenizer when litellm knows it, else cl100k)."""
    if model.startswith(local.PROVIDER + "/"):
        from rlm_jupyter.lm._litellm import registered_handler

        handler = registered_handler(local.PROVIDER)
        with handler._lock:
            llm = handler._model()
            return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
    return litellm_module().token_counter(model=model, text=text)


def base_prompt(context: str, query: str) -> str:
    return f"{context}\n\n{query}"


def fit_context(model: str, context: str, query: str, window: int) -> tuple[str, bool, float, int]:
    """Cut the middle of ``context`` (keeping head and tail, with a marker) so that the prompt
    fits ``window`` tokens minus the answer budget. Returns ``(context, truncated,
    kept_fraction of characters, prompt tokens)``."""
    budget = window - BASE_MAX_OUTPUT_TOKENS - TEMPLATE_MARGIN_TOKENS
    n = model_tokens(model, base_prompt(context, query))
    if n <= budget:
        return context, False, 1.0, n
    keep = int(len(context) * budget / n * 0.98)
    for _ in range(8):
        head = keep // 2
        cut = context[:head] + CUT_MARKER.format(n=len(context) - keep) + context[len(context) - (keep - head):]
        n = model_tokens(model, base_prompt(cut, query))
        if n <= budget:
            return cut, True, keep / len(context), n
        keep = int(keep * budget / n * 0.97)
    return cut, True, keep / len(context), n


def run_base(task: Task, model: str, window: int | None = None, completion_kwargs: dict | None = None) -> Outcome:
    """The base model answering with the (possibly truncated) context in its prompt."""
    prepare_model(model)
    window = window or context_window_tokens(model) or 128_000
    t0 = time.perf_counter()
    ctx, truncated, kept, n = fit_context(model, task.context, task.query, window)
    _local_stats_reset(model)
    kwargs: dict[str, Any] = {"max_tokens": BASE_MAX_OUTPUT_TOKENS, **(completion_kwargs or {})}
    if model.startswith(local.PROVIDER + "/"):
        kwargs.setdefault("temperature", 0.0)
    client = LMClient(num_retries=2)
    try:
        # on the shared event-loop thread the RLM runs use (litellm keeps per-loop workers)
        reply = run_sync(client.acomplete(model, [{"role": "user", "content": base_prompt(ctx, task.query)}], **kwargs))
    except Exception as exc:
        return Outcome(None, "error", wall_seconds=time.perf_counter() - t0, truncated=truncated, kept_fraction=kept,
                       prompt_tokens=n, error=f"{type(exc).__name__}: {exc}"[:500])
    u = reply.usage
    return _with_local_stats(Outcome(reply.text, "done", u.input_tokens, u.output_tokens, u.usd, u.cost_known, u.seconds,
                                     u.calls, time.perf_counter() - t0, truncated=truncated, kept_fraction=kept,
                                     prompt_tokens=n), model)


def run_rlm(task: Task, model: str, sub_model: str | None = None, subcalls: bool = True,
            max_iterations: int = 8, max_seconds: float | None = None, **rlm_kwargs: Any) -> Outcome:
    """The RLM (``subcalls=False``: the paper's ablation, ``RLM(subcalls=False)``: the prompt
    offers no sub-calls and any sub-call fails, so the model must solve the task with code)."""
    prepare_model(model)
    sub = sub_model or model
    events: list[ev.Event] = []
    _local_stats_reset(model)
    rlm_kwargs.setdefault("cache", False)  # measured calls, not cache hits
    # a code block labelling every record waits for hundreds of sub-calls (the embedded model:
    # ~1 s each on 2 idle cores); the default 120 s per block would interrupt it
    rlm_kwargs.setdefault("timeout", BLOCK_TIMEOUT_SECONDS)
    t0 = time.perf_counter()
    try:
        res = RLM(model=model, sub_model=sub, max_iterations=max_iterations, max_seconds=max_seconds,
                  subcalls=subcalls, **rlm_kwargs).completion(task.query, task.context, on_event=events.append)
    except Exception as exc:
        return Outcome(None, "error", wall_seconds=time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}"[:500])
    u = res.usage
    root_its = sum(1 for e in events if e.kind == ev.ITERATION_STARTED and e.node_id == "0")
    subs = sum(1 for e in events if e.kind == ev.SUBCALL_STARTED)
    return _with_local_stats(Outcome(res.answer, res.status, u.input_tokens, u.output_tokens, u.usd, u.cost_known, u.seconds,
                                     u.calls, time.perf_counter() - t0, iterations=root_its, subcalls=subs,
                                     error=res.message if res.status not in ("done",) else None,
                                     helpers=helpers_used(events), trace=root_trace(events),
                                     lm_busy_seconds=lm_busy_seconds(events)), model)


HELPER_NAMES = ("grep", "search", "chunks", "llm_map", "llm_classify", "llm_reduce", "summarize",
                "llm_query", "llm_query_batched", "rlm_query")
SUMMARY_NOTE_TOKENS = 400


def _local_stats_reset(model: str) -> None:
    if model.startswith(local.PROVIDER + "/"):
        local.reset_stats()


def _with_local_stats(o: Outcome, model: str) -> Outcome:
    """Prefill counts of the embedded model's calls since the reset (see ``local.stats``)."""
    if model.startswith(local.PROVIDER + "/"):
        st = local.stats()
        o.evaluated_tokens, o.unique_tokens = st.get("evaluated_tokens"), st.get("unique_tokens")
        o.one_state_tokens = st.get("one_state_tokens")
    return o


def lm_busy_seconds(events: list) -> float:
    """Seconds (wall clock) in which at least one LM call of the run was in flight: the union of
    the intervals ``[t - usage.seconds, t]`` of every ``root_reply`` and ``subcall_finished``
    event (a call's usage holds its own duration; events carry their time ``t``)."""
    spans = []
    for e in events:
        if e.kind in (ev.ROOT_REPLY, ev.SUBCALL_FINISHED):
            secs = float(((e.data.get("usage") or {}).get("seconds")) or 0.0)
            if secs > 0:
                spans.append((e.t - secs, e.t))
    busy, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > end:
            busy += b - max(a, end)
            end = b
    return busy


def root_trace(events: list, chars: int = 400) -> list[dict]:
    """The root's code blocks (first ``3 * chars`` characters), their output (first ``chars``)
    and seconds, the context's load time and the final answer's source: enough to see why an
    answer was wrong and where the time went."""
    out: list[dict] = []
    for e in events:
        if e.node_id != "0":
            continue
        if e.kind == ev.CODE_STARTED:
            out.append({"code": (e.data.get("code") or "")[: 3 * chars]})
        elif e.kind == ev.CODE_FINISHED and out:
            out[-1]["output"] = (e.data.get("text") or "")[:chars]
            out[-1]["seconds"] = e.data.get("seconds")
        elif e.kind == ev.NOTICE and e.data.get("load_seconds") is not None:
            out.append({"context_load_seconds": e.data["load_seconds"]})
        elif e.kind == ev.FINAL:
            out.append({"final": str(e.data.get("answer"))[:chars], "source": e.data.get("source")})
    return out


def helpers_used(events: list) -> dict:
    """How many root code blocks called each REPL helper (by name in the code)."""
    used: collections.Counter = collections.Counter()
    for e in events:
        if e.kind == ev.CODE_STARTED and e.node_id == "0":
            code = e.data.get("code") or ""
            for name in HELPER_NAMES:
                if re.search(rf"(?<![\w.]){name}\s*\(", code):  # not re.search(...)
                    used[name] += 1
    return dict(used)


def run_summary(task: Task, model: str, window: int | None = None, completion_kwargs: dict | None = None) -> Outcome:
    """The summary agent: notes rewritten part by part (each part fills the window less the
    notes and the answer budget), then an answer from the notes."""
    prepare_model(model)
    _local_stats_reset(model)
    window = window or context_window_tokens(model) or 128_000
    kwargs: dict[str, Any] = {"max_tokens": SUMMARY_NOTE_TOKENS, **(completion_kwargs or {})}
    if model.startswith(local.PROVIDER + "/"):
        kwargs.setdefault("temperature", 0.0)
    t0 = time.perf_counter()
    sample = task.context[:20_000]
    chars_per_token = len(sample) / max(1, model_tokens(model, sample))
    part_chars = max(2000, int((window - 3 * SUMMARY_NOTE_TOKENS - 2 * TEMPLATE_MARGIN_TOKENS) * chars_per_token * 0.9))
    parts = [task.context[i : i + part_chars] for i in range(0, len(task.context), part_chars)]
    client = LMClient(num_retries=2)
    notes, usage = "(none yet)", []
    try:
        for i, part in enumerate(parts, 1):
            prompt = (
                f"You read a long document in {len(parts)} parts to answer a question later.\nQuestion: {task.query}\n\n"
                f"Your notes so far:\n{notes}\n\nPart {i} of {len(parts)}:\n{part}\n\n"
                f"Rewrite your notes: keep what matters for the question from the notes and from this part "
                f"(exact values, names, running counts). At most {SUMMARY_NOTE_TOKENS * 3 // 4} words."
            )
            r = run_sync(client.acomplete(model, [{"role": "user", "content": prompt}], **kwargs))
            notes = r.text.strip() or notes
            usage.append(r.usage)
        r = run_sync(client.acomplete(model, [{"role": "user", "content": (
            f"Notes taken while reading a long document:\n{notes}\n\n{task.query}\nAnswer from the notes.")}],
            **{**kwargs, "max_tokens": BASE_MAX_OUTPUT_TOKENS}))
        usage.append(r.usage)
    except Exception as exc:
        return Outcome(None, "error", wall_seconds=time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}"[:500])
    return _with_local_stats(Outcome(
        r.text, "done", sum(u.input_tokens for u in usage), sum(u.output_tokens for u in usage), sum(u.usd for u in usage),
        all(u.cost_known for u in usage), sum(u.seconds for u in usage), len(usage), time.perf_counter() - t0,
        iterations=len(parts)), model)


CODEACT_NOTE = (
    "In the REPL, `search(words, k)` returns the k lines of the whole document most relevant to the words "
    "(BM25), numbered `<line N>`; the document above may be cut in the middle."
)


def run_codeact(task: Task, model: str, window: int | None = None, max_iterations: int = 8,
                max_seconds: float | None = None, **rlm_kwargs: Any) -> Outcome:
    """CodeAct + BM25: the context (cut to half the window) in the query, the REPL's
    ``search`` as the retriever, no sub-LM (``RLM(subcalls=False)``)."""
    prepare_model(model)
    window = window or context_window_tokens(model) or 128_000
    ctx, truncated, kept, n = fit_context(model, task.context, task.query, window // 2)
    query = f"Document:\n{ctx}\n\n{task.query}\n\n{CODEACT_NOTE}"
    coded = dataclasses.replace(task, query=query)
    o = run_rlm(coded, model, model, subcalls=False, max_iterations=max_iterations, max_seconds=max_seconds, **rlm_kwargs)
    o.truncated, o.kept_fraction, o.prompt_tokens = truncated, kept, n
    return o
