"""The REPL environment over the Jupyter messaging protocol: what a local and a remote kernel share.

:class:`JupyterREPL` drives a kernel through a jupyter_client kernel client (``self.kc``) and
kernel manager (``self.km``): the execute/IOPub loop with the per-block timeout (interrupt,
then restart), death and auto-restart detection, the kernel's report on each cell, variable
lookup, and restart (bootstrap again, reload ``context``). It is composed with a context
transfer (:mod:`.transfer`) and a helper bootstrap (:mod:`.bootstrap`); a backend
(:class:`~.kernel.KernelREPL`, :class:`~.gateway.GatewayREPL`) starts and stops the kernel
and overrides the hooks ``_alive``, ``_wait_ready``, ``_exit_reason``, ``_after_restart``.

Why not jupyter_client's ``execute_interactive`` (or nbclient's ``async_execute_cell``): its
timeout is one deadline that raises ``TimeoutError`` and abandons the request, with no
interrupt-then-grace step, no check that the kernel process is alive while IOPub is quiet, and
no handling of a manager's own restart (a gateway says ``status: restarting`` on IOPub); nbclient
needs a notebook cell and raises on a dead kernel. Those are the cases this loop exists for.
"""

from __future__ import annotations

import ast
import json
import logging
import queue
import time
from typing import Any

from ..core.protocols import ExecResult, SubcallHandler
from .bootstrap import bootstrap_code
from .outputs import MAX_OUTPUT_CHARS, add_output, dropped_note, outputs_to_text, warm_up

log = logging.getLogger("rlm_jupyter.environment")

INTERRUPT_GRACE_SECONDS = 5.0
REPORT_EXPRESSION = "_rlm_ks.take_report()"  # the kernel's report on the last cell (kernel_side)
DROPPED_ANSWER_NOTE = (
    "FINAL/FINAL_VAR was called but the block raised an error afterwards, so the answer was not taken; "
    "fix the error and call FINAL again."
)


class EnvironmentError_(RuntimeError):
    """The environment kernel could not be started or stopped responding for good."""


