"""Serving the sub-calls an RLM node's REPL environment makes (paper arXiv 2512.24601, §2).

The model's code calls ``llm_query``, ``llm_query_batched``, ``rlm_query`` or a host tool; the
request arrives over the environment's channel (see
:mod:`rlm_jupyter.environment.kernel_side`) and :meth:`SubCallServer.handle_subcall` serves it:
``llm_query`` is one LM call, ``rlm_query`` starts a child node while depth allows (else it is
one LM call with ``op == "rlm_query"``). Every sub-call is a ``subcall_started`` /
``subcall_finished`` event pair on the run's bus.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from . import events as ev
from . import tools as tl
from .labels import check_labels, lm_kwargs, match_label
from .limits import LimitExceeded

log = logging.getLogger("rlm_jupyter.core")


class SubCallServer:
    """The sub-call half of :class:`~rlm_jupyter.core.loop.RLMNode` (a mixin: it uses the
    node's ``tree``, ``node_id``, ``depth`` and id counters)."""

    tree: Any  # the node's rlm_jupyter.core.loop.RunTree (settings, lm, bus, budget, semaphore)
    node_id: str
    depth: int

    async def handle_subcall(self, op: str, payload: dict) -> Any:
        """Serve a request from this node's REPL environment (see ``kernel_side``)."""
        if op == "tool":  # a host tool (the user's function), not an LM call: also without sub-calls
            return await tl.serve(self, payload)
        if not self.tree.settings.subcalls:
            raise RuntimeError("sub-calls are disabled in this run; work with code alone")
        if op in ("llm_query", "llm_query_batched"):
            self._check_model(payload.get("model"))
        if op == "llm_query":
            self.tree.budget.reserve_subcalls(1)
            return await self._llm_query(payload.get("prompt", ""), payload.get("model"), None, raise_errors=True)
        if op == "llm_query_batched":
            prompts = list(payload.get("prompts") or [])
            labels = check_labels(payload["labels"]) if payload.get("labels") is not None else None
            self.tree.budget.reserve_subcalls(len(prompts))
            batch = f"{self.node_id}.b{next(self._batch_ids)}"
            return list(
                await asyncio.gather(
                    *(self._llm_query(p, payload.get("model"), batch, raise_errors=False, labels=labels) for p in prompts)
                )
            )
        if op == "rlm_query":
            self.tree.budget.reserve_subcalls(1)
            return await self._rlm_query(payload.get("prompt", ""), payload.get("context"))
        raise ValueError(f"unknown sub-call operation {op!r}")

    async def _llm_query(
        self, prompt: str, model: str | None, batch: str | None, raise_errors: bool, labels: list[str] | None = None,
        op: str = "llm_query",
    ) -> str:
        """One sub-call; with ``labels`` the answer is exactly one of them (a grammar for the
        embedded model, :func:`.labels.match_label` on any model's text). ``op`` is what the
        model's code called (``llm_query``, or ``rlm_query`` at the depth limit): it is the
        ``op`` of the ``subcall_started`` event."""
        s = self.tree.settings
        model = model or s.sub_model
        sid = f"{self.node_id}.s{next(self._sub_ids)}"
        emit = self.tree.bus.emit
        emit(ev.SUBCALL_STARTED, sid, self.node_id, self.depth + 1, op=op, model=model, prompt=prompt, batch=batch)
        try:
            self.tree.budget.check()
            self._check_window(model, prompt)
            async with self.tree.semaphore:
                kw = {**s.sub_kwargs, **lm_kwargs(model, labels)}
                reply = await self.tree.lm.acomplete(model, [{"role": "user", "content": prompt}], **kw)
        except (asyncio.CancelledError, LimitExceeded):
            emit(ev.SUBCALL_FINISHED, sid, self.node_id, self.depth + 1, answer=None, usage=None, error="stopped", cached=False)
            raise
        except Exception as exc:
            log.warning("sub-call %s (%s, %s) failed: %s: %s", sid, op, model, type(exc).__name__, exc)
            emit(ev.SUBCALL_FINISHED, sid, self.node_id, self.depth + 1, answer=None, usage=None, error=str(exc), cached=False)
            if raise_errors:
                raise
            return f"[sub-call error] {exc}"
        self.tree.budget.record(reply.usage)
        emit(
            ev.SUBCALL_FINISHED,
            sid,
            self.node_id,
            self.depth + 1,
            answer=reply.text,
            usage=reply.usage.to_dict(),
            error=None,
            cached=reply.cached,
        )
        return match_label(reply.text, labels) if labels else reply.text

    def _check_model(self, model: Any) -> None:
        """Raise ``ValueError`` unless ``model`` is ``None`` (the sub-model) or one of the run's
        models (:meth:`RunSettings.models`): the model's code cannot send data, or spend money,
        anywhere else."""
        if model is None:
            return
        allowed = self.tree.settings.models()
        if model not in allowed:
            raise ValueError(
                f"model {str(model)[:100]!r} is not allowed in this run; use one of {', '.join(map(repr, allowed))} "
                "or leave model unset (the user can add models with RLM.allowed_models)"
            )

    def _check_window(self, model: str, prompt: str) -> None:
        """Raise ``ValueError`` if ``prompt`` cannot fit the sub-model's input window.

        Tokens are counted (litellm's tokenizer for the model) only when the prompt has more
        than 2 characters per window token, so ordinary prompts cost nothing here.
        """
        window = self.tree.settings.sub_window_tokens
        if not window or model != self.tree.settings.sub_model or len(prompt) <= window * 2:
            return
        tokens = self.tree.lm.count_tokens(model, prompt)
        if tokens > window:
            raise ValueError(
                f"the prompt has {tokens:,} tokens ({len(prompt):,} characters) but the sub-model {model} "
                f"takes at most {window:,}; send a smaller slice"
            )

    async def _rlm_query(self, prompt: str, context: Any) -> str:
        limits = self.tree.budget.limits
        if self.depth + 1 >= limits.max_depth:
            return await self._llm_query(prompt if context is None else f"{prompt}\n\n{context}", None, None, True, op="rlm_query")
        cid = f"{self.node_id}.c{next(self._child_ids)}"
        child = type(self)(self.tree, cid, self.node_id, self.depth + 1)
        res = await child.run(prompt, prompt if context is None else context)
        if res.answer is None:
            raise RuntimeError(f"child RLM {cid} ended without an answer ({res.status}: {res.message})")
        return res.answer
