"""Fork a recorded run: what a continuation from root iteration k needs.

:func:`fork` rebuilds, from a :class:`~rlm_jupyter.core.trajectory.Trajectory`, the root LM's
message history after its first ``k`` iterations (exactly as the loop of
:mod:`rlm_jupyter.core.loop` sent it: system prompt, first user message, each reply and the
REPL feedback) and the code blocks to run again in a fresh REPL environment (after loading the
same context) so that its variables are what they were after iteration ``k``. A block whose
kernel died or was restarted (status ``died``, or ``timeout`` with a restart notice) lost every
variable but ``context``, so only the blocks after the last such restart are replayed.

The continuation (another model, another query, edited code) records its parent with
:meth:`ForkPoint.run_started_fields` in its ``run_started`` event.
"""

from __future__ import annotations

import dataclasses

from . import events as ev
from .gate import EDITED_NOTE, SKIPPED_OUTPUT, USER_MESSAGE_PREFIX
from .text import truncate
from .parsing import parse_reply
from .prompts import NO_CODE_MESSAGE, feedback_message, initial_messages, system_prompt, turn_message
from .trajectory import SubCall, Trajectory

DEFAULT_OUTPUT_CHARS = 20_000
SMALL_OUTPUT_CHARS = 4_000


@dataclasses.dataclass
class ForkPoint:
    """The state of a run after root iteration ``step``.

    Attributes:
        parent_run_id: run id of the recorded run; step: root iterations kept (0 = none).
        query: the recorded query; context_info: its context's description.
        messages: the root LM's chat messages up to and including its reply of iteration
            ``step`` (OpenAI format); the next user message is ``pending`` followed by the
            turn line of iteration ``step + 1``.
        pending: the feedback of iteration ``step`` (its REPL outputs, truncated as the
            model saw them, and notes); for ``step == 0`` the first user message.
        code: code blocks to run, in order, in a fresh REPL environment holding the same
            ``context``, to restore the variables.
        subcalls: the sub-calls those blocks made (recorded prompts and answers, to serve
            them again without calling a model).
        children: node ids of child RLMs those blocks started (``rlm_query``).
        next_said: what the user told the root LM (step mode's Say) at the start of iteration
            ``step + 1`` of the recorded run; not in ``pending`` (pass it to
            :meth:`next_user_message` to say it again).
        settings: the prompt settings used to rebuild ``messages`` (style, max_output_chars,
            sub_window_tokens, max_iterations, max_depth, subcalls, models).
    """

    parent_run_id: str
    step: int
    query: str
    context_info: dict
    messages: list[dict]
    pending: str
    code: list[str]
    subcalls: list[SubCall]
    children: list[str]
    settings: dict
    next_said: list[str] = dataclasses.field(default_factory=list)

    def next_user_message(self, said: list[str] = ()) -> dict:
        """The user message that opens iteration ``step + 1`` (``said``: messages from the
        user to the root LM for that turn, as step mode's Say sends them)."""
        s = self.settings
        pending = "\n\n".join([self.pending, *(USER_MESSAGE_PREFIX + t for t in said)])
        turn = turn_message(s["style"], self.step + 1, s["max_iterations"], s.get("query", ""), s["subcalls"])
        return {"role": "user", "content": f"{pending}\n\n{turn}"}

    def run_started_fields(self) -> dict:
        """Fields for the continuation's ``run_started`` event: ``{"forked_from": {"run_id",
        "step"}}``."""
        return {"forked_from": {"run_id": self.parent_run_id, "step": self.step}}


def _user_messages(traj: Trajectory) -> dict[int, list[str]]:
    """Messages the user sent the root LM (step mode's Say), by the iteration they opened."""
    out: dict[int, list[str]] = {}
    for e in traj.events:
        if e.node_id == "0" and e.kind == ev.USER_MESSAGE:
            out.setdefault(e.data.get("iteration"), []).append(str(e.data.get("text", "")))
    return out


def _block_notices(traj: Trajectory) -> dict[tuple[int, int], str]:
    """Notices the REPL environment gave for a root block (restart), by (iteration, block)."""
    out: dict[tuple[int, int], str] = {}
    cur: tuple[int, int] | None = None
    for e in traj.events:
        if e.node_id != "0":
            continue
        if e.kind == ev.CODE_STARTED:
            cur = (e.data.get("iteration"), e.data.get("block"))
        elif e.kind == ev.CODE_FINISHED:
            cur = None
        elif e.kind == ev.NOTICE and cur is not None and "iteration" in e.data:
            out[cur] = e.data.get("message", "")
    return out


