"""Confinement of the environment kernel: the sandbox's file system, bubblewrap, rlimits,
orphan clean-up.

The model's code is untrusted. On Linux the environment kernel runs inside `bubblewrap`_
(Debian/Ubuntu package ``bubblewrap``) when it is installed and works, else in util-linux
``unshare`` namespaces with the same file system (:func:`sandbox_plan`, built by
:mod:`.supervisor`), else as a plain process with a warning (the choice: :mod:`.launch`). A
tiny launcher (bubblewrap: ``python -S -c``) or the supervisor applies resource limits before
the kernel starts.

What the sandbox (:func:`bwrap_argv`; the ``unshare`` mode alike, which drops every capability
instead of running bubblewrap's unprivileged setup) gives the kernel:

- a file system built from scratch: read-only binds of the system (``/usr``, ``/lib*``,
  the needed files of ``/etc`` but not ``/etc/shadow`` & co.), of the kernel's Python
  (prefix, site-packages, directories named in ``.pth`` files) and of the ``rlm_jupyter``
  package directory only (not the rest of its checkout); a private tmpfs ``/tmp``; one
  writable directory, the environment's private work dir, which also holds the kernel's
  ipc sockets, the sub-call socket, the context file, ``HOME`` and ``IPYTHONDIR``. The
  parent's home, projects, notebooks and data are simply not there.
- no network (``--unshare-net``: only a loopback interface that is down); the kernel's
  ZMQ channels and the sub-call channel are Unix sockets in the work dir.
- its own PID namespace (the kernel is PID 2; the parent's processes and their ``/proc``
  entries are invisible), IPC and UTS namespaces, a new session (no terminal injection),
  ``--die-with-parent`` (if the parent process dies, so does the whole sandbox).
- an environment with only the variables set here (``--clearenv``): no keys, nothing of
  the parent's environment.
- when the parent runs as root: the kernel drops to an unprivileged uid of its own (a random
  uid no other process uses, see ``run_as``), so it has no capabilities, cannot read
  root-only files, and its ``RLIMIT_NPROC`` (never enforced for root) counts exactly this
  sandbox's processes. A non-root parent gets the same from bubblewrap's user namespace,
  where ``RLIMIT_NPROC`` also counts per namespace (Linux >= 5.14).

The rlimits (:func:`limits_argv`): ``RLIMIT_AS`` (memory), ``RLIMIT_CPU`` (CPU seconds over
the kernel process's life: SIGXCPU, then SIGKILL; a restart starts a new count),
``RLIMIT_NPROC`` (processes + threads: in the sandbox those of the sandbox alone; in the
unsandboxed fallback those of the whole user, so the user's current count is added, and not
enforced at all for root), ``RLIMIT_CORE`` 0 (no core files from crashes).

Process scanning (:func:`marked_processes`, :func:`kill_marked_processes`) uses psutil, so the
clean-up also works where there is no ``/proc`` (macOS).

Remote kernels. For users who outgrow one machine the environment can be a kernel on a
Jupyter Kernel Gateway or Enterprise Gateway: :class:`~.gateway.GatewayREPL`
(``RLM(gateway_url=...)``). Isolation there is the gateway's business (Enterprise Gateway runs
kernels in Kubernetes pods or containers); no bubblewrap or rlimits are applied from here.

.. _bubblewrap: https://github.com/containers/bubblewrap
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil

from . import supervisor

NOBODY = 65534
RUN_AS_RANGE = (1_500_000_000, 2_000_000_000)  # private uids for sandboxes of a root parent


def private_uid() -> int:
    """A random uid from :data:`RUN_AS_RANGE` (no passwd entry; no other process has it)."""
    import secrets

    return RUN_AS_RANGE[0] + secrets.randbelow(RUN_AS_RANGE[1] - RUN_AS_RANGE[0])

# Files and folders of /etc the interpreter and common libraries need (no secrets).
ETC_FILES = [
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "passwd", "group",
    "nsswitch.conf", "hosts", "host.conf", "resolv.conf", "ssl", "ca-certificates",
    "ca-certificates.conf", "pki", "mime.types", "alternatives", "fonts", "locale.alias",
    "locale.conf", "default/locale", "matplotlibrc", "gai.conf", "os-release", "debian_version",
]
SYSTEM_DIRS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt/conda"]

# The launcher run inside the sandbox (or as the plain child): apply rlimits (the supervisor's
# own ``set_limits``, sent as source), drop to an unprivileged uid if asked and allowed, then
# exec the kernel. argv: mem cpu nproc uid gid cmd...
LAUNCHER = (
    "import os, sys\n"
    + inspect.getsource(supervisor.set_limits)
    + """a = sys.argv[1:]
