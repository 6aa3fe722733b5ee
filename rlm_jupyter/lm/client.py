"""Every LM call of a run goes through :class:`LMClient` (litellm ``acompletion``).

It adds what an RLM needs around litellm: retries with exponential backoff on rate limits,
5xx errors, timeouts and connection errors; usage and USD per call from litellm's price map;
and the sub-model's context window, so that a sub-call prompt that cannot fit fails with a
clear message instead of a provider error.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Callable

from ..core.limits import Usage
from ..core.protocols import LMReply
from ._litellm import litellm_module, registered_handler
from .providers import prepare_model

log = logging.getLogger("rlm_jupyter.lm")

# Providers' errors worth retrying (names of litellm exception classes).
RETRYABLE = (
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "Timeout",
    "APIConnectionError",
)


class LMError(Exception):
    """An LM call failed for good (after retries, or a non-retryable error).

    Attributes:
        model: the litellm model id.
        cause: the last exception raised by litellm.
        attempts: how many calls were made.
    """

    def __init__(self, model: str, cause: BaseException, attempts: int) -> None:
        self.model = model
        self.cause = cause
        self.attempts = attempts
        super().__init__(f"{model}: {type(cause).__name__}: {cause} (after {attempts} attempt(s))")


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, asyncio.TimeoutError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & set(RETRYABLE):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status == 429 or status >= 500)


class MissingCredentials(LMError):
    """The provider of ``model`` needs an API key that is neither in the environment nor in
    the call's arguments: raised before any request (litellm would retry some providers'
    "missing credentials" errors as server errors for a minute)."""

    def __init__(self, model: str, keys: list[str]) -> None:
        cause = RuntimeError(f"no API key: set {' or '.join(keys)} (or pass api_key in RLM.completion_kwargs)")
        super().__init__(model, cause, 0)
        self.keys = keys
        Exception.__init__(self, f"{model}: {cause}")


def check_credentials(model: str, kwargs: dict[str, Any], environ: dict[str, str] | None = None) -> None:
    """Raise :class:`MissingCredentials` if ``model``'s provider needs an API key that is missing.

    Uses ``litellm.validate_environment``; only keys named ``*_API_KEY`` count (a base URL,
    project, region or cloud credentials may come from elsewhere), and a provider with any
    other ``<PROVIDER>_*KEY``/``*_TOKEN`` variable set is left to litellm.
    """
    import os

    if kwargs.get("api_key") or kwargs.get("azure_ad_token"):
        return
    environ = os.environ if environ is None else environ
    try:
        found = litellm_module().validate_environment(model=model, api_base=kwargs.get("api_base"))
    except Exception:
        return
    missing = list(found.get("missing_keys") or [])
    if found.get("keys_in_environment") or not missing or not all(k.endswith("_API_KEY") for k in missing):
        return
    prefixes = {k.split("_", 1)[0] + "_" for k in missing}
    if any(n.startswith(tuple(prefixes)) and n.endswith(("KEY", "TOKEN")) and v for n, v in environ.items()):
        return
    raise MissingCredentials(model, missing)


def context_window_tokens(model: str) -> int | None:
    """The model's input window in tokens from litellm's model map (``None`` if unknown)."""
    litellm = litellm_module()
    try:
        info = litellm.get_model_info(model)
    except Exception:
        return None
    return info.get("max_input_tokens") or info.get("max_tokens")


class LMClient:
    """Calls models through litellm with retries and usage accounting.

    Args:
        num_retries: retries after the first attempt for retryable errors.
        backoff_seconds: first backoff; doubles each retry, with up to 25% jitter.
        timeout_seconds: per-attempt request timeout passed to litellm (seconds).
        completion_kwargs: extra keyword arguments for every ``litellm.acompletion`` call
            (e.g. ``api_base``, ``temperature``).
        cache: an :class:`~rlm_jupyter.lm.cache.LMCache` for greedy calls, or ``None``.
    """

    def __init__(
        self,
        num_retries: int = 4,
        backoff_seconds: float = 1.0,
        timeout_seconds: float = 600.0,
        completion_kwargs: dict[str, Any] | None = None,
        cache: Any = None,
    ) -> None:
        self.num_retries = num_retries
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.completion_kwargs = dict(completion_kwargs or {})
        self.cache = cache

    async def acomplete(
        self, model: str, messages: list[dict], on_delta: Callable[[str | None], None] | None = None, **kwargs: Any
    ) -> LMReply:
        """Call ``model`` on ``messages`` (OpenAI chat format).

        With ``on_delta``, the reply is streamed (litellm ``stream=True`` with
        ``stream_options={"include_usage": True}``, rebuilt by ``litellm.stream_chunk_builder``,
        so usage and USD are those of the whole reply): ``on_delta(piece)`` gets each new piece
        of text as it arrives, and ``on_delta(None)`` if a retry discards the pieces so far.
        Models whose provider cannot stream (a custom provider without ``astreaming``) and
        cache hits are not streamed.

        Returns:
            :class:`LMReply`.

        Raises:
            LMError: the call failed after retries, or failed with a non-retryable error
                (authentication, bad request, unknown model).
            MissingCredentials: (an LMError) the provider's API key is not set; no request made.
        """
        litellm = litellm_module()
        prepare_model(model)  # a custom provider's litellm setup (scripted/, replay/, local/, ...)
        call_kwargs = {**self.completion_kwargs, **kwargs}
        call_kwargs.setdefault("timeout", self.timeout_seconds)
        t0 = time.monotonic()
        key = self.cache.key(model, messages, call_kwargs) if self.cache is not None else None
        hit = self.cache.get(key) if key is not None else None
        if hit is not None:
            log.debug("cache hit for %s (%d messages)", model, len(messages))
            return _cached_reply(model, hit, time.monotonic() - t0)
        check_credentials(model, call_kwargs)
        stream = on_delta is not None and can_stream(model)
        sent = [False]  # pieces of this attempt were passed to on_delta
        attempt = 0
        while True:
            attempt += 1
            try:
                # litellm's own timeout does not bind every provider (a custom provider that
                # hangs, a stalled stream): bound each attempt here too.
                call = (
                    _astream(litellm, model, messages, call_kwargs, on_delta, sent)
                    if stream
                    else litellm.acompletion(model=model, messages=messages, **call_kwargs)
                )
                resp = await asyncio.wait_for(call, self.timeout_seconds)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt > self.num_retries or not _is_retryable(exc):
                    log.info("%s failed after %d attempt(s): %s: %s", model, attempt, type(exc).__name__, exc)
                    raise LMError(model, exc, attempt) from exc
                if sent[0]:
                    sent[0] = False
                    on_delta(None)
                delay = self.backoff_seconds * (2 ** (attempt - 1))
                log.warning("%s: %s: %s; retry %d of %d in %.1f s", model, type(exc).__name__, exc, attempt, self.num_retries, delay)
                await asyncio.sleep(delay * (1 + random.random() / 4))
        reply = self._reply(model, resp, time.monotonic() - t0)
        if key is not None:
            u = reply.usage
            self.cache.set(key, {
                "text": reply.text, "model": model, "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens, "usd": u.usd, "seconds": u.seconds,
            })
        return reply

    def count_tokens(self, model: str, text: str) -> int:
        """Tokens of ``text`` for ``model`` (litellm's tokenizer; tiktoken cl100k if unknown)."""
        return int(litellm_module().token_counter(model=model, text=text))

    def _reply(self, model: str, resp: Any, seconds: float) -> LMReply:
        litellm = litellm_module()
        text = ""
        try:
            text = resp.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):
            text = ""
        usage = getattr(resp, "usage", None)
        inp = int(getattr(usage, "prompt_tokens", 0) or 0)
        out = int(getattr(usage, "completion_tokens", 0) or 0)
        hidden = getattr(resp, "_hidden_params", {}) or {}
        usd = hidden.get("response_cost")
        cost_known = True
        if usd is None:
            try:
                usd = float(litellm.completion_cost(completion_response=resp))
            except Exception:
                usd, cost_known = 0.0, False
        cached = bool(hidden.get("cache_hit"))
        return LMReply(
            text=text,
            usage=Usage(input_tokens=inp, output_tokens=out, usd=float(usd or 0.0), seconds=seconds, calls=1, cost_known=cost_known),
            model=model,
            cached=cached,
        )


