"""The REPL environment: a dedicated ipykernel child process driven with jupyter_client.

Never the user's own kernel: whatever the model's code does (loop, exit, crash), the user's
kernel and its variables are untouched. The kernel is started from a private kernelspec
(``sys.executable -m ipykernel_launcher``) with an environment stripped of provider
credentials, gets ``context`` from a private temporary file (never through the code string),
and reaches the parent's LM only through the sub-call channel (:mod:`.channel`).

Confinement (:mod:`.sandbox`): on Linux the kernel runs inside bubblewrap when it is
installed and works (read-only system, private work dir and /tmp, no network, own PID
namespace, cleared environment, unprivileged uid when the parent is root), with rlimits on
memory, CPU time and processes; otherwise a plain child process (with the same rlimits and
a :class:`~.sandbox.SandboxWarning`). A remote kernel (Jupyter Kernel/Enterprise Gateway) is
documented as an option in :mod:`.sandbox`.

Outputs are the kernel's real Jupyter messages (``stream``, ``display_data``,
``execute_result``, ``error`` on the IOPub channel, Jupyter messaging protocol 5.x), stored
as nbformat v4 output dicts.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import queue
import re
import shutil
import sys
import tempfile
import time
from typing import Any

import nbformat
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager

from ..core.context import ContextError
from ..core.protocols import ExecResult, SubcallHandler
from . import sandbox as sb
from .channel import SubcallServer

# Environment variables never passed to the kernel (credentials of providers and clouds).
SECRET_ENV_PATTERNS = [
    r".*_API_KEY$",
    r".*_API_KEYS$",
    r".*_KEY$",
    r".*_TOKEN$",
    r".*_SECRET.*",
    r".*PASSWORD.*",
    r"^AWS_.*",
    r"^AZURE_.*",
    r"^GOOGLE_APPLICATION_CREDENTIALS$",
    r"^VERTEX.*",
    r"^OPENAI.*",
    r"^ANTHROPIC.*",
    r"^GEMINI.*",
    r"^HF_TOKEN$",
    r"^HUGGING.*TOKEN.*",
    r"^LITELLM_.*",
    r"^JPY_.*",
]
_SECRET_RE = re.compile("|".join(SECRET_ENV_PATTERNS), re.IGNORECASE)
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

INTERRUPT_GRACE_SECONDS = 5.0
MAX_OUTPUT_CHARS = 1_000_000  # per cell and stream, kept by the kernel (head + tail)
PARENT_OUTPUT_CHARS = 4 * MAX_OUTPUT_CHARS  # the parent's own cap per cell (all outputs)
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class EnvironmentError_(RuntimeError):
    """The environment kernel could not be started or stopped responding for good."""


def kernel_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) without provider credentials."""
    base = dict(os.environ if base is None else base)
    return {k: v for k, v in base.items() if not _SECRET_RE.match(k)}


def strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


def outputs_to_text(outputs: list[dict]) -> str:
    """Plain text of nbformat outputs, as the root LM sees them.

    ``stream`` text as is; ``execute_result``/``display_data`` their ``text/plain`` (with a
    note for images and HTML without text); ``error`` its traceback without ANSI colours.
    """
    parts: list[str] = []
    for out in outputs:
        ot = out.get("output_type")
        if ot == "stream":
            parts.append(out.get("text", ""))
        elif ot in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "text/plain" in data:
                text = data["text/plain"]
                parts.append((text if isinstance(text, str) else "".join(text)) + "\n")
            others = [k for k in data if k != "text/plain"]
            if any(k.startswith("image/") for k in others):
                parts.append(f"[{', '.join(k for k in others if k.startswith('image/'))} output shown to the user]\n")
        elif ot == "error":
            tb = out.get("traceback") or [f"{out.get('ename')}: {out.get('evalue')}"]
            parts.append(strip_ansi("\n".join(tb)) + "\n")
    return "".join(parts)


