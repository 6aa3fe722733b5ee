"""Import litellm the offline-safe way.

litellm fetches its model price map from the internet at import unless
``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set first (``../shared/LOCAL_MODEL.md``): on a machine
without internet the import retries and prints warnings. Every module of this package gets
litellm from :func:`litellm_module`, never by importing it directly first.
"""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_make_lock = threading.Lock()  # ensure_provider: make() outside _lock (it may import litellm)
_registered: dict[str, object] = {}


def litellm_module():
    """The ``litellm`` module, imported with the local price map and quiet logging."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    import logging

    import litellm

    # register_model() warns about cache-token prices of every custom model: not our concern.
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


def register_provider(name: str, handler: object) -> None:
    """Register a ``litellm.CustomLLM`` handler as provider ``name`` (idempotent per name).

    After this, model ids ``"<name>/<model>"`` are routed to ``handler`` by
    ``litellm.completion``/``acompletion``.
    """
    litellm = litellm_module()
    with _lock:
        _registered[name] = handler
        litellm.custom_provider_map = [m for m in litellm.custom_provider_map if m.get("provider") != name]
        litellm.custom_provider_map.append({"provider": name, "custom_handler": handler})
        if name not in litellm._custom_providers:
            litellm._custom_providers.append(name)


def ensure_provider(name: str, make) -> object:
    """The handler registered as provider ``name``, or ``make()`` (a new ``litellm.CustomLLM``)
    registered under that name now: one handler per name, however many threads ask at once."""
    with _make_lock:
        handler = _registered.get(name)
        if handler is None:
            handler = make()
            register_provider(name, handler)
        return handler


def registered_handler(name: str) -> object | None:
    """The handler registered under ``name`` by :func:`register_provider`, if any."""
    return _registered.get(name)


def text_response(model_id: str, text: str, prompt_tokens: int, completion_tokens: int, finish_reason: str = "stop"):
    """A ``litellm.ModelResponse`` holding one assistant message ``text`` and its usage (tokens),
    as a custom provider returns it (``model_id``: ``"<provider>/<model>"``)."""
    litellm = litellm_module()
    resp = litellm.ModelResponse(
        model=model_id,
        choices=[{"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": text}}],
    )
    resp.usage = litellm.Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                               total_tokens=prompt_tokens + completion_tokens)
    return resp