def fork(
    traj: Trajectory,
    step: int,
    *,
    max_output_chars: int | None = None,
    sub_window_tokens: int | None = None,
    subcalls: bool | None = None,
) -> ForkPoint:
    """The :class:`ForkPoint` after root iteration ``step`` of ``traj``.

    Args:
        traj: a recorded or live trajectory (its root node is used).
        step: root iterations to keep, ``0 <= step <= len(traj.iterations)`` (a forced final
            turn does not count).
        max_output_chars, sub_window_tokens, subcalls: the run's settings, when its
            ``run_started`` event does not record them (default: 4,000 characters for the
            embedded ``local/`` root model, else 20,000; 100,000 tokens; True).

    Raises:
        ValueError: no root node, no context description (a run imported from ``rlms``), or
            ``step`` out of range.
    """
    root = traj.root
    if root is None:
        raise ValueError("the trajectory has no root run to fork")
    if "type" not in root.context_info:
        raise ValueError(f"run {traj.run_id} has no context description to rebuild its prompts from (an imported run?)")
    started = traj.events[0].data if traj.events and traj.events[0].kind == ev.RUN_STARTED else {}
    limits = started.get("limits") or {}
    max_it = int(limits.get("max_iterations") or 30)
    turns = [it for it in root.iterations if it.index <= max_it]
    if not 0 <= step <= len(turns):
        raise ValueError(f"step must be between 0 and {len(turns)} (root iterations of run {traj.run_id}), not {step}")
    style = started.get("prompt_style") or "standard"
    if max_output_chars is None:
        max_output_chars = started.get("max_output_chars") or (SMALL_OUTPUT_CHARS if root.model.startswith("local/") else DEFAULT_OUTPUT_CHARS)
    if sub_window_tokens is None:
        sub_window_tokens = started.get("sub_window_tokens")
    if subcalls is None:
        subcalls = bool(started.get("subcalls", True))
    settings = {
        "style": style, "max_output_chars": max_output_chars, "sub_window_tokens": sub_window_tokens,
        "max_iterations": max_it, "max_depth": int(limits.get("max_depth") or 1), "subcalls": subcalls,
    }
    models = list(dict.fromkeys([root.sub_model, root.model, *(started.get("allowed_models") or [])]))
    settings["models"] = models
    settings["query"] = root.query  # the small style words its example and turns by the query's shape
    system = system_prompt(
        style, root.context_info, max_output_chars, (sub_window_tokens or 100_000) * 3, settings["max_depth"], 0, subcalls, models,
        query=root.query,
    )
    messages = initial_messages(style, system, root.query, root.context_info, subcalls=subcalls)
    pending = messages.pop()["content"]
    if started.get("preamble"):  # a follow-up run: what the earlier runs found
        pending = f"{started['preamble']}\n\n{pending}"
    notices = _block_notices(traj)
    said = _user_messages(traj)
    code: list[str] = []
    subs: list[SubCall] = []
    children: list[str] = []
    for it in turns[:step]:
        pending = "\n\n".join([pending, *(USER_MESSAGE_PREFIX + t for t in said.get(it.index, []))])
        messages.append({"role": "user", "content": f"{pending}\n\n{turn_message(style, it.index, max_it, root.query, subcalls)}"})
        messages.append({"role": "assistant", "content": it.reply})
        outputs = []
        for b, cell in enumerate(it.cells):
            if cell.status == "skipped":  # step mode: the user skipped it, it did not run
                outputs.append(SKIPPED_OUTPUT)
                continue
            shown = truncate(cell.text, max_output_chars)
            notice = notices.get((it.index, b))
            if notice:
                shown = f"{shown.rstrip()}\n[{notice}]" if shown.strip() else f"[{notice}]"
            edited = getattr(cell, "original_code", None) is not None  # step mode: the user's code ran
            outputs.append(EDITED_NOTE.format(code=cell.code) + "\n" + shown if edited else shown)
            if cell.status == "died" or (cell.status == "timeout" and notice and "restarted" in notice):
                code, subs, children = [], [], []  # the kernel restarted: only `context` survived
            elif cell.status not in ("running", "skipped"):
                code.append(cell.code)
        subs.extend(it.subcalls)
        children.extend(it.children)
        pending = feedback_message(outputs, _notes(it.reply))
    return ForkPoint(
        traj.run_id, step, root.query, root.context_info, messages, pending, code, subs, children, settings,
        next_said=said.get(step + 1, []),
    )


def _notes(reply: str) -> list[str]:
    """The loop's notes after a turn that did not end the run (mirrors ``RLMNode._loop``;
    ``tests/test_fork.py`` checks the rebuilt messages against what the root LM received)."""
    parsed = parse_reply(reply)
    final = parsed.final
    notes = []
    if final is not None and final.kind == "FINAL_VAR":
        notes.append(
            f"FINAL_VAR({final.value}) failed: there is no REPL variable named {final.value!r}, "
            "or its value could not be read."
        )
    elif final is not None and not final.value.strip():
        notes.append("Your FINAL(...) was empty (cut off?). Give the answer inside FINAL(...).")
    elif final is not None and parsed.code_blocks:
        notes.append(
            "Your FINAL(...) was ignored: it came in the same reply as code whose output you had not "
            "seen. Check the output above, then answer."
        )
    if not parsed.code_blocks and final is None:
        notes.append(NO_CODE_MESSAGE)
    return notes
