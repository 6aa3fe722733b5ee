"""The environment's private directories and the clean-up of those whose owner died.

Layout of one environment (all under the system temp dir)::

    rlm-env-XXXX/          0700, the parent's: never bound into a sandbox
        owner.json         which process owns this environment (pid, env_id): read by the sweep
        kernels/           the kernelspec; launch.json, the supervisor's config; root/ (unshare)
        work/              the ONLY directory the kernel may write: ipc sockets, the sub-call
                           socket, the context file (while it loads), HOME, IPYTHONDIR

A sandboxed kernel sees ``work/`` alone (bubblewrap and the ``unshare`` mode rebuild the path
to it in their own tmpfs), so model code cannot forge ``owner.json`` to make another
environment's sweep kill processes. In plain mode the kernel runs as the user and can.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from . import sandbox as sb

PREFIX = "rlm-env-"


def make_dirs(env_id: str) -> tuple[str, str, str]:
    """Create an environment's dirs; returns ``(basedir, workdir, owner_file)``."""
    base = tempfile.mkdtemp(prefix=PREFIX)
    os.chmod(base, 0o700)
    owner = os.path.join(base, "owner.json")
    fd = os.open(owner, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": os.getpid(), "env_id": env_id}, f)
    work = os.path.join(base, "work")
    os.mkdir(work, 0o700)
    return base, work, owner


def sweep_stale_workdirs(directory: str | None = None) -> int:
    """Remove the dirs (and kill the leftover processes) of environments whose parent process
    died without cleaning up (e.g. a notebook kernel restarted mid-run). Returns how many."""
    directory = directory or tempfile.gettempdir()
    removed = 0
    try:
        names = [n for n in os.listdir(directory) if n.startswith(PREFIX)]
    except OSError:
        return 0
    for name in names:
        path = os.path.join(directory, name)
        record = os.path.join(path, "owner.json")
        try:
            if os.stat(record).st_uid != os.geteuid():
                continue
            with open(record) as f:
                owner = json.load(f)
            os.kill(int(owner["pid"]), 0)
            continue  # its owner is alive
        except ProcessLookupError:
            pass
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if owner.get("env_id"):
            sb.kill_marked_processes(f"RLM_ENV_ID={owner['env_id']}")
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed
