"""Custom LM providers by name: which code makes litellm route a model id ``"NAME/..."``.

litellm stays the client for every model; a custom provider is a ``litellm.CustomLLM``
handler in ``litellm.custom_provider_map`` (:func:`._litellm.register_provider`) plus
entries in litellm's model map (window, price). This registry says, per provider name, which
function sets that up: ``prepare(model_id: str) -> None``, idempotent, called once per model
id before its first call (by :class:`~.client.LMClient` and when an RLM resolves its models).

Providers come from, in this order: :func:`register_lm_provider` in this process; the
built-ins ``scripted`` (:mod:`.scripted`, tests), ``replay`` (:mod:`.replay`, a recorded run as
a model) and ``local`` (:mod:`.local`, the embedded llama.cpp model); entry points of group
:data:`GROUP`, e.g. in a third party's ``pyproject.toml``::

    [project.entry-points."rlm_jupyter.lm_providers"]
    mylab = "my_package.lm:prepare"

Any other prefix (``openai/``, ``anthropic/``, ...) is litellm's own and needs nothing here.
"""

from __future__ import annotations

import importlib
import threading
from importlib import metadata
from typing import Callable

from ..plugins import entry_points

GROUP = "rlm_jupyter.lm_providers"

Prepare = Callable[[str], None]

_BUILTIN = {
    "scripted": "rlm_jupyter.lm.scripted:prepare",
    "replay": "rlm_jupyter.lm.replay:prepare",
    "local": "rlm_jupyter.lm.local:prepare",
}
_lock = threading.Lock()
_registered: dict[str, Prepare] = {}
_prepared: set[str] = set()  # model ids already prepared (or needing nothing)


def register_lm_provider(name: str, prepare: Prepare) -> None:
    """Make ``prepare`` the setup of provider ``name`` (model ids ``"name/..."``) in this process.

    Raises:
        ValueError: ``name`` is empty or contains ``/``, or ``prepare`` is not callable.
    """
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"an LM provider name must be a non-empty string without '/', not {name!r}")
    if not callable(prepare):
        raise ValueError(f"the prepare function of LM provider {name!r} is not callable: {prepare!r}")
    with _lock:
        _registered[name] = prepare
        stale = {m for m in _prepared if m.startswith(name + "/")}
        _prepared.difference_update(stale)


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return entry_points(GROUP)


def lm_provider_names() -> list[str]:
    """Names of the custom providers known here (registered, built-in, installed), sorted."""
    return sorted(set(_registered) | set(_BUILTIN) | set(_entry_points()))


def _resolve(name: str) -> Prepare | None:
    if name in _registered:
        return _registered[name]
    target = _BUILTIN.get(name)
    if target is not None:
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)
    ep = _entry_points().get(name)
    return ep.load() if ep is not None else None


def prepare_model(model_id: str) -> None:
    """Set up the custom provider of ``model_id`` (``"provider/model"``) with litellm, once per
    model id; nothing for litellm's own providers.

    Raises:
        whatever the provider's ``prepare`` raises (e.g. ``LocalModelUnavailable``); it is
        tried again on the next call.
    """
    if model_id in _prepared:
        return
    name = model_id.split("/", 1)[0] if "/" in model_id else ""
    prepare = _resolve(name) if name else None
    if prepare is not None:
        prepare(model_id)
    with _lock:
        _prepared.add(model_id)
