"""The RLM loop (paper arXiv 2512.24601, §2; Algorithm 1).

An :class:`RLMNode` is one RLM: a root LM talking to one REPL environment. It never shows
the context to the LM: the LM gets a description of it, writes code, sees the (truncated)
output, and answers with ``FINAL``/``FINAL_VAR``. Sub-calls made by that code arrive through
the environment's channel and are served here: ``llm_query`` is one LM call, ``rlm_query``
starts a child :class:`RLMNode` with its own environment while depth allows.

This module knows nothing of Jupyter UI: it reports everything as events on the run's
:class:`~rlm_jupyter.core.events.EventBus`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import traceback
from typing import Any, Callable

from . import events as ev
from .context import ContextError, describe_context, normalize_context
from .limits import Budget, LimitExceeded
from .parsing import parse_reply
from .prompts import (
    FORCED_FINAL_MESSAGE,
    NO_CODE_MESSAGE,
    feedback_message,
    initial_messages,
    system_prompt,
    turn_message,
)
from .protocols import LM, REPLEnvironment

TRUNCATION_MARKER = "\n... [{n:,} characters truncated] ...\n"


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to about ``limit`` characters, keeping its head and tail with a marker
    saying how many characters were cut."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return text[:head] + TRUNCATION_MARKER.format(n=len(text) - head - tail) + text[len(text) - tail :]


@dataclasses.dataclass
class RunSettings:
    """Settings shared by every node of a run tree.

    Attributes:
        model: litellm id of the root LM; sub_model: of sub-calls (``llm_query``).
        prompt_style: ``"standard"`` or ``"small"`` (see :mod:`.prompts`).
        max_output_chars: per-block cap on REPL output shown to the root LM (characters).
        block_timeout: per-block timeout (seconds).
        concurrency: sub-calls in flight at once across the tree.
        root_kwargs / sub_kwargs: extra litellm arguments for root / sub-calls.
        sub_window_tokens: the sub-model's input window (tokens), for the prompt check.
        repeat_limit: identical consecutive root replies that end the run (3 = the same
            reply repeated twice after the first).
        subcalls: False for the paper's "RLM without sub-calls" ablation: the prompt omits
            them and every sub-call request fails with a message.
    """

    model: str
    sub_model: str
    prompt_style: str = "standard"
    max_output_chars: int = 20_000
    block_timeout: float = 120.0
    concurrency: int = 16
    root_kwargs: dict = dataclasses.field(default_factory=dict)
    sub_kwargs: dict = dataclasses.field(default_factory=dict)
    sub_window_tokens: int | None = None
    repeat_limit: int = 3
    subcalls: bool = True


@dataclasses.dataclass
class NodeResult:
    """Outcome of one RLM node.

    Attributes:
        answer: the final answer (``None`` if the node stopped without one).
        status: ``done`` | ``max_iterations`` | ``repeated`` | ``limit`` | ``error`` | ``stopped``.
        message: why, for statuses other than ``done``.
        iterations: root turns taken.
    """

    answer: str | None
    status: str
    message: str = ""
    iterations: int = 0


class RunTree:
    """What the nodes of one run share: settings, LM, environment factory, bus, budget.

    Args:
        settings: :class:`RunSettings`.
        lm: the LM client (``acomplete(model, messages, **kw)``).
        env_factory: ``env_factory(node) -> REPLEnvironment`` (a new, unstarted environment).
        bus: the run's event bus.
        budget: the run's tree-wide budget.
    """

    def __init__(
        self,
        settings: RunSettings,
        lm: LM,
        env_factory: Callable[["RLMNode"], REPLEnvironment],
        bus: ev.EventBus,
        budget: Budget,
    ) -> None:
        self.settings = settings
        self.lm = lm
        self.env_factory = env_factory
        self.bus = bus
        self.budget = budget
        self.semaphore = asyncio.Semaphore(settings.concurrency)
        self.environments: list[REPLEnvironment] = []
        # keep the root's REPL environment alive after the run (to explore or re-run its cells)
        self.keep_root_environment = False


class RLMNode:
    """One RLM in the tree (the root, or a child started by ``rlm_query``)."""

    def __init__(self, tree: RunTree, node_id: str = "0", parent_id: str | None = None, depth: int = 0) -> None:
        self.tree = tree
        self.node_id = node_id
        self.parent_id = parent_id
        self.depth = depth
        self._sub_ids = itertools.count(1)
        self._child_ids = itertools.count(1)
        self._batch_ids = itertools.count(1)
        self.env: REPLEnvironment | None = None

    # -- events -------------------------------------------------------------------------
    def emit(self, kind: str, **data: Any) -> None:
        self.tree.bus.emit(kind, self.node_id, self.parent_id, self.depth, **data)

    # -- the loop -----------------------------------------------------------------------
    async def run(self, query: str, context: Any) -> NodeResult:
        """Answer ``query`` about ``context``; never raises for model or provider failures
        (they end the node with a status), only for bad input before the run starts
        (``ContextError``, ``FileNotFoundError``) and for cancellation."""
        s = self.tree.settings
        limits = self.tree.budget.limits
        context = normalize_context(context)
        info = describe_context(context)
        self.emit(
            ev.RUN_STARTED,
            query=query,
            context_info=info,
            model=s.model,
            sub_model=s.sub_model,
            limits=dataclasses.asdict(limits),
            prompt_style=s.prompt_style,
        )
        result = NodeResult(None, "error", "not started")
        keep = False
        try:
            self.env = self.tree.env_factory(self)
            self.tree.environments.append(self.env)
            await self.env.start(self.handle_subcall)
            load_seconds = await self.env.load_context(context)
            self.emit(ev.NOTICE, message=f"context loaded into the REPL environment in {load_seconds:.3f} s", load_seconds=load_seconds)
            result = await self._loop(query, info)
            keep = self.depth == 0 and self.tree.keep_root_environment
        except LimitExceeded as exc:
            self.emit(ev.LIMIT, limit=exc.limit, message=exc.message)
            result = NodeResult(None, "limit", exc.message, result.iterations)
            keep = self.depth == 0 and self.tree.keep_root_environment
        except asyncio.CancelledError:
            self.emit(ev.RUN_FINISHED, status="stopped", answer=None, message="stopped by the user", usage=self._usage())
            raise
        except Exception as exc:
            if self.env is None or isinstance(exc, ContextError):
                raise
            self.emit(ev.ERROR, message=str(exc), error_type=type(exc).__name__, traceback=traceback.format_exc())
            result = NodeResult(None, "error", f"{type(exc).__name__}: {exc}", result.iterations)
        finally:
            if self.env is not None and not keep:
                await asyncio.shield(self._shutdown_env())
        self.emit(ev.RUN_FINISHED, status=result.status, answer=result.answer, message=result.message, usage=self._usage())
        return result

    def _usage(self) -> dict:
        return self.tree.budget.usage.to_dict()

    async def _shutdown_env(self) -> None:
        try:
            await self.env.shutdown()
        except Exception as exc:  # pragma: no cover - best effort cleanup
            self.emit(ev.NOTICE, message=f"REPL environment shutdown failed: {exc}")

    async def _loop(self, query: str, info: dict) -> NodeResult:
        s = self.tree.settings
        budget = self.tree.budget
        max_it = budget.limits.max_iterations
        system = system_prompt(
            s.prompt_style,
            info,
            s.max_output_chars,
            (s.sub_window_tokens or 100_000) * 3,
            budget.limits.max_depth,
            self.depth,
            s.subcalls,
        )
        messages = initial_messages(s.prompt_style, system, query, info)
        pending = messages.pop()["content"]  # the first user message gets the turn line
        last_text, repeats = None, 0
        for it in range(1, max_it + 1):
            budget.check()
            self.emit(ev.ITERATION_STARTED, iteration=it, max_iterations=max_it)
            messages.append({"role": "user", "content": f"{pending}\n\n{turn_message(s.prompt_style, it, max_it)}"})
            reply = await self._root_call(messages, it)
            messages.append({"role": "assistant", "content": reply})
            repeats = repeats + 1 if reply == last_text else 1
            last_text = reply
            if repeats >= s.repeat_limit:
                msg = f"the root LM gave the same reply {repeats} times in a row"
                self.emit(ev.NOTICE, message=msg)
                return NodeResult(None, "repeated", msg, it)
            parsed = parse_reply(reply)
            outputs: list[str] = []
            notes: list[str] = []
            repl_answer = None
            for b, code in enumerate(parsed.code_blocks):
                self.emit(ev.CODE_STARTED, iteration=it, block=b, code=code)
                timeout = s.block_timeout
                remaining = budget.remaining_seconds()
                if remaining is not None:
                    timeout = max(1.0, min(timeout, remaining))
                res = await self.env.execute(code, timeout=timeout)
                shown = truncate(res.text, s.max_output_chars)
                if res.notice:
                    shown = f"{shown.rstrip()}\n[{res.notice}]" if shown.strip() else f"[{res.notice}]"
                    self.emit(ev.NOTICE, message=res.notice, iteration=it)
                outputs.append(shown)
                self.emit(
                    ev.CODE_FINISHED,
                    iteration=it,
                    block=b,
                    outputs=res.outputs,
                    text=res.text,
                    status=res.status,
                    seconds=res.seconds,
                    execution_count=res.execution_count,
                )
                if res.answer is not None:
                    repl_answer = res.answer
                budget.check()
            if repl_answer is not None:
                return self._final(repl_answer, "answer", it)
            final = parsed.final
            if final is not None and final.kind == "FINAL_VAR":
                text = await self.env.variable_text(final.value) if final.value.isidentifier() else None
                if text is not None:
                    return self._final(text, "FINAL_VAR", it)
                notes.append(
                    f"FINAL_VAR({final.value}) failed: there is no REPL variable named {final.value!r}, "
                    "or its value could not be read."
                )
            elif final is not None and not final.value.strip():
                notes.append("Your FINAL(...) was empty (cut off?). Give the answer inside FINAL(...).")
            elif final is not None and not parsed.code_blocks:
                return self._final(final.value, "FINAL", it)
            elif final is not None:
                notes.append(
                    "Your FINAL(...) was ignored: it came in the same reply as code whose output you had not "
                    "seen. Check the output above, then answer."
                )
            if not parsed.code_blocks and final is None:
                notes.append(NO_CODE_MESSAGE)
            pending = feedback_message(outputs, notes)
        return await self._forced_final(messages, pending, max_it)

    async def _forced_final(self, messages: list[dict], pending: str, max_it: int) -> NodeResult:
        self.tree.budget.check()
        messages.append({"role": "user", "content": f"{pending}\n\n{FORCED_FINAL_MESSAGE}"})
        kwargs = {k: v for k, v in self.tree.settings.root_kwargs.items() if k != "rlm_grammar"}
        reply = await self._root_call(messages, max_it + 1, **kwargs)
        parsed = parse_reply(reply)
        if parsed.final is not None and parsed.final.kind == "FINAL_VAR" and parsed.final.value.isidentifier():
            answer = await self.env.variable_text(parsed.final.value)
        elif parsed.final is not None:
            answer = parsed.final.value
        else:
            answer = parsed.prose or reply
        self.emit(ev.FINAL, answer=answer, source="forced", iteration=max_it + 1)
        return NodeResult(answer, "max_iterations", f"no FINAL within {max_it} iterations; answer forced", max_it)

    def _final(self, answer: str, source: str, it: int) -> NodeResult:
        self.emit(ev.FINAL, answer=answer, source=source, iteration=it)
        return NodeResult(answer, "done", "", it)

    async def _root_call(self, messages: list[dict], iteration: int, **override: Any) -> str:
        s = self.tree.settings
        kwargs = override or s.root_kwargs
        reply = await self.tree.lm.acomplete(s.model, list(messages), **kwargs)
        self.tree.budget.record(reply.usage, root=self.depth == 0)
        self.emit(ev.ROOT_REPLY, iteration=iteration, text=reply.text, usage=reply.usage.to_dict())
        return reply.text

    # -- sub-calls ----------------------------------------------------------------------
    async def handle_subcall(self, op: str, payload: dict) -> Any:
        """Serve a request from this node's REPL environment (see ``kernel_side``)."""
        if not self.tree.settings.subcalls:
            raise RuntimeError("sub-calls are disabled in this run; work with code alone")
        if op == "llm_query":
            self.tree.budget.reserve_subcalls(1)
            return await self._llm_query(payload.get("prompt", ""), payload.get("model"), None, raise_errors=True)
        if op == "llm_query_batched":
            prompts = list(payload.get("prompts") or [])
            self.tree.budget.reserve_subcalls(len(prompts))
            batch = f"{self.node_id}.b{next(self._batch_ids)}"
            return list(
                await asyncio.gather(*(self._llm_query(p, payload.get("model"), batch, raise_errors=False) for p in prompts))
            )
        if op == "rlm_query":
            self.tree.budget.reserve_subcalls(1)
            return await self._rlm_query(payload.get("prompt", ""), payload.get("context"))
        raise ValueError(f"unknown sub-call operation {op!r}")

    async def _llm_query(self, prompt: str, model: str | None, batch: str | None, raise_errors: bool) -> str:
        s = self.tree.settings
        model = model or s.sub_model
        sid = f"{self.node_id}.s{next(self._sub_ids)}"
        emit = self.tree.bus.emit
        emit(ev.SUBCALL_STARTED, sid, self.node_id, self.depth + 1, op="llm_query", model=model, prompt=prompt, batch=batch)
        try:
            self.tree.budget.check()
            self._check_window(model, prompt)
            async with self.tree.semaphore:
                reply = await self.tree.lm.acomplete(model, [{"role": "user", "content": prompt}], **s.sub_kwargs)
        except (asyncio.CancelledError, LimitExceeded):
            emit(ev.SUBCALL_FINISHED, sid, self.node_id, self.depth + 1, answer=None, usage=None, error="stopped", cached=False)
            raise
        except Exception as exc:
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
        return reply.text

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
            return await self._llm_query(prompt if context is None else f"{prompt}\n\n{context}", None, None, True)
        cid = f"{self.node_id}.c{next(self._child_ids)}"
        child = RLMNode(self.tree, cid, self.node_id, self.depth + 1)
        res = await child.run(prompt, prompt if context is None else context)
        if res.answer is None:
            raise RuntimeError(f"child RLM {cid} ended without an answer ({res.status}: {res.message})")
        return res.answer