def sweep_stale_workdirs(directory: str | None = None) -> int:
    """Remove work dirs (and kill the leftover processes) of environments whose parent
    process died without cleaning up (e.g. a notebook kernel restarted mid-run)."""
    directory = directory or tempfile.gettempdir()
    removed = 0
    try:
        names = [n for n in os.listdir(directory) if n.startswith("rlm-env-")]
    except OSError:
        return 0
    for name in names:
        path = os.path.join(directory, name)
        try:
            if os.stat(os.path.join(path, "owner.json")).st_uid != os.geteuid():
                continue
            with open(os.path.join(path, "owner.json")) as f:
                owner = json.load(f)
            os.kill(int(owner["pid"]), 0)
            continue  # its owner is alive
        except ProcessLookupError:
            pass
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if sys.platform.startswith("linux") and owner.get("env_id"):
            sb.kill_marked_processes(f"RLM_ENV_ID={owner['env_id']}")
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


CONTEXT_WRITE_CHARS = 8_000_000


def prepare_context(context: Any, directory: str) -> tuple[str, str]:
    """Write ``context`` to a private file in ``directory``; returns ``(path, kind)``.

    ``str`` is written as UTF-8 text, ``bytes`` raw, anything else pickled (protocol 5) in
    the parent. Nothing is ever unpickled from the kernel.

    Raises:
        ContextError: the value cannot be pickled.
    """
    fd, path = tempfile.mkstemp(prefix="context-", dir=directory)
    with os.fdopen(fd, "wb") as f:
        if isinstance(context, str):
            # encode in slices: a 400 MB string would otherwise need a second 400 MB in the parent
            for i in range(0, len(context), CONTEXT_WRITE_CHARS):
                f.write(context[i : i + CONTEXT_WRITE_CHARS].encode("utf-8", errors="surrogatepass"))
            return path, "text"
        if isinstance(context, (bytes, bytearray, memoryview)):
            f.write(bytes(context))
            return path, "bytes"
        try:
            pickle.dump(context, f, protocol=5)
        except Exception as exc:
            raise ContextError(
                f"the context ({type(context).__name__}) cannot be pickled to send it to the REPL environment: "
                f"{type(exc).__name__}: {exc}. Convert it to a str, list or dict first."
            ) from None
    return path, "pickle"


