"""A scripted LM, served through litellm as provider ``scripted``.

It stands in for a network model in tests, benchmarks and teaching demos (no API key): the
real litellm code path runs, only the text comes from a script. Register a script under a
name, then call the model id ``"scripted/<name>"``::

    from rlm_jupyter.lm.scripted import script
    root = script("root", ["```repl\\nprint(len(context))\\n```", "FINAL(done)"])
    sub = script("sub", lambda messages: "yes")
    RLM(model=root, sub_model=sub).completion("q", "some context")

A script is a list of replies used in order (strings, exceptions to raise, or callables of
the messages), or one callable used for every call. Replies can be delayed by ``latency``
seconds to simulate a provider (the async path sleeps without blocking the event loop).

Streaming (``stream=True``, e.g. the root calls of :class:`~rlm_jupyter.lm.client.LMClient`
with ``on_delta``) sends the reply in ``chunks`` pieces with the latency spread over them, and
the same usage as the whole reply in the last chunk.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, Union

from ._litellm import ensure_provider, litellm_module, text_response

Reply = Union[str, BaseException, Callable[[list], str]]

PROVIDER = "scripted"


class Script:
    """Replies of one scripted model.

    Args:
        replies: a list consumed in order, or one callable ``fn(messages) -> str`` for every
            call. List items are strings, exceptions (raised), or callables.
        latency: seconds each call takes.
        repeat_last: when the list runs out, repeat its last item (else raise ``IndexError``).

    Attributes:
        calls: the ``messages`` of each call received, in order.
    """

    def __init__(self, replies: list[Reply] | Callable[[list], str], latency: float = 0.0, repeat_last: bool = True,
                 chunks: int = 8):
        self.replies = replies
        self.latency = latency
        self.chunks = max(1, int(chunks))
        self.repeat_last = repeat_last
        self.calls: list[list[dict]] = []
        self._i = 0
        self._lock = threading.Lock()

    def next_reply(self, messages: list[dict]) -> str:
        with self._lock:
            self.calls.append(messages)
            if callable(self.replies):
                item: Reply = self.replies
            else:
                if self._i >= len(self.replies):
                    if not (self.repeat_last and self.replies):
                        raise IndexError("scripted model has no more replies")
                    item = self.replies[-1]
                else:
                    item = self.replies[self._i]
                self._i += 1
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            return item(messages)
        return item


class ScriptedProvider:
    """Mixin of the litellm custom provider dispatching ``scripted/<name>`` to scripts.

    The concrete class (built in :func:`_provider`) also derives from ``litellm.CustomLLM``,
    which is imported lazily.
    """

    scripts: dict[str, Script]

    def _respond(self, model: str, messages: list[dict], optional_params: dict | None) -> Any:
        litellm = litellm_module()
        script = self.scripts.get(model)
        if script is None:
            raise litellm.BadRequestError(
                message=f"no script registered for scripted/{model}", model=model, llm_provider=PROVIDER
            )
        text = script.next_reply(messages)
        u = _usage(messages, text)
        return text_response(f"{PROVIDER}/{model}", text, u["prompt_tokens"], u["completion_tokens"])

    async def _stream(self, model: str, messages: list[dict]):
        """The reply as litellm ``GenericStreamingChunk`` dicts (usage in the last one)."""
        script = self.scripts.get(model)
        if script is None:
            self._respond(model, messages, None)  # raises the unknown-script error
        text = script.next_reply(messages)
        n = max(1, min(script.chunks, len(text)))
        size = -(-len(text) // n) if text else 1
        pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
        for i, piece in enumerate(pieces):
            if script.latency:
                await asyncio.sleep(script.latency / len(pieces))
            last = i == len(pieces) - 1
            yield {
                "text": piece,
                "is_finished": last,
                "finish_reason": "stop" if last else "",
                "usage": _usage(messages, text) if last else None,
                "index": 0,
                "tool_use": None,
            }


def _usage(messages: list[dict], text: str) -> dict:
    """Scripted usage: a token per 4 characters (at least 1) of the prompt and of the reply."""
    prompt = max(1, sum(len(str(m.get("content") or "")) for m in messages) // 4)
    completion = max(1, len(text) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _provider() -> ScriptedProvider:
    return ensure_provider(PROVIDER, _make_handler)  # type: ignore[return-value]


def _make_handler() -> ScriptedProvider:
    litellm = litellm_module()

    class _Handler(litellm.CustomLLM, ScriptedProvider):
        def __init__(self) -> None:
            litellm.CustomLLM.__init__(self)
            self.scripts = {}

        def completion(self, model, messages, *args, **kwargs):
            script = self.scripts.get(model)
            if script is not None and script.latency:
                time.sleep(script.latency)
            return self._respond(model, messages, kwargs.get("optional_params"))

        async def acompletion(self, model, messages, *args, **kwargs):
            script = self.scripts.get(model)
            if script is not None and script.latency:
                await asyncio.sleep(script.latency)
            return self._respond(model, messages, kwargs.get("optional_params"))

        async def astreaming(self, model, messages, *args, **kwargs):
            async for chunk in self._stream(model, messages):
                yield chunk

    return _Handler()


def prepare(model_id: str) -> None:
    """Provider setup for :mod:`.providers` (entry point ``scripted``): register the handler
    with litellm (idempotent). A ``"scripted/<name>"`` model answers once :func:`script` gave
    ``name`` its replies."""
    _provider()


def script(
    name: str,
    replies: list[Reply] | Callable[[list], str],
    latency: float = 0.0,
    usd_per_million_tokens: float = 0.0,
    chunks: int = 8,
) -> str:
    """Register a scripted model and return its litellm model id ``"scripted/<name>"``.

    Args:
        name: model name (re-registering a name replaces its script).
        replies: see :class:`Script`.
        latency: seconds per call.
        usd_per_million_tokens: price given to litellm's model map, for input and output
            tokens alike, so that cost accounting and USD limits can be exercised.
        chunks: pieces a streamed reply is sent in (the latency is spread over them).
    """
    litellm = litellm_module()
    handler = _provider()
    handler.scripts[name] = Script(replies, latency=latency, chunks=chunks)
    price = usd_per_million_tokens / 1e6
    litellm.register_model(
        {
            f"{PROVIDER}/{name}": {
                "max_input_tokens": 128_000,
                "max_output_tokens": 8_000,
                "input_cost_per_token": price,
                "output_cost_per_token": price,
                "litellm_provider": PROVIDER,
                "mode": "chat",
            }
        }
    )
    return f"{PROVIDER}/{name}"


def get_script(model_id: str) -> Script:
    """The :class:`Script` behind ``"scripted/<name>"`` (to inspect ``calls``)."""
    return _provider().scripts[model_id.split("/", 1)[1]]
