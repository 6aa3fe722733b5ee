"""How the environment kernel is launched: the confinement mode, its command line, its exit.

Modes, tried in this order when ``sandbox`` is automatic (:func:`resolve_mode`):

``bwrap``
    bubblewrap (:func:`.sandbox.bwrap_argv`), then the rlimit launcher, then the kernel.
``unshare``
    util-linux ``unshare`` (new user namespace for a non-root parent, PID, network, mount, IPC
    and UTS namespaces), then :mod:`.supervisor` as PID 1, which builds the same file system
    as bubblewrap from :func:`.sandbox.sandbox_plan`, drops every capability (or, for a root
    parent, switches to a private uid) and forks the kernel.
``plain``
    :mod:`.supervisor` alone (rlimits, signal filtering, clean-up when the user's process
    goes), with a :class:`~.sandbox.SandboxWarning`. Model code there runs as the user: it can
    read the user's files, signal the user's processes (it is not their child and gets no
    PID from ``os.getppid()``, but it can list processes), and use the network. Only provider
    credentials are kept out of its environment.

``RLM_JUPYTER_SANDBOX_MODE=bwrap|unshare|plain`` in the environment restricts the choice to
one mode (used by the fault suite and CI); a forced ``bwrap`` or ``unshare`` that does not work
is an error, like ``sandbox=True`` when neither works. On macOS only ``plain`` exists
(a ``sandbox-exec`` profile is not implemented: it could not be verified here).

In every mode the kernel's stdout/stderr are ``/dev/null``: whatever reaches file descriptors
1 and 2 is captured by ipykernel (``capture_fd_output``) into the kernel's capped streams and
never reaches the parent's terminal or server log.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings

from . import sandbox as sb

MODES = ("bwrap", "unshare", "plain")
MODE_ENV = "RLM_JUPYTER_SANDBOX_MODE"
SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "supervisor.py")
PLAIN_WARNING = (
    "The REPL environment kernel runs WITHOUT a sandbox ({why}): the model's code can read your files, "
    "signal your processes and use the network (API keys are still kept out of its environment). "
    "On Debian/Ubuntu: apt-get install bubblewrap."
)


def forced_mode() -> str | None:
    """The mode named by ``RLM_JUPYTER_SANDBOX_MODE`` (``None`` if unset).

    Raises:
        sandbox.SandboxUnavailable: the variable names no mode.
    """
    value = os.environ.get(MODE_ENV, "").strip().lower()
    if not value:
        return None
    if value not in MODES:
        raise sb.SandboxUnavailable(f"{MODE_ENV}={value!r} names no sandbox mode; use one of {', '.join(MODES)}")
    return value


def unshare_path() -> str | None:
    """util-linux ``unshare``, or ``None`` (not Linux, or not installed)."""
    return shutil.which("unshare") if sys.platform.startswith("linux") else None


def unshare_prefix(unshare: str) -> list[str]:
    """``unshare ...``: new PID/network/mount/IPC/UTS namespaces (+ a user namespace, mapped to
    root inside, for a non-root parent); the supervisor runs as PID 1 of the PID namespace."""
    args = [unshare]
    if os.geteuid() != 0:
        args += ["--user", "--map-root-user"]
    return args + ["--pid", "--fork", "--kill-child", "--net", "--mount", "--ipc", "--uts", "--propagation", "private"]


def supervisor_cmd(python: str, config_file: str) -> list[str]:
    return [python, "-S", "-I", SUPERVISOR, config_file]


def write_config(path: str, cfg: dict) -> str:
    """Write the supervisor's config (parent-only dir) and return its path."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f)
    return path