class KernelREPL:
    """A persistent Python REPL in a dedicated ipykernel (implements ``REPLEnvironment``).

    Args:
        timeout: default per-block timeout in seconds (interrupt, then restart if needed).
        startup_timeout: seconds to wait for the kernel to answer ``kernel_info``.
        python: interpreter of the kernel (default: this one, so it imports rlm_jupyter).
        extra_env: variables added to the kernel's (credential-free) environment.
        sandbox: ``None`` (default) = bubblewrap if installed and working, else a plain
            child process with a :class:`~.sandbox.SandboxWarning`; ``True`` = bubblewrap or
            :meth:`start` fails (:class:`EnvironmentError_` with the reason); ``False`` = never.
        memory_limit_mb: address-space limit of the kernel in MiB (``"auto"`` = half the
            RAM, at least 2 GiB; ``None`` = none). Allocations beyond it raise MemoryError.
        cpu_seconds: CPU-time limit of the kernel process's life (``None`` = none); the
            kernel is killed (and restarted) when it is reached.
        max_processes: processes + threads the kernel may have (``None`` = none). Enforced
            for a root parent only in the sandbox (where the kernel runs as ``run_as``).
        run_as: uid the sandboxed kernel drops to when the parent is root (``"auto"``, the
            default: a random private uid, so that its process limit is its own; or an int,
            e.g. 65534 for ``nobody``); ``None`` keeps root.
        sandbox_paths: more paths to bind read-only into the sandbox (data, packages).
        max_output_chars: what one cell may print per stream; the rest is dropped in the
            kernel (the head and the tail are kept, with a marker).

    Attributes:
        restarts: how many times the kernel was restarted.
        load_seconds: time of the last context load (write + read in the kernel).
        sandboxed: whether the kernel runs in bubblewrap; sandbox_reason: why (not).
        env_id: a random marker in the kernel's environment (``RLM_ENV_ID``), used to find
            and kill processes the model's code left behind.
    """

    def __init__(
        self,
        timeout: float = 120.0,
        startup_timeout: float = 60.0,
        python: str | None = None,
        extra_env: dict[str, str] | None = None,
        sandbox: bool | None = None,
        memory_limit_mb: int | str | None = "auto",
        cpu_seconds: int | None = None,
        max_processes: int | None = 512,
        run_as: int | str | None = "auto",
        sandbox_paths: list[str] | None = None,
        max_output_chars: int | None = MAX_OUTPUT_CHARS,
    ) -> None:
        import secrets

        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.python = python or sys.executable
        self.extra_env = dict(extra_env or {})
        self.sandbox = sandbox
        if memory_limit_mb == "auto":
            memory_limit_mb = sb.default_memory_limit_mb()
        self.limits = sb.Limits(memory_limit_mb, cpu_seconds, max_processes)
        self.sandbox_paths = list(sandbox_paths or [])
        self.max_output_chars = max_output_chars
        self.env_id = secrets.token_hex(8)
        self.sandboxed = False
        self.sandbox_reason = "not started"
        if run_as == "auto":
            run_as = sb.private_uid()
        self.run_as = run_as if (run_as is not None and os.geteuid() == 0) else None
        sweep_stale_workdirs()
        self.workdir = tempfile.mkdtemp(prefix="rlm-env-")
        os.chmod(self.workdir, 0o700)
        with open(os.path.join(self.workdir, "owner.json"), "w") as f:
            json.dump({"pid": os.getpid(), "env_id": self.env_id}, f)
        self.km: AsyncKernelManager | None = None
        self.kc = None
        self.server: SubcallServer | None = None
        self._context: Any = None
        self._has_context = False
        self.restarts = 0
        self.load_seconds: float | None = None

    # -- life cycle -------------------------------------------------------------------
    def _give(self, path: str) -> None:
        """Hand a private file or dir to the sandbox's uid (when the kernel drops root)."""
        if self.sandboxed and self.run_as is not None:
            os.chown(path, self.run_as, self.run_as)

    def _kernelspec_manager(self) -> KernelSpecManager:
        spec_dir = os.path.join(self.workdir, "kernels", "rlm-env")
        os.makedirs(spec_dir, exist_ok=True)
        kernel_cmd = [
            self.python,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            "--HistoryManager.enabled=False",
            "--InteractiveShellApp.exec_lines=[]",
        ]
        # No ipykernel parent polling (in the sandbox the parent is bwrap's PID 1; unsandboxed
        # kernel_side.watch_parent kills the kernel *and its forks* when we die); also no
        # console banner.
        if self.sandboxed or sys.platform.startswith("linux"):
            kernel_cmd.append("--IPKernelApp.parent_handle=1")
        run_as = self.run_as if self.sandboxed else None
        argv = sb.limits_argv(self.python, self.limits, kernel_cmd, run_as=run_as, per_user=not self.sandboxed)
        if self.sandboxed:
            drop_caps = os.geteuid() == 0 and self.run_as is None
            argv = sb.bwrap_argv(self.python, self.workdir, self._env(), PACKAGE_DIR, self.sandbox_paths, drop_caps=drop_caps) + argv
        spec = {
            "argv": argv,
            "display_name": "rlm_jupyter REPL environment",
            "language": "python",
            # SIGINT reaches bwrap, not the kernel: interrupt with a control message there.
            "interrupt_mode": "message" if self.sandboxed else "signal",
        }
        with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
            json.dump(spec, f)
        return KernelSpecManager(kernel_dirs=[os.path.join(self.workdir, "kernels")])

    def _env(self) -> dict[str, str]:
        """The kernel's environment: in the sandbox only what is set here; unsandboxed the
        parent's environment without credentials."""
        home = os.path.join(self.workdir, "home")
        ipdir = os.path.join(self.workdir, "ipython")
        for d in (home, ipdir):
            os.makedirs(d, exist_ok=True)
            self._give(d)
        if self.sandboxed:
            env = {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": home,
                "TMPDIR": "/tmp",
                "LANG": "C.UTF-8",
                "PYTHONNOUSERSITE": "1",
                "MPLBACKEND": "Agg",
                "MPLCONFIGDIR": os.path.join(home, ".matplotlib"),
                "XDG_CACHE_HOME": os.path.join(home, ".cache"),
                "USER": "rlm",
                "LOGNAME": "rlm",
            }
            py_dir = os.path.dirname(os.path.abspath(self.python))
            env["PATH"] = f"{py_dir}:{env['PATH']}"
        else:
            env = kernel_env()
        env["IPYTHONDIR"] = ipdir
        env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
        env["RLM_ENV_ID"] = self.env_id
        env.update(self.extra_env)
        return env

    async def start(self, handler: SubcallHandler) -> None:
        """Start the sub-call server and the kernel, and install the REPL helpers.

        Raises:
            EnvironmentError_: the kernel did not become ready within ``startup_timeout``, or
                ``sandbox=True`` and bubblewrap is missing or does not work.
        """
        try:
            use, self.sandbox_reason = await asyncio.to_thread(sb.resolve_sandbox, self.sandbox, self.python, PACKAGE_DIR)
        except sb.SandboxUnavailable as exc:
            self.sandbox_reason = str(exc)
            await self.shutdown()
            raise EnvironmentError_(str(exc)) from None
        self.sandboxed = use
        self._give(self.workdir)
        self.server = SubcallServer(handler, directory=self.workdir)
        await self.server.start()
        self._give(self.server.path)
        self.km = AsyncKernelManager(
            kernel_name="rlm-env",
            kernel_spec_manager=self._kernelspec_manager(),
            connection_file=os.path.join(self.workdir, "kernel.json"),
            transport="ipc",
            ip=os.path.join(self.workdir, "k"),
        )
        self.km.write_connection_file()  # kept across restarts; readable by the sandbox's uid
        self._give(self.km.connection_file)
        launch_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")} if self.sandboxed else self._env()
        try:
            await self.km.start_kernel(env=launch_env, cwd=self.workdir)
            self.kc = self.km.client()
            self.kc.start_channels()
            await self._wait_ready()
        except (RuntimeError, OSError) as exc:
            await self.shutdown()
            raise EnvironmentError_(f"the REPL environment kernel did not start: {exc}") from None
        await self._bootstrap()

    async def _alive(self) -> bool:
        """Whether the kernel process is alive (its manager's view)."""
        return await self.km.is_alive()

    async def _silent(self, code: str, user_expressions: dict | None = None, timeout: float = 60.0) -> dict:
        """Run code silently (no outputs, no history); returns the execute_reply content."""
        msg_id = self.kc.execute(code, silent=True, store_history=False, user_expressions=user_expressions or {})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = await self._shell_reply(msg_id, min(1.0, deadline - time.monotonic()))
            if reply:
                return reply
            if not await self._alive():
                raise EnvironmentError_("the REPL environment kernel died")
        raise EnvironmentError_("the REPL environment kernel did not answer")

    async def _bootstrap(self) -> None:
        pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        code = (
            "import sys as _rlm_sys\n"
            f"_rlm_sys.path.append({pkg_parent!r})\n"
            "from rlm_jupyter.environment import kernel_side as _rlm_ks\n"
            f"_rlm_ks.install(get_ipython(), {self.server.path!r}, {self.server.token!r}, {self.max_output_chars!r})\n"
            "del _rlm_sys\n"
        )
        if not self.sandboxed and sys.platform.startswith("linux"):
            # the sandbox dies with its parent (--die-with-parent, PID namespace); a plain
            # kernel and its forks need a watchdog
            code += f"_rlm_ks.watch_parent({'RLM_ENV_ID=' + self.env_id!r})\n"
        reply = await self._silent(code)
        if reply.get("status") != "ok":
            raise EnvironmentError_(f"REPL bootstrap failed: {reply.get('ename')}: {reply.get('evalue')}")

    async def load_context(self, context: Any) -> float:
        """Make ``context`` the kernel's ``context`` variable; returns seconds taken.

        Raises:
            ContextError: the value cannot be pickled, or the kernel could not load it (e.g. a
                pickled class whose module the kernel cannot import).
        """
        t0 = time.monotonic()
        self._context = context
        self._has_context = True
        await self._load_context_file()
        self.load_seconds = time.monotonic() - t0
        return self.load_seconds

    async def _load_context_file(self) -> None:
        """Write the context to a private file, have the kernel read it, delete the file (so
        that no copy of the user's data outlives the load, even if this process is killed)."""
        path, kind = await asyncio.to_thread(prepare_context, self._context, self.workdir)
        try:
            self._give(path)
            reply = await self._silent(f"_rlm_ks.load_context({path!r}, {kind!r})", timeout=600)
        finally:
            if os.path.exists(path):
                os.unlink(path)
        if reply.get("status") != "ok":
            raise ContextError(f"the REPL environment could not load the context: {reply.get('ename')}: {reply.get('evalue')}")

    async def restart(self, already_restarted: bool = False) -> None:
        """Restart the kernel (unless its manager ``already_restarted`` it), re-install the
        helpers and reload ``context``."""
        self.restarts += 1
        if not already_restarted:
            await self.km.restart_kernel(now=True)
        if not self.sandboxed:  # in the sandbox, the PID namespace died with the kernel
            await self._sweep_processes()
        await self._wait_ready()
        await self._bootstrap()
        if self._has_context:
            await self._load_context_file()

    # Hooks that a kernel elsewhere (environment/gateway.py) replaces.
    async def _wait_ready(self) -> None:
        """Until the kernel answers kernel_info (``startup_timeout`` seconds at most)."""
        await self.kc.wait_for_ready(timeout=self.startup_timeout)

    async def _sweep_processes(self) -> None:
        """Kill processes the kernel left behind (they carry this environment's marker)."""
        if sys.platform.startswith("linux"):
            await asyncio.to_thread(sb.kill_marked_processes, f"RLM_ENV_ID={self.env_id}")

    async def _stop_kernel(self) -> None:
        if self.km is not None and self.km.has_kernel:
            await self.km.shutdown_kernel(now=True)

    async def shutdown(self) -> None:
        """Stop the kernel and the sub-call server and remove the private files. Idempotent."""
        try:
            if self.kc is not None:
                self.kc.stop_channels()
            await self._stop_kernel()
        finally:
            await self._sweep_processes()
            self.kc = None
            self.km = None
            if self.server is not None:
                await self.server.close()
                self.server = None
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- execution ----------------------------------------------------------------------
    async def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run ``code`` as one cell; returns its outputs and status.

        A block still running after ``timeout`` seconds is interrupted (SIGINT); if the kernel
        does not come back within a few seconds it is restarted and ``context`` reloaded. A
        kernel that dies is restarted the same way. Either way the result says so in
        ``notice`` and the run goes on.
        """
        timeout = self.timeout if timeout is None else timeout
        t0 = time.monotonic()
        msg_id = self.kc.execute(
            code,
            silent=False,
            store_history=True,
            allow_stdin=False,
            user_expressions={
                "answer": "_rlm_ks.take_answer()",
                "fixed": "_rlm_ks.restore_helpers()",
                "ctx": "_rlm_ks.check_context()",
            },
        )
        outputs: list[dict] = []
        state = {"idle": False}
        deadline = t0 + timeout
        interrupted = False
        notice = None
        while not state["idle"]:
            now = time.monotonic()
            if now >= deadline:
                if not interrupted:
                    interrupted = True
                    await self.km.interrupt_kernel()
                    deadline = now + INTERRUPT_GRACE_SECONDS
                    continue
                await self.restart()
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
                await self.restart(already_restarted=auto_restarted)
                return self._lost(outputs, "died", t0, (
                    f"The REPL environment kernel died while running this code ({how}). "
                    "It was restarted: `context` was reloaded, other variables were lost."
                ))
            if msg is None:
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                self._add_output(msg, outputs, state)
        if state.get("dropped"):
            outputs.append(nbformat.v4.new_output(
                "stream", name="stderr",
                text=f"\n... [{state['dropped']:,} characters of output dropped: print less] ...\n",
            ))
        reply = await self._shell_reply(msg_id, INTERRUPT_GRACE_SECONDS)
        status = "ok" if reply.get("status") == "ok" else "error"
        if interrupted:
            status = "timeout"
            notice = f"The code ran longer than {timeout:g} s and was interrupted (KeyboardInterrupt)."
        answer = None
        ue = reply.get("user_expressions") or {}
        if ue.get("answer", {}).get("status") == "ok":
            answer = _literal_json(ue["answer"]["data"].get("text/plain"))
        if ue.get("fixed", {}).get("status") == "ok":
            fixed = _literal_json(ue["fixed"]["data"].get("text/plain")) or []
            if fixed:
                notice = (notice + " " if notice else "") + (
                    f"Your code deleted or replaced {', '.join(fixed)}; the REPL's versions were restored."
                )
        if ue.get("ctx", {}).get("status") == "ok":
            ctx = _literal_json(ue["ctx"]["data"].get("text/plain"))
            if ctx == "deleted":
                note = "Your code deleted `context`; it was restored to the original input."
            elif ctx and ctx.startswith("rebound:"):
                note = (
                    f"Note: `context` now holds a {ctx.split(':', 1)[1]} your code assigned, not the original "
                    "input; `del context` brings the original back."
                )
            else:
                note = None
            if note:
                notice = (notice + " " if notice else "") + note
        return ExecResult(
            outputs,
            outputs_to_text(outputs),
            status,
            time.monotonic() - t0,
            execution_count=reply.get("execution_count"),
            answer=answer,
            notice=notice,
        )

    def _exit_reason(self) -> str:
        """How the kernel process ended, in words for the model and the user."""
        proc = getattr(getattr(self.km, "provisioner", None), "process", None)
        rc = proc.poll() if proc is not None else None
        if rc is None:
            return "for example os._exit, a crash, or running out of memory"
        sig = -rc if rc < 0 else (rc - 128 if self.sandboxed and rc > 128 else None)  # bwrap: 128 + signal
        if sig:
            import signal

            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            why = {
                "SIGSEGV": "a segmentation fault",
                "SIGBUS": "a bus error",
                "SIGABRT": "an abort",
                "SIGKILL": "killed: out of memory, the CPU-time limit, or os.kill",
                "SIGXCPU": f"the CPU-time limit of {self.limits.cpu_seconds} s was reached",
                "SIGILL": "an illegal instruction",
                "SIGFPE": "a floating-point exception",
            }.get(name, "killed by a signal")
            return f"{name}: {why}"
        return f"the process exited with status {rc}, e.g. os._exit or sys.exit in a thread"

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

    @staticmethod
    def _add_output(msg: dict, outputs: list[dict], state: dict) -> None:
        mt = msg["header"]["msg_type"]
        content = msg["content"]
        if mt == "status":
            if content.get("execution_state") == "idle":
                state["idle"] = True
            return
        if mt == "clear_output":
            outputs.clear()
            return
        if mt not in ("stream", "display_data", "execute_result", "error"):
            return
        size = len(json.dumps(content.get("data") or content.get("text") or content.get("traceback") or ""))
        state["chars"] = state.get("chars", 0) + size
        if state["chars"] > PARENT_OUTPUT_CHARS and mt != "error":
            state["dropped"] = state.get("dropped", 0) + size
            return
        out = nbformat.v4.output_from_msg(msg)
        if mt == "stream" and outputs and outputs[-1].get("output_type") == "stream" and outputs[-1].get("name") == out.get("name"):
            outputs[-1]["text"] += out["text"]
            return
        outputs.append(out)

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
                    await self._silent("", timeout=INTERRUPT_GRACE_SECONDS)
                    return None  # interrupted: the kernel and its variables are kept
                except EnvironmentError_:
                    pass
            await self.restart()
            return None
        v = (reply.get("user_expressions") or {}).get("v", {})
        if v.get("status") != "ok":
            return None
        found, text = _literal_json(v["data"].get("text/plain"))
        return text if found else None


def _literal_json(text: str | None) -> Any:
    """Decode a user-expression result: the repr of a JSON string, parsed without eval."""
    import ast

    if text is None:
        return None
    return json.loads(ast.literal_eval(text))
