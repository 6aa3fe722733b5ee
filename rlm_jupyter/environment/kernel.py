"""The local REPL environment: a dedicated ipykernel child process driven with jupyter_client.

Never the user's own kernel: whatever the model's code does (loop, exit, crash), the user's
kernel and its variables are untouched. The kernel is started from a private kernelspec
(``sys.executable -m ipykernel_launcher``) with an environment stripped of provider
credentials (:mod:`.credentials`), gets ``context`` from a private temporary file
(:class:`~.transfer.FileTransfer`, never through the code string), imports its helpers from
this package (:class:`~.bootstrap.ImportBootstrap`), and reaches the parent's LM only through
the sub-call channel (:mod:`.channel`). Execution, restarts and the cell report are shared with
the gateway backend (:mod:`.jupyter_repl`).

Confinement (:mod:`.launch`, :mod:`.sandbox`, :mod:`.supervisor`): on Linux the kernel runs
inside bubblewrap when it works, else in util-linux ``unshare`` namespaces with the same file
system (read-only system, private work dir and /tmp, no network, own PID namespace, cleared
environment, no capabilities or an unprivileged uid), else as a plain process with a
:class:`~.sandbox.SandboxWarning`; always with rlimits on memory, CPU time and processes, never
as a child of the user's process (a supervisor sits between them) and never writing to the
parent's stdout/stderr. ``sandbox_mode`` says which mode ran. A remote kernel (Jupyter
Kernel/Enterprise Gateway) is :mod:`.gateway`.

Outputs are the kernel's real Jupyter messages (``stream``, ``display_data``,
``execute_result``, ``error`` on the IOPub channel, Jupyter messaging protocol 5.x), stored
as nbformat v4 output dicts (:mod:`.outputs`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import subprocess
import sys

from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager

from ..core.protocols import SubcallHandler
from . import launch
from . import sandbox as sb
from .bootstrap import ImportBootstrap
from .channel import SubcallServer
from .credentials import SECRET_ENV_PATTERNS, kernel_env  # noqa: F401 - SECRET_ENV_PATTERNS re-exported
from .jupyter_repl import EnvironmentError_, JupyterREPL
from .outputs import MAX_OUTPUT_CHARS, outputs_to_text, strip_ansi  # noqa: F401 - the last two re-exported
from .transfer import FileTransfer, prepare_context  # noqa: F401 - prepare_context re-exported
from .workdir import make_dirs, sweep_stale_workdirs

log = logging.getLogger("rlm_jupyter.environment")

INTERRUPT_GRACE_SECONDS = 5.0  # see JupyterREPL.interrupt_grace; module-level so that tests can shorten it
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class KernelREPL(JupyterREPL):
    """A persistent Python REPL in a dedicated local ipykernel (implements ``REPLEnvironment``).

    Args:
        timeout: default per-block timeout in seconds (interrupt, then restart if needed).
        startup_timeout: seconds to wait for the kernel to answer ``kernel_info``.
        python: interpreter of the kernel (default: this one, so it imports rlm_jupyter).
        extra_env: variables added to the kernel's (credential-free) environment.
        sandbox: ``None`` (default) = bubblewrap if it works, else ``unshare`` namespaces,
            else a plain process with a :class:`~.sandbox.SandboxWarning`; ``True`` = one of
            the two sandboxes or :meth:`start` fails (:class:`EnvironmentError_` with the
            reasons); ``False`` = plain (see :mod:`.launch`, also ``RLM_JUPYTER_SANDBOX_MODE``).
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
        sandbox_mode: ``"bwrap"``, ``"unshare"`` or ``"plain"`` (``None`` before :meth:`start`);
            sandboxed: whether it is one of the first two; sandbox_reason: why (not).
        workdir: the only directory the kernel may write; owner_file: the ownership record
            that :func:`~.workdir.sweep_stale_workdirs` trusts, outside ``workdir``.
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
        self.python = python or sys.executable
        self.extra_env = dict(extra_env or {})
        self.sandbox = sandbox
        if memory_limit_mb == "auto":
            memory_limit_mb = sb.default_memory_limit_mb()
        self.limits = sb.Limits(memory_limit_mb, cpu_seconds, max_processes)
        self.sandbox_paths = list(sandbox_paths or [])
        self.env_id = secrets.token_hex(8)
        self.sandboxed = False
        self.sandbox_mode: str | None = None
        self.sandbox_reason = "not started"
        if run_as == "auto":
            run_as = sb.private_uid()
        self.run_as = run_as if (run_as is not None and os.geteuid() == 0) else None
        swept = sweep_stale_workdirs()
        if swept:
            log.info("removed %d stale REPL environment work dir(s) of dead processes", swept)
        self.basedir, self.workdir, self.owner_file = make_dirs(self.env_id)
        self.connection_file = os.path.join(self.workdir, "kernel.json")
        self.lifeline: launch.Lifeline | None = None
        super().__init__(FileTransfer(self.workdir, give=self._give), ImportBootstrap(),
                         timeout=timeout, startup_timeout=startup_timeout, max_output_chars=max_output_chars)

    @property
    def interrupt_grace(self) -> float:
        return INTERRUPT_GRACE_SECONDS

    # -- life cycle -------------------------------------------------------------------
    def _give(self, path: str) -> None:
        """Hand a private file or dir to the sandbox's uid (when the kernel drops root)."""
        if self.sandboxed and self.run_as is not None:
            os.chown(path, self.run_as, self.run_as)

    def _kernelspec_manager(self) -> KernelSpecManager:
        """A private kernelspec (in the parent-only dir) whose argv starts the kernel in
        ``self.sandbox_mode`` (see :mod:`.launch`)."""
        argv = launch.kernel_argv(
            self.sandbox_mode, self.python, self.connection_file, self.limits, self._env(), self.workdir, self.basedir,
            PACKAGE_DIR, self.sandbox_paths, run_as=self.run_as if self.sandboxed else None, env_id=self.env_id,
            lifeline_fd=self.lifeline.read_fd,
        )
        return launch.write_kernelspec(self.basedir, argv)

    def _env(self) -> dict[str, str]:
        """The kernel's environment: in the sandbox only what is set here; unsandboxed the
        parent's environment without credentials."""
        home = os.path.join(self.workdir, "home")
        ipdir = os.path.join(self.workdir, "ipython")
        for d in (home, ipdir):
            os.makedirs(d, exist_ok=True)
            self._give(d)
        if self.sandboxed:
            env = launch.sandbox_env(self.python, home)
        else:
            env = kernel_env()
            # ipykernel does not capture fd-level output when it believes it runs under pytest
            env.pop("PYTEST_CURRENT_TEST", None)
        env["IPYTHONDIR"] = ipdir
        env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
        env["RLM_ENV_ID"] = self.env_id
        env.update(self.extra_env)
        return env

    async def start(self, handler: SubcallHandler) -> None:
        """Start the sub-call server and the kernel, and install the REPL helpers.

        Raises:
            EnvironmentError_: the kernel did not become ready within ``startup_timeout``, or
                ``sandbox=True`` (or ``RLM_JUPYTER_SANDBOX_MODE=bwrap|unshare``) and no such
                sandbox works here.
        """
        try:
            mode, self.sandbox_reason = await asyncio.to_thread(launch.resolve_mode, self.sandbox, self.python, PACKAGE_DIR)
        except sb.SandboxUnavailable as exc:
            self.sandbox_reason = str(exc)
            await self.shutdown()
            raise EnvironmentError_(str(exc)) from None
        self.sandbox_mode, self.sandboxed = mode, mode != "plain"
        log.info("sandbox mode %s (%s)", mode, self.sandbox_reason)
        self.lifeline = launch.Lifeline()
        self._give(self.workdir)
        self.server = SubcallServer(handler, directory=self.workdir)
        await self.server.start()
        self._give(self.server.path)
        self.km = AsyncKernelManager(
            kernel_name="rlm-env",
            kernel_spec_manager=self._kernelspec_manager(),
            connection_file=self.connection_file,
            transport="ipc",
            ip=os.path.join(self.workdir, "k"),
        )
        self.km.write_connection_file()  # kept across restarts; readable by the sandbox's uid
        self._give(self.km.connection_file)
        launch_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")} if self.sandboxed else self._env()
        # fd-level output never reaches our stdout/stderr: ipykernel captures fds 1 and 2 into
        # its (capped) streams and echoes them to these, i.e. to /dev/null
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        if mode != "bwrap":
            quiet["pass_fds"] = (self.lifeline.read_fd,)
        try:
            await self.km.start_kernel(env=launch_env, cwd=self.workdir, **quiet)
            self.kc = self.km.client()
            self.kc.start_channels()
            await self._wait_ready()
        except (RuntimeError, OSError) as exc:
            await self.shutdown()
            raise EnvironmentError_(f"the REPL environment kernel did not start: {exc}") from None
        log.info("REPL environment kernel started (env %s, %s, work dir %s)", self.env_id, mode, self.workdir)
        await self._bootstrap()

    def _bootstrap_extra(self) -> str:
        if self.sandbox_mode != "plain":
            return ""
        # a sandbox dies with its parent (PID namespace); a plain kernel's forks need a
        # watchdog for when the supervisor is killed (Linux also has PR_SET_PDEATHSIG)
        return f"_rlm_ks.watch_parent({'RLM_ENV_ID=' + self.env_id!r})\n"

    async def _after_restart(self) -> None:
        if self.sandbox_mode == "plain":  # in a sandbox, the PID namespace died with the kernel
            await self._sweep_processes(spare=getattr(self.km.provisioner, "pid", None))

    async def _sweep_processes(self, spare: int | None = None) -> None:
        """Kill processes the kernel left behind (they carry this environment's marker), except
        the process ``spare`` and its descendants (the kernel just restarted)."""
        await asyncio.to_thread(sb.kill_marked_processes, f"RLM_ENV_ID={self.env_id}", spare=spare)

    def _exit_reason(self) -> str:
        """How the kernel process ended (crash diagnosis from its exit status, :func:`.launch.exit_reason`)."""
        proc = getattr(getattr(self.km, "provisioner", None), "process", None)
        return launch.exit_reason(proc.poll() if proc is not None else None, self.limits.cpu_seconds)

    async def shutdown(self) -> None:
        """Stop the kernel and the sub-call server and remove the private files. Idempotent."""
        try:
            if self.kc is not None:
                self.kc.stop_channels()
            if self.km is not None and self.km.has_kernel:
                await self.km.shutdown_kernel(now=True)
        finally:
            await self._sweep_processes()
            self.kc = None
            self.km = None
            if self.server is not None:
                await self.server.close()
                self.server = None
            if self.lifeline is not None:
                self.lifeline.close()
                self.lifeline = None
            shutil.rmtree(self.basedir, ignore_errors=True)