@functools.lru_cache(maxsize=8)
def _probe_unshare(unshare: str, python: str, package_dir: str) -> str | None:
    """Run a trivial command in the ``unshare`` sandbox; ``None`` if it works, else why not."""
    base = tempfile.mkdtemp(prefix="rlm-probe-")
    try:
        work, root = os.path.join(base, "work"), os.path.join(base, "root")
        os.makedirs(work)
        os.makedirs(root)
        cfg = {"cmd": [python, "-c", "import ipykernel, socket, os; open('probe', 'w').write('ok'); print('ok')"],
               "env": {"PATH": "/usr/bin:/bin", "HOME": work}, "plan": sb.sandbox_plan(python, work, package_dir),
               "root": root, "chdir": work, "drop_caps": True, "uid": -1}
        if os.geteuid() == 0:
            os.chown(work, sb.NOBODY, sb.NOBODY)
            cfg["uid"] = sb.NOBODY
        conf = write_config(os.path.join(base, "launch.json"), cfg)
        os.chmod(base, 0o755)
        return sb.run_probe(unshare_prefix(unshare) + supervisor_cmd(python, conf), cwd="/",
                            made=os.path.join(work, "probe"))
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _why_not(mode: str, python: str, package_dir: str) -> str | None:
    """``None`` if ``mode`` works here, else the reason."""
    if mode == "bwrap":
        bwrap = sb.bwrap_path()
        if bwrap is None:
            return "bubblewrap (bwrap) is not installed" if sys.platform.startswith("linux") else f"no bubblewrap on {sys.platform}"
        err = sb._probe(bwrap, python, package_dir)
        return None if err is None else f"bubblewrap does not work here: {err}"
    unshare = unshare_path()
    if unshare is None:
        return "util-linux unshare is not installed" if sys.platform.startswith("linux") else f"no unshare on {sys.platform}"
    err = _probe_unshare(unshare, python, package_dir)
    return None if err is None else f"unshare does not work here: {err}"


REASONS = {"bwrap": "bubblewrap", "unshare": "unshare (util-linux namespaces)"}


def resolve_mode(sandbox: bool | None, python: str, package_dir: str) -> tuple[str, str]:
    """Pick the confinement mode: ``(mode, reason)`` with mode ``bwrap``, ``unshare`` or ``plain``.

    ``sandbox=None`` (auto): bubblewrap, else ``unshare``, else plain with a
    :class:`~.sandbox.SandboxWarning` saying what the model's code can do. ``True``: one of the
    sandboxes or :class:`~.sandbox.SandboxUnavailable` with every reason. ``False``: plain,
    silently. ``RLM_JUPYTER_SANDBOX_MODE`` restricts the candidates (see the module doc).
    """
    if sandbox is False:
        return "plain", "sandbox disabled"
    forced = forced_mode()
    reasons = []
    for mode in ("bwrap", "unshare"):
        if forced not in (None, mode):
            continue
        why = _why_not(mode, python, package_dir)
        if why is None:
            return mode, REASONS[mode]
        reasons.append(why)
    why = "; ".join(reasons) if reasons else f"{MODE_ENV}=plain"
    if sandbox is True or forced in ("bwrap", "unshare"):
        raise sb.SandboxUnavailable(f"the sandbox was required but {why}. On Debian/Ubuntu: apt-get install bubblewrap.")
    if forced != "plain":
        warnings.warn(PLAIN_WARNING.format(why=why), sb.SandboxWarning, stacklevel=3)
    return "plain", why


def exit_reason(rc: int | None, cpu_seconds: int | None) -> str:
    """How the kernel ended, in words for the model and the user, from the exit status of the
    process jupyter_client started (the supervisor or bwrap: ``128 + signal`` when a signal
    killed the kernel; negative when the supervisor itself was killed)."""
    if rc is None:
        return "for example os._exit, a crash, or running out of memory"
    sig = -rc if rc < 0 else (rc - 128 if rc > 128 else None)
    if not sig:
        return f"the process exited with status {rc}, e.g. os._exit or sys.exit in a thread"
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    why = {
        "SIGSEGV": "a segmentation fault",
        "SIGBUS": "a bus error",
        "SIGABRT": "an abort",
        "SIGKILL": "killed: out of memory, the CPU-time limit, or os.kill",
        "SIGXCPU": f"the CPU-time limit of {cpu_seconds} s was reached",
        "SIGILL": "an illegal instruction",
        "SIGFPE": "a floating-point exception",
    }.get(name, "killed by a signal")
    return f"{name}: {why}"


