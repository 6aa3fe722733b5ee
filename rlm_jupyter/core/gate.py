"""The step gate: a hook that may hold, edit or skip each root code block before it runs.

:class:`~rlm_jupyter.core.loop.RunTree` has a ``gate`` attribute (default ``None``). When set,
the root RLM (depth 0) awaits ``gate(node, iteration, block, code)`` before each code block
it would run in its REPL environment, and acts on the returned :class:`Decision`:

- ``run``: run the block as the model wrote it;
- ``edit``: run ``Decision.code`` instead (``code_started`` then carries ``original_code``,
  the model's version; the model is told what ran);
- ``skip``: do not run it (``code_finished`` with status ``"skipped"``; the model is told);
- ``stop``: stop the run, as a cancellation does (status ``"stopped"``).

The tree's ``say`` queue (a ``collections.deque`` of str) holds messages from the user; the
root takes them all into its next user message (``user_message`` events record them).

Used by :mod:`rlm_jupyter.session` (``RLM.start``, step mode); nothing here knows Jupyter.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Awaitable, Callable

from . import events as ev

ACTIONS = ("run", "edit", "skip", "stop")

SKIPPED_OUTPUT = "[the user skipped this block: it did not run]"
EDITED_NOTE = "[the user edited this block before it ran; the code that ran was:]\n```python\n{code}\n```"
USER_MESSAGE_PREFIX = "Message from the user: "


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to do with one proposed root code block.

    Attributes:
        action: one of :data:`ACTIONS` (``"run"``, ``"edit"``, ``"skip"``, ``"stop"``).
        code: for ``edit``, the code to run instead (str); ignored otherwise.

    Raises:
        ValueError: unknown action, or ``edit`` without code.
    """

    action: str = "run"
    code: str | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown step decision {self.action!r}; use one of {', '.join(ACTIONS)}")
        if self.action == "edit" and not isinstance(self.code, str):
            raise ValueError("an 'edit' decision needs the code to run (a str)")


RUN = Decision("run")
SKIP = Decision("skip")
STOP = Decision("stop")

# gate(node, iteration (1-based), block (0-based), code) -> Decision
Gate = Callable[[Any, int, int, str], Awaitable[Decision]]


async def decide(node: Any, iteration: int, block: int, code: str) -> Decision:
    """The tree's gate's decision for a block of ``node`` (an ``RLMNode``): ``run`` without a
    gate or below the root. A ``stop`` decision raises ``asyncio.CancelledError``: the run ends
    as stopped, as when the user cancels it."""
    gate = node.tree.gate
    if node.depth != 0 or gate is None:
        return RUN
    decision = await gate(node, iteration, block, code)
    if decision.action == "stop":
        raise asyncio.CancelledError("stopped at the step gate")
    return decision


def with_user_messages(node: Any, pending: str, iteration: int) -> str:
    """``pending`` (the root's next user message) plus the user's queued messages, each
    recorded as a ``user_message`` event; unchanged below the root."""
    if node.depth != 0:
        return pending
    said = []
    while node.tree.say:
        text = str(node.tree.say.popleft())
        node.emit(ev.USER_MESSAGE, iteration=iteration, text=text)
        said.append(USER_MESSAGE_PREFIX + text)
    return "\n\n".join([pending, *said]) if said else pending
