"""The small process between the user's process and the environment kernel (stdlib only).

Run as a script, never imported by the kernel: ``python -S -I supervisor.py CONFIG_FILE`` (JSON,
in the parent-only dir).
jupyter_client starts (and signals, by process group) this supervisor; the supervisor

1. in the ``unshare`` mode (it is then PID 1 of fresh user/PID/network/mount/IPC/UTS
   namespaces made by util-linux ``unshare``) builds the sandbox's file system on a tmpfs from
   the same plan as bubblewrap's (read-only binds of the system and the Python packages, one
   writable work dir, private ``/tmp``, its own ``/proc``), ``pivot_root``\\ s into it and
   drops every capability (``no_new_privs``, empty bounding set) or, for a root parent, the uid;
2. applies the rlimits (memory, CPU seconds, processes; no core files);
3. forks the kernel (which gets ``SIGKILL`` when the supervisor dies, ``PR_SET_PDEATHSIG``) and
   waits for it, reaping orphans;
4. forwards ``SIGTERM``/``SIGINT``/``SIGHUP`` to the kernel only when they come from its own
   parent (jupyter_client) or from outside its PID namespace: model code that signals
   ``os.getppid()`` reaches this supervisor, which ignores it, never the user's process;
5. exits with the kernel's status (``128 + signal`` when a signal killed it, like a shell);
6. when the user's process goes away (EOF on the ``lifeline`` pipe it holds open), kills the
   kernel and every process carrying the environment's marker, then exits.

Config keys: ``cmd`` (argv of the kernel), ``env`` (its environment or ``null`` = inherit),
``mem``/``cpu``/``nproc`` (bytes, seconds, tasks; 0 = none), ``uid`` (-1 = keep), ``plan``
(file-system plan or ``null``), ``root`` (empty dir to build it in), ``chdir``, ``lifeline``
(fd or -1), ``marker`` (``NAME=value`` in the environment of the kernel's processes),
``drop_caps`` (bool), ``probe`` (run ``cmd`` in the foreground and exit with its status).
"""

import json
import os
import signal
import sys
import time

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
KEPT_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC | 1024 | 2048 | 4096  # + noatime, nodiratime, relatime
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS = 1, 24, 28, 38
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217, "i686": 217}
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

_libc = None


def libc():
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(rc, what):
    if rc != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(src, dst, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(libc().mount(enc(src), enc(dst), enc(fstype), flags, enc(data)), f"mount {src} on {dst}")


def remount_ro(dst):
    kept = os.statvfs(dst).f_flag & KEPT_FLAGS  # a user namespace may not clear locked flags
    mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)


def _mkparents(path):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)


def bind(root, src, dst, readonly, optional=False):
    if not os.path.lexists(src):
        if optional:
            return
        raise FileNotFoundError(src)
    target = root + dst
    _mkparents(target)
    if os.path.isdir(src):
        os.makedirs(target, mode=0o755, exist_ok=True)
    elif not os.path.exists(target):
        open(target, "w").close()
    mount(src, target, None, MS_BIND | MS_REC)
    if readonly:
        remount_ro(target)