def sandbox_env(python: str, home: str) -> dict[str, str]:
    """The whole environment of a sandboxed kernel (nothing of the parent's), before the
    variables every mode adds (IPYTHONDIR, RLM_ENV_ID, ``extra_env``)."""
    return {
        "PATH": f"{os.path.dirname(os.path.abspath(python))}:/usr/local/bin:/usr/bin:/bin",
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


def kernel_argv(
    mode: str,
    python: str,
    connection_file: str,
    limits: sb.Limits,
    env: dict[str, str],
    workdir: str,
    basedir: str,
    package_dir: str,
    ro_paths: list[str],
    run_as: int | None,
    env_id: str,
    lifeline_fd: int,
) -> list[str]:
    """The command line that starts ipykernel in ``mode`` (``bwrap``, ``unshare``, ``plain``).

    Args:
        env: the kernel's environment (used as is inside the sandboxes; in plain mode the
            kernel inherits the environment jupyter_client launches it with).
        basedir: the parent-only dir (the supervisor's config, the unshare mode's root).
        run_as: uid the sandboxed kernel switches to (root parent), or ``None``.
        env_id: the marker value (``RLM_ENV_ID``) of the kernel's processes.
        lifeline_fd: read end of :class:`Lifeline` (passed to the supervisor).
    """
    # No ipykernel parent polling (the parent is bwrap's PID 1 or the supervisor, which watch
    # the user's process themselves) and no console banner.
    kernel_cmd = [python, "-m", "ipykernel_launcher", "-f", connection_file, "--HistoryManager.enabled=False",
                  "--InteractiveShellApp.exec_lines=[]", "--IPKernelApp.parent_handle=1"]
    if mode == "bwrap":
        drop_caps = os.geteuid() == 0 and run_as is None
        return (sb.bwrap_argv(python, workdir, env, package_dir, ro_paths, drop_caps=drop_caps)
                + sb.limits_argv(python, limits, kernel_cmd, run_as=run_as))
    nproc = limits.max_processes or 0
    if nproc and mode == "plain" and os.geteuid() != 0:
        nproc += sb._user_task_count(os.geteuid())  # RLIMIT_NPROC counts all the user's tasks
    cfg = {"cmd": kernel_cmd, "mem": (limits.memory_limit_mb or 0) << 20, "cpu": limits.cpu_seconds or 0, "nproc": nproc,
           "uid": -1 if run_as is None else run_as, "lifeline": lifeline_fd, "marker": f"RLM_ENV_ID={env_id}",
           "env": None, "plan": None}
    prefix = []
    if mode == "unshare":
        root = os.path.join(basedir, "root")
        os.makedirs(root, exist_ok=True)
        cfg.update(env=env, plan=sb.sandbox_plan(python, workdir, package_dir, ro_paths), root=root, chdir=workdir,
                   drop_caps=True)
        prefix = unshare_prefix(unshare_path() or "unshare")
    return prefix + supervisor_cmd(python, write_config(os.path.join(basedir, "launch.json"), cfg))


def write_kernelspec(basedir: str, argv: list[str]):
    """Write the private kernelspec ``rlm-env`` under ``basedir/kernels``; returns a
    ``KernelSpecManager`` that finds only it."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec_dir = os.path.join(basedir, "kernels", "rlm-env")
    os.makedirs(spec_dir, exist_ok=True)
    spec = {
        "argv": argv,
        "display_name": "rlm_jupyter REPL environment",
        "language": "python",
        # signals reach bwrap or the supervisor, not the kernel: interrupt with a control message
        "interrupt_mode": "message",
    }
    with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
        json.dump(spec, f)
    return KernelSpecManager(kernel_dirs=[os.path.join(basedir, "kernels")])


class Lifeline:
    """A pipe whose write end only the user's process holds: the supervisor sees EOF on the
    read end when that process is gone (even from inside other namespaces) and cleans up."""

    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe()

    def close(self) -> None:
        for fd in (self.read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.read_fd = self._write_fd = -1
