"""Fork a run: continue a recorded (or live) run LIVE from its root iteration ``k``.

The new run (:func:`afork`) restores the recorded state before iteration ``k`` and then lets
this :class:`~rlm_jupyter.rlm.RLM`'s root model go on (another model, another query, or edited
code at iteration ``k``):

* the REPL environment: after loading ``context``, the recorded code blocks of iterations
  ``< k`` are executed again (:func:`rlm_jupyter.core.fork.fork`, blocks before a kernel restart
  dropped). Their sub-calls are answered from the recording by prompt (``llm_query``,
  ``llm_query_batched``, ``rlm_query``), in recorded order, without an LM call; a prompt the
  recording lacks (the code is not deterministic) and host tools are served live;
* the root LM: it starts from the recorded messages of iterations ``< k`` (system prompt, first
  user message, replies, REPL feedback) and its first call is iteration ``k``;
* ``run_started`` records ``forked_from: {"run_id": parent run id, "step": k}`` (``step`` is
  the first iteration of the fork, the one the new run redoes).
"""

from __future__ import annotations

import collections
import pathlib
import types
from typing import Any, Callable

from .core import events as ev
from .core import gate as gt
from .core.fork import fork
from .core.parsing import parse_reply
from .core.records import load_trajectory
from .core.trajectory import Trajectory


def as_trajectory(recording: Any) -> Trajectory:
    """The :class:`Trajectory` of ``recording``: a Trajectory, an ``RLMResult`` (anything with
    ``.trajectory``), or a path (str or ``Path``) of a ``.jsonl`` / ``.ipynb`` / official log.

    Raises:
        TypeError: another kind of value. FileNotFoundError, ValueError: see ``load_trajectory``.
    """
    if isinstance(recording, Trajectory):
        return recording
    if isinstance(getattr(recording, "trajectory", None), Trajectory):
        return recording.trajectory
    if isinstance(recording, (str, pathlib.Path)):
        return load_trajectory(recording)
    raise TypeError(f"fork() takes a Trajectory, an RLMResult or a path, not {type(recording).__name__}")


class _Restoring:
    """A root REPL environment that, after loading the context, re-runs the recorded code with
    sub-calls answered from the recording; everything else is delegated to ``env``."""

    def __init__(self, env: Any, node: Any, code: list[str], subcalls: list) -> None:
        self._env, self._node, self._code = env, node, code
        self._answers: dict[tuple[str, str], collections.deque] = collections.defaultdict(collections.deque)
        for sc in subcalls:
            if sc.answer is not None:
                self._answers["rlm_query" if sc.op == "rlm_query" else "llm_query", sc.prompt].append(sc.answer)
        self._live: Callable | None = None
        self._restoring = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def _recorded(self, op: str, prompt: str) -> str | None:
        q = self._answers.get((op, prompt))
        return q.popleft() if q else None

    async def _serve(self, op: str, payload: dict) -> Any:
        if self._restoring and op in ("llm_query", "rlm_query"):
            if (ans := self._recorded(op, payload.get("prompt", ""))) is not None:
                return ans
        if self._restoring and op == "llm_query_batched":
            prompts = list(payload.get("prompts") or [])
            if all(self._answers.get(("llm_query", p)) for p in prompts):
                return [self._recorded("llm_query", p) for p in prompts]
        return await self._live(op, payload)

    async def start(self, handler: Callable) -> None:
        self._live = handler
        await self._env.start(self._serve)

    async def load_context(self, context: Any) -> float:
        seconds = await self._env.load_context(context)
        self._restoring = True
        try:
            for code in self._code:
                res = await self._env.execute(code, timeout=self._node.tree.settings.block_timeout)
                if res.status != "ok":
                    self._node.emit(ev.NOTICE, message=f"a restored block ended with status {res.status}: {res.text[-300:]}")
        finally:
            self._restoring = False
        self._node.emit(ev.NOTICE, message=f"REPL state restored: {len(self._code)} recorded code block(s) run again")
        return seconds


async def afork(rlm: Any, recording: Any, k: int, context: Any, query: str | None = None, code: str | None = None,
                on_event: Callable[[ev.Event], None] | None = None):
    """Continue ``recording`` live from its root iteration ``k`` with ``rlm`` (its model and
    settings); see the module docstring.

    Args:
        rlm: the :class:`~rlm_jupyter.rlm.RLM` whose root model continues.
        recording: see :func:`as_trajectory`. k: the first root iteration of the fork (1-based;
            iterations ``1 .. k-1`` are kept, ``1 <= k <= recorded iterations + 1``).
        context: the recorded run's context (recordings hold only its description).
        query: replaces the recorded query in the first user message (and in the turn lines).
        code: replaces the root's code at iteration ``k``: the recorded reply of iteration ``k``
            is kept, ``code`` runs instead of its first block (later blocks are skipped) and the
            model's next turn sees the output, marked as edited (as step mode's Edit).

    Returns:
        :class:`~rlm_jupyter.result.RLMResult` of the new run.

    Raises:
        TypeError: bad ``recording``, ``k``, ``query`` or ``code``. ValueError: ``k`` out of range,
            a recording without a context description, or ``code`` for an iteration without code.
    """
    traj = as_trajectory(recording)
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int (a root iteration, 1-based), not {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be a root iteration (1-based), not {k}")
    for name, val in (("query", query), ("code", code)):
        if val is not None and not isinstance(val, str):
            raise TypeError(f"{name} must be a str, not {type(val).__name__}")
    fp = fork(traj, k - 1)
    reply = None
    if code is not None:
        it = next((i for i in traj.root.iterations if i.index == k), None)
        if it is None or not parse_reply(it.reply).code_blocks:
            raise ValueError(f"iteration {k} of run {traj.run_id} has no code block to replace")
        reply = it.reply
    messages, pending = [dict(m) for m in fp.messages], fp.pending
    if query is not None and fp.query:
        first = next((m for m in messages if m["role"] == "user" and fp.query in m["content"]), None)
        if first is not None:
            first["content"] = first["content"].replace(fp.query, query)
        else:
            pending = pending.replace(fp.query, query)
    resume = types.SimpleNamespace(messages=messages, pending=pending, step=k - 1, reply=reply)

    async def edit_gate(node: Any, iteration: int, block: int, block_code: str) -> gt.Decision:
        if iteration != k:
            return gt.RUN
        return gt.Decision("edit", code) if block == 0 else gt.SKIP

    def setup(tree: Any) -> None:
        tree.resume = resume
        tree.settings.run_info = {**tree.settings.run_info, "forked_from": {"run_id": traj.run_id, "step": k}}
        make = tree.env_factory
        tree.env_factory = lambda node: _Restoring(make(node), node, fp.code, fp.subcalls) if node.depth == 0 else make(node)
        if code is not None:
            tree.gate = edit_gate

    return await rlm.acompletion(fp.query if query is None else query, context, on_event, setup=setup)