def can_stream(model: str) -> bool:
    """Whether ``model`` can be streamed: any litellm provider, and custom providers
    (``scripted``, ``local``, ...) whose handler implements ``astreaming``."""
    handler = registered_handler(model.split("/", 1)[0]) if "/" in model else None
    if handler is None:
        return True
    base = litellm_module().CustomLLM
    return type(handler).astreaming is not base.astreaming


async def _astream(litellm: Any, model: str, messages: list[dict], kwargs: dict, on_delta: Callable, sent: list) -> Any:
    """One streamed call: ``on_delta`` gets each piece; returns the rebuilt ``ModelResponse``."""
    resp = await litellm.acompletion(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}, **kwargs
    )
    chunks = []
    async for chunk in resp:
        chunks.append(chunk)
        choices = getattr(chunk, "choices", None) or []
        piece = getattr(getattr(choices[0], "delta", None), "content", None) if choices else None
        if piece:
            sent[0] = True
            on_delta(piece)
    return litellm.stream_chunk_builder(chunks, messages=messages)


def _cached_reply(model: str, entry: dict, seconds: float) -> LMReply:
    """An :class:`LMReply` from an LM cache entry: 0 USD, the lookup time in ``cached_seconds``."""
    usage = Usage(
        input_tokens=int(entry.get("input_tokens", 0)),
        output_tokens=int(entry.get("output_tokens", 0)),
        calls=1,
        cache_hits=1,
        cached_seconds=seconds,
    )
    return LMReply(text=entry["text"], usage=usage, model=model, cached=True)
