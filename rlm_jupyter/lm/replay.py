"""A recorded run as a model: provider ``replay`` (a litellm custom provider).

``RLM(model="replay/<path>")`` re-executes the run recorded in ``<path>`` (a ``.jsonl`` or
``.ipynb`` written by this project, see :func:`rlm_jupyter.core.records.load_trajectory`) in a
fresh REPL environment: every root call (of the root RLM and of child RLMs, in the recorded
order) is answered with the recorded reply, and every sub-call with the recorded answer to
the same prompt. The code the root LM wrote thus runs again for real, deterministically, and
``result.differences`` (:func:`rlm_jupyter.core.records.compare`) lists where its outputs
differ from the recording. Give the run the same query and context as the recording::

    rec = load_trajectory("run.jsonl")
    res = RLM(model="replay/run.jsonl").completion(rec.root.query, context)
    assert res.differences == []

A root call is one whose messages start with a system message; any other call is a
sub-call. A new run starts when a root call carries no recorded reply while the next recorded
reply is not a node's first one (so one model id replays any number of runs, one at a time).
Replayed calls cost 0 USD and take the recorded token counts.

Raises (from the call, as ``litellm.BadRequestError``, not retried): the recording has no
more root replies, or no recorded sub-call with that prompt.
"""

from __future__ import annotations

import collections
import os
import pathlib
import threading
from typing import Any

from ..core import events as ev
from ..core.records import load_trajectory
from ._litellm import ensure_provider, litellm_module, text_response

PROVIDER = "replay"


class Replayer:
    """The recorded replies of one run and how far a replay has got.

    Args:
        path: the recording (``.jsonl`` / ``.ipynb``).

    Attributes:
        root_replies: ``(node_id, iteration, text, usage dict)`` of every root reply, in the
            recorded order; subcalls: ``(prompt, answer, error, usage)`` in order.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = pathlib.Path(path)
        traj = load_trajectory(self.path)
        self.root_replies: list[tuple[str, int, str, dict]] = []
        self.subcalls: list[tuple[str, str | None, str | None, dict]] = []
        for e in traj.events:
            if e.kind == ev.ROOT_REPLY:
                self.root_replies.append((e.node_id, int(e.data.get("iteration") or 0), e.data.get("text") or "", e.data.get("usage") or {}))
        for sc in traj.subcalls.values():
            self.subcalls.append((sc.prompt, sc.answer, sc.error, sc.usage.to_dict()))
        self._first = {}
        for i, (node, _, _, _) in enumerate(self.root_replies):
            self._first.setdefault(node, i)
        self._known = {r[2] for r in self.root_replies}
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Start over from the first recorded reply."""
        self._next_root = 0
        self._by_prompt: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        for prompt, answer, error, usage in self.subcalls:
            self._by_prompt[prompt].append((answer, error, usage))

    def _starts_run(self, messages: list[dict]) -> bool:
        replied = any(m.get("role") == "assistant" and m.get("content") in self._known for m in messages)
        if replied or self._next_root == 0:
            return False
        if self._next_root >= len(self.root_replies):
            return True
        node = self.root_replies[self._next_root][0]
        return self._first[node] != self._next_root

    def answer(self, messages: list[dict]) -> tuple[str, dict]:
        """``(text, recorded usage dict)`` for one call.

        Raises:
            LookupError: no recorded reply left for it.
        """
        with self._lock:
            if messages and messages[0].get("role") == "system":
                if self._starts_run(messages):
                    self.reset()
                if self._next_root >= len(self.root_replies):
                    raise LookupError(f"the recording {self.path.name} has no more root replies ({len(self.root_replies)} recorded)")
                _, _, text, usage = self.root_replies[self._next_root]
                self._next_root += 1
                return text, usage
            prompt = str(messages[-1].get("content") or "") if messages else ""
            queue = self._by_prompt.get(prompt)
            if not queue:
                raise LookupError(f"the recording {self.path.name} has no (further) sub-call with this prompt: {prompt[:80]!r}")
            answer, error, usage = queue.popleft()
        if answer is None:
            raise LookupError(f"recorded sub-call error: {error}")
        return answer, usage


class _ReplayProvider:
    """Mixin of the litellm handler; ``replayers`` holds one :class:`Replayer` per path."""

    replayers: dict[str, Replayer]

    def replayer(self, path: str) -> Replayer:
        key = str(pathlib.Path(path).expanduser().resolve())
        mtime = os.stat(key).st_mtime_ns
        r = self.replayers.get(key)
        if r is None or getattr(r, "mtime", None) != mtime:
            r = Replayer(key)
            r.mtime = mtime  # type: ignore[attr-defined]
            self.replayers[key] = r
        return r

    def _respond(self, model: str, messages: list[dict]) -> Any:
        litellm = litellm_module()
        try:
            text, usage = self.replayer(model).answer(messages)
        except (LookupError, OSError, ValueError) as exc:
            raise litellm.BadRequestError(message=f"replay/{model}: {exc}", model=model, llm_provider=PROVIDER) from None
        inp, out = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
        return text_response(f"{PROVIDER}/{model}", text, inp, out)


def _provider() -> _ReplayProvider:
    return ensure_provider(PROVIDER, _make_handler)  # type: ignore[return-value]


def _make_handler() -> _ReplayProvider:
    litellm = litellm_module()

    class _Handler(litellm.CustomLLM, _ReplayProvider):
        def __init__(self) -> None:
            litellm.CustomLLM.__init__(self)
            self.replayers = {}

        def completion(self, model, messages, *args, **kwargs):
            return self._respond(model, messages)

        async def acompletion(self, model, messages, *args, **kwargs):
            return self._respond(model, messages)

    return _Handler()


_priced: set[str] = set()


def register(model_id: str | None = None) -> None:
    """Register the ``replay`` provider (idempotent) and, given ``"replay/<path>"``, give that
    model a 0-USD price and a large window in litellm's model map."""
    _provider()
    if model_id and model_id.startswith(PROVIDER + "/") and model_id not in _priced:
        _priced.add(model_id)
        litellm_module().register_model(
            {
                model_id: {
                    "max_input_tokens": 10_000_000,
                    "max_output_tokens": 1_000_000,
                    "input_cost_per_token": 0.0,
                    "output_cost_per_token": 0.0,
                    "litellm_provider": PROVIDER,
                    "mode": "chat",
                }
            }
        )


def prepare(model_id: str) -> None:
    """Provider setup for :mod:`.providers` (entry point ``replay``): :func:`register`."""
    register(model_id)


def replay_model(path: str | os.PathLike) -> str:
    """Register and return the model id ``"replay/<absolute path>"`` of a recording, starting
    its replay from the beginning.

    Raises:
        FileNotFoundError, ValueError: see :func:`~rlm_jupyter.core.records.load_trajectory`.
    """
    path = pathlib.Path(path).expanduser().resolve()
    model_id = f"{PROVIDER}/{path}"
    register(model_id)
    _provider().replayer(str(path)).reset()
    return model_id