mem, cpu, nproc, uid, gid = (int(x) for x in a[:5])
cmd = a[5:]
set_limits({"mem": mem, "cpu": cpu, "nproc": nproc})
if uid >= 0 and os.getuid() == 0:
    os.setgroups([]); os.setgid(gid); os.setuid(uid)
os.execv(cmd[0], cmd)
"""
)


class SandboxWarning(UserWarning):
    """The sandbox is the default but cannot be used: the kernel runs unsandboxed."""


class SandboxUnavailable(RuntimeError):
    """``sandbox=True`` was asked for but bubblewrap is missing or does not work."""


@dataclasses.dataclass
class Limits:
    """Resource limits of the environment kernel (``None`` = not limited).

    Attributes:
        memory_limit_mb: address space (``RLIMIT_AS``) in MiB.
        cpu_seconds: CPU seconds over the kernel process's life (``RLIMIT_CPU``).
        max_processes: processes and threads (``RLIMIT_NPROC``).
    """

    memory_limit_mb: int | None = None
    cpu_seconds: int | None = None
    max_processes: int | None = None


def default_memory_limit_mb() -> int | None:
    """Half the machine's RAM (at least 2 GiB), so a runaway allocation fails in the kernel
    instead of waking the OOM killer, which might pick the user's notebook."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return max(2048, pages // 2 // (1 << 20))


def bwrap_path() -> str | None:
    """The ``bwrap`` executable, or ``None`` (not Linux, or not installed)."""
    if not sys.platform.startswith("linux"):
        return None
    return shutil.which("bwrap")


def _user_task_count(uid: int) -> int:
    """Tasks (threads) of ``uid`` now: what RLIMIT_NPROC counts."""
    n = 0
    for p in psutil.process_iter(["uids", "num_threads"]):
        uids, threads = p.info["uids"], p.info["num_threads"]
        if uids is not None and uids.real == uid:
            n += threads or 1
    return n


def limits_argv(
    python: str, limits: Limits, cmd: list[str], run_as: int | None = None, per_user: bool = False
) -> list[str]:
    """``python -S -c LAUNCHER ...``: apply ``limits`` (and drop to ``run_as``), then exec ``cmd``.

    ``per_user``: RLIMIT_NPROC will count all the user's tasks (no user namespace, no private
    uid), so their current number is added to ``max_processes``.
    """
    mem = (limits.memory_limit_mb or 0) * (1 << 20)
    cpu = limits.cpu_seconds or 0
    nproc = limits.max_processes or 0
    uid = -1 if run_as is None else run_as
    if nproc and per_user and os.geteuid() != 0:
        nproc += _user_task_count(os.geteuid())
    return [python, "-S", "-c", LAUNCHER, str(mem), str(cpu), str(nproc), str(uid), str(uid), *cmd]