class JupyterREPL:
    """A persistent Python REPL in a Jupyter kernel (implements ``REPLEnvironment``); the base
    of the kernel backends. See the module docstring.

    Args:
        transfer: a :mod:`.transfer` object (``FileTransfer``/``ChunkTransfer``).
        loader: a :mod:`.bootstrap` object (``ImportBootstrap``/``SourceBootstrap``).
        timeout: default per-block timeout in seconds.
        startup_timeout: seconds to wait for the kernel to answer ``kernel_info``.
        max_output_chars: per cell and stream, kept by the kernel (``None`` = no cap).

    Attributes:
        restarts: how many times the kernel was restarted.
        load_seconds: time of the last context load.
        tools: ``[name, doc]`` pairs of the run's host tools, bound at each bootstrap (set by
            :func:`.tools_side.attach`).
    """

    def __init__(self, transfer, loader, timeout: float = 120.0, startup_timeout: float = 60.0,
                 max_output_chars: int | None = MAX_OUTPUT_CHARS) -> None:
        self.transfer = transfer
        self.loader = loader
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.max_output_chars = max_output_chars
        self.km = None
        self.kc = None
        self.server = None
        self._context: Any = None
        self._has_context = False
        self.restarts = 0
        self.load_seconds: float | None = None
        warm_up()

    @property
    def interrupt_grace(self) -> float:
        """Seconds an interrupted block gets to stop before the kernel is restarted."""
        return INTERRUPT_GRACE_SECONDS

    # -- hooks of a backend -----------------------------------------------------------
    async def start(self, handler: SubcallHandler) -> None:
        raise NotImplementedError

    async def shutdown(self) -> None:
        raise NotImplementedError

    async def _alive(self) -> bool:
        """Whether the kernel process is alive (its manager's view)."""
        return await self.km.is_alive()

    async def _wait_ready(self) -> None:
        """Until the kernel answers kernel_info (``startup_timeout`` seconds at most)."""
        await self.kc.wait_for_ready(timeout=self.startup_timeout)

    def _exit_reason(self) -> str:
        """How the kernel ended, in words for the model and the user."""
        return "for example os._exit, a crash, or running out of memory"

    def _bootstrap_extra(self) -> str:
        """Backend-specific lines of the bootstrap cell (after ``install``)."""
        return ""

    async def _after_restart(self) -> None:
        """Clean-up after the kernel restarted, before the bootstrap (e.g. orphan processes)."""

    # -- shared ----------------------------------------------------------------------
    async def _bootstrap(self) -> None:
        code = bootstrap_code(self.loader, self.server.path, self.server.token, self.max_output_chars,
                              getattr(self, "tools", None), self._bootstrap_extra())
        reply = await self._silent(code)
        if reply.get("status") != "ok":
            raise EnvironmentError_(f"REPL bootstrap failed: {reply.get('ename')}: {reply.get('evalue')}")

    async def _silent(self, code: str, user_expressions: dict | None = None, timeout: float = 60.0) -> dict:
        """Run code silently (no outputs, no history); returns the execute_reply content.

        Raises:
            EnvironmentError_: the kernel died or did not answer within ``timeout`` seconds.
        """
        msg_id = self.kc.execute(code, silent=True, store_history=False, user_expressions=user_expressions or {})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = await self._shell_reply(msg_id, min(1.0, deadline - time.monotonic()))
            if reply:
                return reply
            if not await self._alive():
                raise EnvironmentError_("the REPL environment kernel died")
        raise EnvironmentError_("the REPL environment kernel did not answer")

    async def load_context(self, context: Any) -> float:
        """Make ``context`` the kernel's ``context`` variable; returns seconds taken.

        Raises:
            ContextError: the value cannot be pickled, or the kernel could not load it (e.g. a
                pickled class whose module the kernel cannot import).
        """
        t0 = time.monotonic()
        self._context = context
        self._has_context = True
        await self.transfer.load(self._silent, context)
        self.load_seconds = time.monotonic() - t0
        return self.load_seconds

    async def interrupt(self) -> None:
        """Interrupt the running block (SIGINT, or the kernel's interrupt request)."""
        if self.km is not None:
            await self.km.interrupt_kernel()

    async def restart(self, already_restarted: bool = False, reason: str = "requested") -> None:
        """Restart the kernel (unless its manager ``already_restarted`` it), re-install the
        helpers and reload ``context``; ``reason`` is logged."""
        self.restarts += 1
        log.info("restarting the REPL environment kernel (%s; restart %d)", reason, self.restarts)
        if not already_restarted:
            await self.km.restart_kernel(now=True)
        await self._after_restart()
        await self._wait_ready()
        await self._bootstrap()
        if self._has_context:
            await self.transfer.load(self._silent, self._context)

    async def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run ``code`` as one cell; returns its outputs and status.

        A block still running after ``timeout`` seconds is interrupted (SIGINT); if the kernel
        does not come back within a few seconds it is restarted and ``context`` reloaded. A
        kernel that dies is restarted the same way. Either way the result says so in
        ``notice`` and the run goes on.
        """
        timeout = self.timeout if timeout is None else timeout
        t0 = time.monotonic()
        msg_id = self.kc.execute(code, silent=False, store_history=True, allow_stdin=False,
                                 user_expressions={"report": REPORT_EXPRESSION})
        outputs: list[dict] = []
        state = {"idle": False}
        deadline = t0 + timeout
        interrupted = False
        while not state["idle"]:
            now = time.monotonic()
            if now >= deadline:
                if not interrupted:
                    interrupted = True
                    await self.km.interrupt_kernel()
                    deadline = now + self.interrupt_grace
                    continue
                await self.restart(reason=f"a block ran past its {timeout:g} s timeout and ignored the interrupt")
                return self._lost(outputs, "timeout", t0, (
                    f"The code ran longer than {timeout:g} s and did not stop when interrupted, so the REPL "
                    "environment was restarted: `context` was reloaded, other variables were lost."
                ))
            try:
                msg = await self.kc.get_iopub_msg(timeout=min(deadline - now, 0.5))
            except queue.Empty:
                msg = None
            # a kernel whose manager restarts it by itself (a gateway) announces it on IOPub
            auto_restarted = msg is not None and msg["header"]["msg_type"] == "status" and (
                msg["content"].get("execution_state") in ("restarting", "dead")
            )
            if auto_restarted or (msg is None and not await self._alive()):
                how = "its manager restarted it" if auto_restarted else self._exit_reason()
                await self.restart(already_restarted=auto_restarted, reason=f"the kernel died: {how}")
                return self._lost(outputs, "died", t0, (
                    f"The REPL environment kernel died while running this code ({how}). "
                    "It was restarted: `context` was reloaded, other variables were lost."
                ))
            if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
                add_output(msg, outputs, state)
        if state.get("dropped"):
            outputs.append(dropped_note(state["dropped"]))
        reply = await self._shell_reply(msg_id, self.interrupt_grace)
        status = "ok" if reply.get("status") == "ok" else "error"
        notes = []
        if interrupted:
            status = "timeout"
            notes.append(f"The code ran longer than {timeout:g} s and was interrupted (KeyboardInterrupt).")
        report = await self._cell_report(reply)
        notes += _report_notes(report)
        return ExecResult(outputs, outputs_to_text(outputs), status, time.monotonic() - t0,
                          execution_count=reply.get("execution_count"), answer=report.get("answer"),
                          notice=" ".join(notes) or None)

    async def _cell_report(self, reply: dict) -> dict:
        """The kernel's report on the cell just run (answer, restored helpers, ``context``
        check; see ``kernel_side._after_cell``). ipykernel evaluates ``user_expressions`` only
        when the cell succeeded: otherwise a silent follow-up request fetches the report."""
        expr = (reply.get("user_expressions") or {}).get("report") or {}
        if expr.get("status") != "ok":
            try:
                follow = await self._silent("", user_expressions={"report": REPORT_EXPRESSION}, timeout=self.interrupt_grace)
            except EnvironmentError_:
                return {}
            expr = (follow.get("user_expressions") or {}).get("report") or {}
        if expr.get("status") != "ok":
            return {}
        try:
            report = _literal_json(expr["data"].get("text/plain"))
        except (ValueError, SyntaxError, KeyError, TypeError):
            return {}
        return report if isinstance(report, dict) else {}

    @staticmethod
    def _lost(outputs: list[dict], status: str, t0: float, notice: str) -> ExecResult:
        return ExecResult(outputs, outputs_to_text(outputs), status, time.monotonic() - t0, notice=notice)

    async def _shell_reply(self, msg_id: str, timeout: float) -> dict:
        """The execute_reply content for ``msg_id`` (skipping stale replies); {} on timeout."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                reply = await self.kc.get_shell_msg(timeout=remaining)
            except queue.Empty:
                break
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]
        return {}

    async def variable_text(self, name: str) -> str | None:
        """``str`` of REPL variable ``name`` (looked up by name, never evaluated), or ``None``.

        ``None`` too when turning it into text fails, hangs past the block timeout (the
        kernel is interrupted, or restarted) or kills the kernel (it is restarted): a
        hostile ``__str__`` cannot stall or end the run.
        """
        try:
            reply = await self._silent("", user_expressions={"v": f"_rlm_ks.value_text({name!r})"}, timeout=self.timeout)
        except EnvironmentError_:
            if await self._alive():
                await self.km.interrupt_kernel()
                try:
                    await self._silent("", timeout=self.interrupt_grace)
                    return None  # interrupted: the kernel and its variables are kept
                except EnvironmentError_:
                    pass
            await self.restart(reason=f"str() of variable {name!r} hung or killed the kernel")
            return None
        v = (reply.get("user_expressions") or {}).get("v", {})
        if v.get("status") != "ok":
            return None
        found, text = _literal_json(v["data"].get("text/plain"))
        return text if found else None


def _report_notes(report: dict) -> list[str]:
    """Notes for the model from the kernel's cell report (dropped answer, repaired helpers,
    a deleted or rebound ``context``)."""
    notes = []
    if report.get("dropped"):
        notes.append(DROPPED_ANSWER_NOTE)
    if report.get("fixed"):
        notes.append(f"Your code deleted or replaced {', '.join(report['fixed'])}; the REPL's versions were restored.")
    ctx = report.get("ctx")
    if ctx == "deleted":
        notes.append("Your code deleted `context`; it was restored to the original input.")
    elif isinstance(ctx, str) and ctx.startswith("rebound:"):
        notes.append(
            f"Note: `context` now holds a {ctx.split(':', 1)[1]} your code assigned, not the original "
            "input; `del context` brings the original back."
        )
    return notes


def _literal_json(text: str | None) -> Any:
    """Decode a user-expression result: the repr of a JSON string, parsed without eval."""
    if text is None:
        return None
    return json.loads(ast.literal_eval(text))
