"""Helpers of the fault suite: scripted RLM runs, leftover-process checks, the report table."""

from __future__ import annotations

import itertools
import os
import pathlib
import time

import sys

from rlm_jupyter.environment import launch
from rlm_jupyter.environment import sandbox as sb
from rlm_jupyter.lm.scripted import get_script, script

_ids = itertools.count()
ROWS: list[dict] = []  # the report: one row per fault case
ISOLATION: dict[str, dict[str, str]] = {}  # probe -> mode -> what model code got

# Limits of the environment kernels in the suite (small, so that faults show quickly).
TEST_LIMITS = dict(memory_limit_mb=1536, max_processes=128)


def suite_mode() -> str:
    """The mode this run forces (``RLM_JUPYTER_SANDBOX_MODE``), or ``auto``."""
    return os.environ.get(launch.MODE_ENV, "").strip().lower() or "auto"


def require_sandbox() -> str:
    """The sandbox mode (``bwrap`` or ``unshare``) kernels of this run get. Skips when the run
    forces ``plain`` or no sandbox works here; fails instead if ``RLM_JUPYTER_REQUIRE_SANDBOX``
    is set (CI) and the run does not force ``plain``."""
    import pytest

    from rlm_jupyter.environment.kernel import PACKAGE_DIR

    if suite_mode() == "plain":
        pytest.skip("this run forces RLM_JUPYTER_SANDBOX_MODE=plain")
    try:
        mode, why = launch.resolve_mode(True, sys.executable, PACKAGE_DIR)
    except sb.SandboxUnavailable as exc:
        if os.environ.get("RLM_JUPYTER_REQUIRE_SANDBOX"):
            pytest.fail(f"RLM_JUPYTER_REQUIRE_SANDBOX is set but {exc}")
        pytest.skip(str(exc))
    return mode



def repl(code: str) -> str:
    """A root reply holding one ```repl block."""
    return f"```repl\n{code.strip()}\n```"


def model(name: str, replies, **kw) -> str:
    """Register a uniquely named scripted model; returns its litellm id."""
    return script(f"fault-{name}-{next(_ids)}", replies, **kw)


def calls(model_id: str) -> list[list[dict]]:
    return get_script(model_id).calls


def prompt_of_turn(model_id: str, turn: int) -> str:
    """The last user message the root model received on ``turn`` (1-based): for turn n+1
    it holds the REPL output and notices of turn n."""
    return calls(model_id)[turn - 1][-1]["content"]


def record(case: str, survived: bool, message: str, seconds: float | None, mode: str = "") -> None:
    ROWS.append(
        {"case": case, "survived": survived, "message": " ".join(str(message).split())[:160],
         "seconds": None if seconds is None else round(seconds, 2), "mode": mode}
    )


def leftovers(envs) -> list[str]:
    """Processes or files that outlived the environments ``envs`` (KernelREPL instances)."""
    found = []
    for env in envs:
        pids = sb.marked_processes(f"RLM_ENV_ID={env.env_id}")
        for pid in pids:
            try:
                cmd = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
            except OSError:
                cmd = b"?"
            found.append(f"process {pid} of environment {env.env_id}: {cmd!r}")
        for pid in _pids_mentioning(env.workdir):
            found.append(f"process {pid} mentions {env.workdir}")
        if os.path.exists(env.workdir):
            found.append(f"work dir left behind: {env.workdir} {os.listdir(env.workdir)}")
    return found


def _pids_mentioning(text: str) -> list[int]:
    needle = text.encode()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            cmd = pathlib.Path(f"/proc/{d}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmd and not _zombie(int(d)):
            out.append(int(d))
    return out


def _zombie(pid: int) -> bool:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def wait_no_leftovers(envs, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = leftovers(envs)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def cell_texts(res) -> str:
    return "\n".join(c.text for node in res.trajectory.nodes.values() for it in node.iterations for c in it.cells)


def all_prompts(model_id: str) -> str:
    return "\n".join(str(m.get("content")) for msgs in calls(model_id) for m in msgs)