@functools.lru_cache(maxsize=8)
def python_paths(python: str) -> tuple[str, ...]:
    """Directories the interpreter ``python`` needs to run and import its packages."""
    code = (
        "import sys, site, json, os\n"
        "p = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))]\n"
        "sp = list(site.getsitepackages())\n"
        "u = site.getusersitepackages()\n"
        "sp += [u] if isinstance(u, str) and os.path.isdir(u) else []\n"
        "for d in list(sp):\n"
        "    try: names = os.listdir(d)\n"
        "    except OSError: continue\n"
        "    for n in names:\n"
        "        if n.endswith('.pth'):\n"
        "            try: lines = open(os.path.join(d, n)).read().splitlines()\n"
        "            except OSError: continue\n"
        "            p += [ln.strip() for ln in lines if ln.startswith('/') and os.path.isdir(ln.strip())]\n"
        "p += sp + [x for x in sys.path if x.startswith('/') and os.path.isdir(x)]\n"
        "print(json.dumps(p))\n"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    if out.returncode != 0:
        raise RuntimeError(f"{python} failed: {out.stderr.strip()[-500:]}")
    paths = json.loads(out.stdout.strip().splitlines()[-1])
    seen: list[str] = []
    for p in paths:
        p = os.path.realpath(p)
        if p not in seen and os.path.exists(p):
            seen.append(p)
    return tuple(seen)


def _covered(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def sandbox_plan(python: str, workdir: str, package_dir: str, ro_paths: list[str] | None = None) -> list[list[str]]:
    """The sandbox's file system as a list of operations, shared by bubblewrap (:func:`bwrap_argv`)
    and the ``unshare`` mode (executed by :mod:`.supervisor`).

    Operations: ``["dir", path, mode]``, ``["symlink", target, path]``, ``["ro-bind", src, dst]``,
    ``["ro-bind-try", src, dst]`` (skipped if ``src`` is missing), ``["bind", src, dst]`` (the only
    writable one: ``workdir``), ``["tmpfs", path, mode]``, ``["proc", path]``, ``["dev", path]``;
    ``mode`` is an octal string.
    """
    ops: list[list[str]] = []
    system = [d for d in SYSTEM_DIRS if os.path.lexists(d)]
    for d in system:
        ops.append(["symlink", os.readlink(d), d] if os.path.islink(d) else ["ro-bind", d, d])
    ops += [["dir", "/etc", "0755"], ["dir", "/etc/default", "0755"]]
    for name in ETC_FILES:
        p = os.path.join("/etc", name)
        if os.path.lexists(p):
            ops.append(["ro-bind-try", p, p])
    ops += [["proc", "/proc"], ["dev", "/dev"], ["tmpfs", "/tmp", "1777"], ["dir", "/var", "0755"],
            ["tmpfs", "/var/tmp", "1777"], ["dir", "/sys", "0755"], ["dir", "/sys/devices", "0755"],
            ["dir", "/sys/devices/system", "0755"], ["ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]]
    real_roots = [os.path.realpath(d) for d in system if not os.path.islink(d)]
    pkg_parent = os.path.dirname(package_dir)
    bound: list[str] = []
    for p in list(python_paths(python)) + list(ro_paths or []):
        p = os.path.realpath(p)
        if p == pkg_parent or _covered(p, real_roots) or _covered(p, bound):
            continue  # the package's checkout is not shown, only the package itself
        bound.append(p)
    # python may be a symlink (venv): make the link itself resolvable
    py_dir = os.path.dirname(os.path.abspath(python))
    if not _covered(py_dir, bound + real_roots):
        bound.append(py_dir)
    made: set[str] = {"/", "/tmp", "/usr", "/etc", "/proc", "/dev"}
    for p in sorted(bound, key=len) + [package_dir, workdir]:
        # parents that would otherwise get the source's mode (e.g. /root 0700, closed to the
        # sandbox's uid): create them world-traversable first
        parents = []
        q = os.path.dirname(p)
        while q not in made and q != os.path.dirname(q):
            parents.append(q)
            q = os.path.dirname(q)
        for q in reversed(parents):
            if not _covered(q, bound):
                ops.append(["dir", q, "0755"])
            made.add(q)
        ops.append(["bind" if p == workdir else "ro-bind", p, p])
    return ops


def bwrap_argv(
    python: str,
    workdir: str,
    env: dict[str, str],
    package_dir: str,
    ro_paths: list[str] | None = None,
    bwrap: str | None = None,
    drop_caps: bool = False,
) -> list[str]:
    """The ``bwrap ...`` prefix that confines a command to the sandbox described above.

    Args:
        python: the kernel's interpreter (its prefix and packages are bound read-only).
        workdir: the private writable directory (bound read-write at the same path).
        env: the complete environment of the sandbox.
        package_dir: the ``rlm_jupyter`` package directory (bound read-only).
        ro_paths: more paths to bind read-only (e.g. data or an editable package).
        drop_caps: drop every capability (a root parent whose kernel keeps uid 0).
    """
    bwrap = bwrap or bwrap_path() or "bwrap"
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "rlm-sandbox"]
    if drop_caps:
        args += ["--cap-drop", "ALL"]
    for op in sandbox_plan(python, workdir, package_dir, ro_paths):
        kind = op[0]
        if kind in ("dir", "tmpfs"):
            args += ["--perms", op[2], f"--{kind}", op[1]]
        elif kind in ("proc", "dev"):
            args += [f"--{kind}", op[1]]
        else:
            args += [f"--{kind}", op[1], op[2]]
    args += ["--chdir", workdir, "--clearenv"]
    for k, v in env.items():
        args += ["--setenv", k, v]
    return args


def run_probe(argv: list[str], cwd: str | None = None, made: str | None = None) -> str | None:
    """Run a sandbox probe ``argv`` (a command that prints ``ok``; at most 60 seconds);
    ``None`` if it worked (exit status 0, ``ok`` printed and, when given, the file ``made``
    exists), else why not (the last 400 characters of its stderr or stdout). Also used by
    :mod:`.launch`.

    Raises:
        OSError, subprocess.SubprocessError: the command could not be run or timed out.
    """
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd)
    if out.returncode != 0 or "ok" not in out.stdout or (made is not None and not os.path.exists(made)):
        return (out.stderr or out.stdout).strip()[-400:] or f"exit status {out.returncode}"
    return None


@functools.lru_cache(maxsize=8)
def _probe(bwrap: str, python: str, package_dir: str) -> str | None:
    """Run a trivial command in the sandbox; ``None`` if it works, else why not."""
    import tempfile

    d = tempfile.mkdtemp(prefix="rlm-probe-")
    try:
        argv = bwrap_argv(python, d, {"PATH": "/usr/bin:/bin"}, package_dir, bwrap=bwrap)
        argv += [python, "-c", "import ipykernel, socket; print('ok')"]
        return run_probe(argv)
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def marked_processes(marker: str) -> list[int]:
    """PIDs of other processes whose environment holds ``marker`` (``NAME=value``), via psutil
    (Linux, macOS: the user's own processes)."""
    name, _, value = marker.partition("=")
    me, found = os.getpid(), []
    for p in psutil.process_iter():
        if p.pid == me:
            continue
        try:
            if p.environ().get(name) == value:
                found.append(p.pid)
        except (psutil.Error, OSError):
            continue
    return found


def kill_marked_processes(marker: str, timeout: float = 2.0, spare: int | None = None) -> int:
    """SIGKILL every process carrying ``marker`` (leftovers of an unsandboxed kernel: forks,
    daemons) except ``spare`` and its descendants (a freshly restarted kernel), and wait up to
    ``timeout`` seconds for them to go. Returns how many were killed."""
    procs = []
    for pid in marked_processes(marker):
        try:
            p = psutil.Process(pid)
            if spare is not None and (pid == spare or spare in [a.pid for a in p.parents()]):
                continue
            procs.append(p)
            os.kill(pid, signal.SIGKILL)
        except (psutil.Error, OSError):
            pass
    killed = len(procs)
    deadline = time.monotonic() + timeout
    while procs and time.monotonic() < deadline:
        procs = [p for p in procs if _running(p)]
        if procs:
            time.sleep(0.02)
    return killed


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False
