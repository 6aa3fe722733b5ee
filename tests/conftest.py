"""Shared fixtures: scripted models (a litellm custom provider) standing in for network LMs."""

from __future__ import annotations

import itertools
import os
import pathlib

import pytest

from rlm_jupyter.lm.scripted import get_script, script

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared"
# Tests exercise the models, not the persistent LM cache (tests/test_lm_cache.py opts in).
os.environ.setdefault("RLM_JUPYTER_LM_CACHE", "off")
DATA = SHARED / "data"
_ids = itertools.count()


@pytest.fixture
def scripted(request):
    """``scripted(replies, **kw)`` registers a uniquely named scripted model; returns its id."""

    def make(replies, **kw):
        name = f"{request.node.name[:40]}-{next(_ids)}".replace("[", "-").replace("]", "")
        return script(name, replies, **kw)

    make.calls = lambda model_id: get_script(model_id).calls
    return make


@pytest.fixture(scope="module")
def ip():
    """The test IPython shell (``IPython.testing.globalipapp``) with ``%load_ext rlm_jupyter``;
    one per test module."""
    from IPython.testing import globalipapp

    shell = globalipapp.get_ipython()  # the module attribute: after the first start, the shell itself
    shell.run_line_magic("load_ext", "rlm_jupyter")
    return shell


def repl(code: str) -> str:
    """A root reply holding one ```repl block."""
    return f"```repl\n{code.strip()}\n```"


# Host tools shared by test_tools.py and test_interop_dspy.py (run in the test process).
def echo(*args, **kwargs) -> dict:
    return {"args": list(args), "kwargs": kwargs}


def host_pid() -> int:
    return os.getpid()


def fail(message: str) -> None:
    raise ValueError(message)


def unsendable() -> object:
    return object()


def kernel_children(parent: int | None = None) -> set[int]:
    """PIDs of ipykernel processes descending from ``parent`` (default: this test process);
    the kernel is a grandchild (bwrap, or the supervisor, sits in between)."""
    import psutil

    try:
        procs = psutil.Process(os.getpid() if parent is None else parent).children(recursive=True)
    except psutil.Error:
        return set()
    out = set()
    for p in procs:
        try:
            if "ipykernel_launcher" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                out.add(p.pid)
        except psutil.Error:
            continue
    return out


def collect_iopub(kc, msg_id: str, timeout: float = 120) -> list[dict]:
    """IOPub messages of the request ``msg_id`` (a blocking jupyter_client client) until the
    kernel goes idle; raises ``TimeoutError`` after ``timeout`` seconds."""
    import time

    msgs = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        msgs.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return msgs
    raise TimeoutError(f"no idle status for {msg_id} within {timeout} s")
