"""The three methods compared (paper arXiv 2512.24601, Table 1 rows): the base model with the
context stuffed into its prompt, the RLM, and the RLM without sub-calls. Each returns a
:class:`Outcome`; every LM call goes through litellm, so any litellm model id works."""

from __future__ import annotations

import dataclasses
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
    return Outcome(reply.text, "done", u.input_tokens, u.output_tokens, u.usd, u.cost_known, u.seconds, u.calls,
                   time.perf_counter() - t0, truncated=truncated, kept_fraction=kept, prompt_tokens=n)


def run_rlm(task: Task, model: str, sub_model: str | None = None, subcalls: bool = True,
            max_iterations: int = 8, max_seconds: float | None = None, **rlm_kwargs: Any) -> Outcome:
    """The RLM (``subcalls=False``: the paper's ablation, ``RLM(subcalls=False)``: the prompt
    offers no sub-calls and any sub-call fails, so the model must solve the task with code)."""
    prepare_model(model)
    sub = sub_model or model
    events: list[ev.Event] = []
    t0 = time.perf_counter()
    try:
        res = RLM(model=model, sub_model=sub, max_iterations=max_iterations, max_seconds=max_seconds,
                  subcalls=subcalls, **rlm_kwargs).completion(task.query, task.context, on_event=events.append)
    except Exception as exc:
        return Outcome(None, "error", wall_seconds=time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}"[:500])
    u = res.usage
    root_its = sum(1 for e in events if e.kind == ev.ITERATION_STARTED and e.node_id == "0")
    subs = sum(1 for e in events if e.kind == ev.SUBCALL_STARTED)
    return Outcome(res.answer, res.status, u.input_tokens, u.output_tokens, u.usd, u.cost_known, u.seconds, u.calls,
                   time.perf_counter() - t0, iterations=root_its, subcalls=subs,
                   error=res.message if res.status not in ("done",) else None)
