"""Every LM call of a run goes through :class:`LMClient` (litellm ``acompletion``).

It adds what an RLM needs around litellm: retries with exponential backoff on rate limits,
5xx errors, timeouts and connection errors; usage and USD per call from litellm's price map;
and the sub-model's context window, so that a sub-call prompt that cannot fit fails with a
clear message instead of a provider error.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from ..core.limits import Usage
from ..core.protocols import LMReply
from ._litellm import litellm_module

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
    """

    def __init__(
        self,
        num_retries: int = 4,
        backoff_seconds: float = 1.0,
        timeout_seconds: float = 600.0,
        completion_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.num_retries = num_retries
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.completion_kwargs = dict(completion_kwargs or {})

    async def acomplete(self, model: str, messages: list[dict], **kwargs: Any) -> LMReply:
        """Call ``model`` on ``messages`` (OpenAI chat format).

        Returns:
            :class:`LMReply`.

        Raises:
            LMError: the call failed after retries, or failed with a non-retryable error
                (authentication, bad request, unknown model).
        """
        litellm = litellm_module()
        call_kwargs = {**self.completion_kwargs, **kwargs}
        call_kwargs.setdefault("timeout", self.timeout_seconds)
        t0 = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                # litellm's own timeout does not bind every provider (a custom provider that
                # hangs, a stalled stream): bound each attempt here too.
                resp = await asyncio.wait_for(
                    litellm.acompletion(model=model, messages=messages, **call_kwargs), self.timeout_seconds
                )
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt > self.num_retries or not _is_retryable(exc):
                    raise LMError(model, exc, attempt) from exc
                delay = self.backoff_seconds * (2 ** (attempt - 1))
                await asyncio.sleep(delay * (1 + random.random() / 4))
        return self._reply(model, resp, time.monotonic() - t0)

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
