"""Follow-up questions in a kept REPL environment (issue 11).

:func:`follow_up` (``RLMResult.ask``) and :func:`start_follow_up` (``%%rlm --continue R``) run a
new query in an earlier run's kept REPL environment: the new root is told the earlier queries
and answers, and finds their variables (``context`` included) still defined, as the official
implementation's ``persistent=True`` does. Each follow-up is its own run (own run id;
``parent_run`` and ``earlier_runs`` in its ``run_started`` event) and shares the earlier run's
:class:`~rlm_jupyter.result.RunEnvironment` (one kernel, closed once).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from .core import events as ev
from .core.loop import RunTree
from .core.text import truncate
from .result import RLMResult
from .session import Session

ANSWER_CHARS = 2_000  # an earlier answer is cut to this many characters in a follow-up's prompt


class KeptEnvironment:
    """The REPL environment of an earlier run, lent to a follow-up's root.

    ``start`` points the environment's sub-call channel at the new root; ``load_context``
    does nothing (``context`` is already there); ``shutdown`` leaves the kernel running (the
    earlier run's :class:`~rlm_jupyter.result.RunEnvironment` owns it).
    """

    def __init__(self, env: Any) -> None:
        self.env = env

    async def start(self, handler) -> None:
        server = getattr(self.env, "server", None)
        if server is None:
            raise RuntimeError("the earlier run's REPL environment has no sub-call channel")
        server.handler = handler

    async def load_context(self, context: Any) -> float:
        return 0.0

    async def execute(self, code: str, timeout: float | None = None):
        return await self.env.execute(code, timeout=timeout)

    async def variable_text(self, name: str) -> str | None:
        return await self.env.variable_text(name)

    async def shutdown(self) -> None:
        return None


def earlier_runs(result: RLMResult) -> list[dict]:
    """The runs a follow-up of ``result`` builds on, oldest first: ``{run_id, query, answer}``
    of ``result``'s own earlier runs (from its ``run_started`` event) and of ``result``."""
    traj = result.trajectory
    start = next((e for e in traj.events if e.kind == ev.RUN_STARTED and e.node_id == "0"), None)
    chain = list(start.data.get("earlier_runs") or []) if start is not None else []
    root = traj.root
    chain.append({"run_id": result.run_id, "query": root.query if root else "", "answer": result.answer})
    return chain


def preamble(runs: list[dict]) -> str:
    """What a follow-up's root is told about the earlier runs in its REPL environment."""
    lines = [
        "This is a follow-up question. Your REPL environment is the one earlier runs used: `context` "
        "and every variable they defined are still there (SHOW_VARS() lists them). Earlier questions "
        "and their answers:"
    ]
    for i, r in enumerate(runs, 1):
        answer = "(no answer)" if r.get("answer") is None else truncate(str(r["answer"]), ANSWER_CHARS)
        lines.append(f"{i}. Query: {r.get('query', '')}\n   Answer: {answer}")
    return "\n".join(lines)


def start_follow_up(
    rlm: Any,
    earlier: RLMResult,
    query: str,
    step: bool = False,
    on_event: Callable[[ev.Event], None] | None = None,
) -> Session:
    """Start a follow-up of ``earlier`` as a :class:`Session` (see :func:`follow_up`).

    Raises:
        RuntimeError: ``earlier``'s REPL environment was not kept, is closed, or its event
            loop no longer runs. TypeError: ``query`` is not a str.
    """
    env = earlier.environment
    if env is None or not env.alive:
        raise RuntimeError(
            f"run {earlier.run_id}'s REPL environment is {'closed' if env is not None else 'not kept'}: "
            "follow-ups need RLM(keep_environment=True) (%%rlm keeps it) and a live environment"
        )
    if env.loop.is_closed() or not env.loop.is_running():
        raise RuntimeError(f"the event loop of run {earlier.run_id} no longer runs; its environment cannot be reused")
    runs = earlier_runs(earlier)
    info = earlier.trajectory.root.context_info if earlier.trajectory.root else {}

    def setup(tree: RunTree) -> None:
        make_env = tree.env_factory
        kept = KeptEnvironment(env.env)
        tree.env_factory = lambda node: kept if node.depth == 0 else make_env(node)
        tree.keep_root_environment = True
        tree.root_context_info = dict(info) or None
        tree.preamble = preamble(runs)
        tree.settings.run_info = {**tree.settings.run_info, "parent_run": earlier.run_id, "earlier_runs": runs}

    def finish(result: RLMResult) -> None:
        result.environment = env  # the same kernel, owned by the earlier run's RunEnvironment
        env._last_use = time.monotonic()

    return Session(rlm, query, "", step=step, on_event=on_event, setup=setup, loop=env.loop, finish=finish)


def follow_up(rlm: Any, earlier: RLMResult, query: str, on_event: Callable[[ev.Event], None] | None = None) -> RLMResult:
    """Answer a follow-up ``query`` in ``earlier``'s kept REPL environment and return the new
    run's :class:`RLMResult` (``RLMResult.ask`` calls this). Blocks until the run ends; call it
    from a thread other than the run's event loop.

    Raises:
        RuntimeError, TypeError: see :func:`start_follow_up`.
    """
    return start_follow_up(rlm, earlier, query, step=False, on_event=on_event).run()
