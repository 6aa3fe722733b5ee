"""The RLM loop (paper arXiv 2512.24601, §2; Algorithm 1).

An :class:`RLMNode` is one RLM: a root LM talking to one REPL environment. It never shows
the context to the LM: the LM gets a description of it, writes code, sees the (truncated)
output, and answers with ``FINAL``/``FINAL_VAR``. Sub-calls made by that code arrive through
the environment's channel and are served by :class:`~.subcalls.SubCallServer` (a base of
:class:`RLMNode`): ``llm_query`` is one LM call, ``rlm_query`` starts a child :class:`RLMNode`
with its own environment while depth allows.

This module knows nothing of Jupyter UI: it reports everything as events on the run's
:class:`~rlm_jupyter.core.events.EventBus`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import traceback
from collections import deque
from typing import Any, Callable

from . import events as ev
from . import gate as gt
from . import tools as tl
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
from .subcalls import SubCallServer
from .text import TRUNCATION_MARKER, truncate  # noqa: F401 (used by the loop; public here)

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
        allowed_models: more model ids the model's code may name in ``llm_query(model=...)``
            besides ``model`` and ``sub_model`` (any other id is refused before an LM call).
        run_info: extra fields of the root's ``run_started`` event (e.g. ``forked_from``, see
            :func:`rlm_jupyter.core.fork.fork`).
        stream: stream root replies: the LM gets ``on_delta`` and each piece becomes a
            ``root_delta`` event.
        tools: host tools of the run, ``{name: ToolSpec}`` (:mod:`.tools`): described to every
            node's root LM, called from the REPL with op ``tool``, run in this process.
        answer_validator: ``None``, or ``validator(text) -> (value, error)`` checking the
            root's final answer (typed answers, ``rlm_jupyter.answers``): ``error`` (str) refuses
            it, the model is told and the run goes on. answer_format: what the root's system
            prompt says about the answer's form (the schema).
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
    allowed_models: list = dataclasses.field(default_factory=list)
    run_info: dict = dataclasses.field(default_factory=dict)
    stream: bool = False
    tools: dict = dataclasses.field(default_factory=dict)
    answer_validator: Callable[[str], tuple[Any, str | None]] | None = None
    answer_format: str = ""

    def models(self) -> list[str]:
        """The model ids sub-calls may use: the sub-model, the root model, ``allowed_models``."""
        return list(dict.fromkeys([self.sub_model, self.model, *self.allowed_models]))


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

    Attributes (hooks for stepping and follow-ups, see :mod:`.gate` and ``rlm_jupyter.session``):
        gate: ``None``, or ``async gate(node, iteration, block, code) -> Decision`` awaited
            before each root (depth 0) code block.
        say: messages from the user (str), taken into the root's next user message.
        preamble: text put before the root's first user message (what earlier runs found).
        root_context_info: the context description given to the root instead of one computed
            from its context (a follow-up in a kept environment).
        resume: ``None``, or where the root starts (a fork, ``rlm_jupyter.forking``): an object
            with ``messages`` (the chat so far, system prompt first), ``pending`` (text before
            the next turn line), ``step`` (root iterations already done) and ``reply`` (``None``,
            or the root's reply for iteration ``step + 1``, used instead of an LM call).
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
        self.gate: gt.Gate | None = None
        self.say: deque[str] = deque()
        self.preamble = ""
        self.root_context_info: dict | None = None
        self.resume: Any = None


class RLMNode(SubCallServer):
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
        info = self.tree.root_context_info if self.depth == 0 and self.tree.root_context_info else describe_context(context)
        self.emit(
            ev.RUN_STARTED,
            query=query,
            context_info=info,
            model=s.model,
            sub_model=s.sub_model,
            limits=dataclasses.asdict(limits),
            prompt_style=s.prompt_style,
            max_output_chars=s.max_output_chars,
            sub_window_tokens=s.sub_window_tokens,
            subcalls=s.subcalls,
            allowed_models=list(s.allowed_models),
            **(s.run_info if self.depth == 0 else {}),
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
            s.models(),
            query=query,
            tools=tl.prompt_lines(s.tools),
            answer_format=s.answer_format if self.depth == 0 else "",
        )
        messages = initial_messages(s.prompt_style, system, query, info, subcalls=s.subcalls)
        pending = messages.pop()["content"]  # the first user message gets the turn line
        if self.depth == 0 and self.tree.preamble:
            pending = f"{self.tree.preamble}\n\n{pending}"
        first, resume = 1, self.tree.resume if self.depth == 0 else None
        if resume is not None:  # a fork: continue a recorded conversation
            messages, pending, first = [dict(m) for m in resume.messages], resume.pending, resume.step + 1
        last_text, repeats = None, 0
        for it in range(first, max_it + 1):
            budget.check()
            self.emit(ev.ITERATION_STARTED, iteration=it, max_iterations=max_it)
            pending = gt.with_user_messages(self, pending, it)
            messages.append({"role": "user", "content": f"{pending}\n\n{turn_message(s.prompt_style, it, max_it, query, s.subcalls)}"})
            if resume is not None and it == first and resume.reply is not None:
                reply = resume.reply
                self.emit(ev.ROOT_REPLY, iteration=it, text=reply, usage=None, recorded=True)
            else:
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
                decision = await gt.decide(self, it, b, code)
                if decision.action == "skip":
                    self.emit(ev.CODE_STARTED, iteration=it, block=b, code=code)
                    outputs.append(gt.SKIPPED_OUTPUT)
                    self.emit(ev.CODE_FINISHED, iteration=it, block=b, outputs=[], text="", status="skipped", seconds=0.0, execution_count=None)
                    continue
                edited = decision.action == "edit" and decision.code != code
                original, code = (code, decision.code) if edited else (None, code)
                self.emit(ev.CODE_STARTED, iteration=it, block=b, code=code, **({"original_code": original} if edited else {}))
                timeout = s.block_timeout
                remaining = budget.remaining_seconds()
                if remaining is not None:
                    timeout = max(1.0, min(timeout, remaining))
                res = await self.env.execute(code, timeout=timeout)
                shown = truncate(res.text, s.max_output_chars)
                if res.notice:
                    shown = f"{shown.rstrip()}\n[{res.notice}]" if shown.strip() else f"[{res.notice}]"
                    self.emit(ev.NOTICE, message=res.notice, iteration=it)
                outputs.append(gt.EDITED_NOTE.format(code=code) + "\n" + shown if edited else shown)
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
            if repl_answer is not None and (done := self._final(repl_answer, "answer", it, notes)):
                return done
            final = parsed.final
            if final is not None and final.kind == "FINAL_VAR":
                text = await self.env.variable_text(final.value) if final.value.isidentifier() else None
                if text is not None and (done := self._final(text, "FINAL_VAR", it, notes)):
                    return done
                if text is None:
                    notes.append(
                        f"FINAL_VAR({final.value}) failed: there is no REPL variable named {final.value!r}, "
                        "or its value could not be read."
                    )
            elif final is not None and not final.value.strip():
                notes.append("Your FINAL(...) was empty (cut off?). Give the answer inside FINAL(...).")
            elif final is not None and not parsed.code_blocks:
                if done := self._final(final.value, "FINAL", it, notes):
                    return done
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
        pending = gt.with_user_messages(self, pending, max_it + 1)
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

    def _final(self, answer: str, source: str, it: int, notes: list[str] | None = None) -> NodeResult | None:
        """The node's result for ``answer``; ``None`` if the run's answer validator refuses it
        (root only): then why goes into ``notes`` (the model's next message) and a notice."""
        check = self.tree.settings.answer_validator
        if check is not None and self.depth == 0:
            error = check(answer)[1]
            if error is not None:
                self.emit(ev.NOTICE, message=f"answer refused: {error}", iteration=it)
                (notes if notes is not None else []).append(error)
                return None
        self.emit(ev.FINAL, answer=answer, source=source, iteration=it)
        return NodeResult(answer, "done", "", it)

    async def _root_call(self, messages: list[dict], iteration: int, **override: Any) -> str:
        s = self.tree.settings
        kwargs = dict(override or s.root_kwargs)
        if s.stream:

            def on_delta(piece: str | None) -> None:
                self.emit(ev.ROOT_DELTA, iteration=iteration, text=piece or "", reset=piece is None)

            kwargs["on_delta"] = on_delta
        reply = await self.tree.lm.acomplete(s.model, list(messages), **kwargs)
        self.tree.budget.record(reply.usage, root=self.depth == 0)
        self.emit(ev.ROOT_REPLY, iteration=iteration, text=reply.text, usage=reply.usage.to_dict())
        return reply.text