def build_root(plan, root):
    """Make ``root`` (an empty dir) a tmpfs holding the sandbox's file system (``plan``: the
    operations of :func:`rlm_jupyter.environment.sandbox.sandbox_plan`) and pivot into it."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for op in plan:
        kind, args = op[0], op[1:]
        if kind == "dir":
            os.makedirs(root + args[0], exist_ok=True)
            os.chmod(root + args[0], int(args[1], 8))
        elif kind == "symlink":
            _mkparents(root + args[1])
            os.symlink(args[0], root + args[1])
        elif kind in ("ro-bind", "ro-bind-try", "bind"):
            bind(root, args[0], args[1], kind != "bind", optional=kind == "ro-bind-try")
        elif kind == "tmpfs":
            os.makedirs(root + args[0], exist_ok=True)
            mount("tmpfs", root + args[0], "tmpfs", MS_NOSUID | MS_NODEV, f"mode={args[1]}")
        elif kind == "proc":
            os.makedirs(root + args[0], exist_ok=True)
            mount("proc", root + args[0], "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        elif kind == "dev":
            d = root + args[0]
            os.makedirs(d, exist_ok=True)
            mount("tmpfs", d, "tmpfs", MS_NOSUID, "mode=0755")
            for name in DEVICES:
                bind(root, f"/dev/{name}", f"{args[0]}/{name}", False, optional=True)
            for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                                 ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
                os.symlink(target, f"{d}/{name}")
            os.makedirs(f"{d}/shm", exist_ok=True)
            mount("tmpfs", f"{d}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
        else:
            raise ValueError(f"unknown plan operation {kind!r}")
    old = root + "/.oldroot"
    os.makedirs(old)
    nr = PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise OSError(f"pivot_root: unknown architecture {os.uname().machine}")
    _check(libc().syscall(nr, root.encode(), old.encode()), "pivot_root")
    os.chdir("/")
    _check(libc().umount2(b"/.oldroot", 2), "umount old root")  # MNT_DETACH
    os.rmdir("/.oldroot")
    remount_ro("/")  # the tmpfs skeleton itself becomes read-only too


def drop_caps():
    """No capability left, none to regain (empty bounding set, no_new_privs, noroot bits)."""
    import ctypes

    c = libc()
    c.prctl(PR_SET_SECUREBITS, 0x2F, 0, 0, 0)  # NOROOT, NO_SETUID_FIXUP, KEEP_CAPS off; locked
    try:
        last = int(open("/proc/sys/kernel/cap_last_cap").read())
    except OSError:
        last = 63
    for cap in range(last + 1):
        c.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    c.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    _check(c.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()), "capset")
    _check(c.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def set_limits(cfg):
    import resource

    def lim(r, soft, hard=None):
        hard = soft if hard is None else hard
        cur = resource.getrlimit(r)[1]
        if cur != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur), min(hard, cur)
        resource.setrlimit(r, (soft, hard))

    lim(resource.RLIMIT_CORE, 0)
    if cfg.get("mem", 0) > 0:
        lim(resource.RLIMIT_AS, cfg["mem"])
    if cfg.get("cpu", 0) > 0:
        lim(resource.RLIMIT_CPU, cfg["cpu"], cfg["cpu"] + 5)
    if cfg.get("nproc", 0) > 0:
        lim(resource.RLIMIT_NPROC, cfg["nproc"])


def marked_pids(marker):
    """Linux: PIDs of other processes whose environment holds ``marker``."""
    needle, found, me = marker.encode(), [], os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for d in names:
        if d.isdigit() and int(d) != me:
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        found.append(int(d))
            except OSError:
                pass
    return found


def start_kernel(cfg, sigs):
    pid = os.fork()
    if pid == 0:
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)
            for s in sigs:
                signal.signal(s, signal.SIG_DFL)
            if sys.platform.startswith("linux"):
                libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if cfg.get("lifeline", -1) >= 0:
                os.close(cfg["lifeline"])
            cmd = cfg["cmd"]
            if cfg.get("env") is None:
                os.execv(cmd[0], cmd)
            os.execve(cmd[0], cmd, cfg["env"])
        except BaseException as exc:  # noqa: BLE001 - the child must never return
            os.write(2, f"supervisor: cannot start the kernel: {exc}\n".encode())
        os._exit(127)
    return pid


def status_code(status):
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


def lifeline_closed(fd):
    if fd < 0:
        return False
    import select

    try:
        ready, _, _ = select.select([fd], [], [], 0)
        return bool(ready) and not os.read(fd, 1)
    except OSError:
        return True


def kill_all(kernel, marker):
    """SIGKILL the kernel (a pid > 0, or None) and every other process carrying ``marker``."""
    pids = [kernel] if kernel and kernel > 0 else []
    for pid in pids + (marked_pids(marker) if marker else []):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    parent = os.getppid()
    linux = sys.platform.startswith("linux")
    if cfg.get("plan") is not None:
        build_root(cfg["plan"], cfg["root"])
    if cfg.get("chdir"):
        os.chdir(cfg["chdir"])
    set_limits(cfg)
    uid = cfg.get("uid", -1)
    if uid >= 0 and os.getuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if linux:
            libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    elif cfg.get("drop_caps"):
        drop_caps()
    sigs = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}
    use_wait = hasattr(signal, "sigtimedwait")
    if use_wait:
        signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    kernel = start_kernel(cfg, sigs)
    if not use_wait:  # macOS: no sender information. Interrupts come as messages (and ipykernel
        # signals its own process group, us included): only SIGTERM/SIGHUP are passed on.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for s in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, lambda n, f: os.kill(kernel, n))
    lifeline, marker = cfg.get("lifeline", -1), cfg.get("marker")
    while True:
        if use_wait:
            info = signal.sigtimedwait(sigs, 0.2)
            if info is not None and info.si_signo != signal.SIGCHLD:
                # only from jupyter_client (our parent) or from outside our PID namespace (0)
                if info.si_pid in (0, parent):
                    try:
                        os.kill(kernel, info.si_signo)
                    except OSError:
                        pass
        else:
            time.sleep(0.2)
        while True:  # reap the kernel and any orphan handed to us (PID 1 of a namespace)
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid, status = kernel, 1 << 8
            if pid == 0:
                break
            if pid == kernel:
                if cfg.get("plan") is None and marker and linux:
                    kill_all(None, marker)  # forks the model's code left behind
                os._exit(status_code(status))
        if lifeline_closed(lifeline):  # the user's process is gone
            kill_all(kernel, marker)
            os._exit(137)


if __name__ == "__main__":
    main()
