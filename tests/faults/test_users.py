"""Users who pass odd contexts, run two RLMs at once, press stop mid-sub-call, or restart
the notebook kernel (kill the parent process) mid-run."""

from __future__ import annotations

import asyncio
import json
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types

import pytest

from faults import faultkit
from faults.faultkit import model, record, repl
from rlm_jupyter import RLM
from rlm_jupyter.core import events as ev
from rlm_jupyter.core.context import ContextError
from rlm_jupyter.environment import kernel as kernel_mod


def rlm(root, sub=None, **kw):
    kw = {"timeout": 30.0, "retry_backoff": 0.01, "max_iterations": 5, **kw}
    return RLM(model=root, sub_model=sub or root, **kw)


def test_missing_context_path_is_a_clear_error_before_any_kernel(envs, tmp_path):
    root = model("root", ["FINAL(x)"])
    t0 = time.monotonic()
    with pytest.raises(FileNotFoundError, match="context path does not exist"):
        rlm(root).completion("q", pathlib.Path(tmp_path / "no-such-file.txt"))
    assert not envs
    record("missing context (Path that does not exist)", True, "FileNotFoundError: context path does not exist: ...", time.monotonic() - t0)


def test_none_and_empty_contexts_run_and_the_model_is_told():
    for ctx, told in ((None, "NoneType"), ("", "0 total characters")):
        root = model("root", [repl("print(repr(context))"), "FINAL(ok)"])
        res = rlm(root).completion("q", ctx)
        first = "\n".join(m["content"] for m in faultkit.calls(root)[0])
        assert told in first and res.status == "done"
        assert res.trajectory.iterations[0].cells[0].text.strip() == repr(ctx)
    record("None / empty string context", True, "runs; the model is told 'NoneType' / '0 total characters'", res.wall_seconds)


@pytest.mark.parametrize("value", [threading.Lock(), (i for i in range(3)), lambda: 1], ids=["lock", "generator", "lambda"])
def test_unpicklable_context_is_rejected_before_any_kernel(envs, value):
    root = model("root", ["FINAL(x)"])
    with pytest.raises(ContextError, match="cannot be pickled .* Convert it to a str, list or dict"):
        rlm(root).completion("q", value)
    assert not envs
    if isinstance(value, type(threading.Lock())):
        record("unpicklable context (lock, generator, lambda)", True, "ContextError: ... cannot be pickled ... Convert it to a str, list or dict first.", 0.0)


def test_bytes_context_arrives_as_bytes():
    data = bytes(range(256)) * 4000
    root = model("root", [repl("print(type(context).__name__, len(context), context[:3])"), "FINAL(ok)"])
    res = rlm(root).completion("q", data)
    assert res.trajectory.iterations[0].cells[0].text.strip() == f"bytes {len(data)} b'\\x00\\x01\\x02'"
    record("bytes context (1 MB, all byte values)", True, "arrives as bytes, unchanged", res.wall_seconds)


@pytest.mark.timeout(180)
def test_400_mb_context_loads_and_is_usable(monkeypatch):
    monkeypatch.setitem(faultkit.TEST_LIMITS, "memory_limit_mb", 4096)
    big = ("0123456789abcdef" * 64 + "\n") * (400 * 1024 * 1024 // 1025)
    root = model("root", [repl("print(len(context), context.count('\\n'))"), "FINAL(ok)"])
    events = []
    res = rlm(root, timeout=60).completion("q", big, on_event=events.append)
    assert res.status == "done"
    assert res.trajectory.iterations[0].cells[0].text.strip() == f"{len(big)} {big.count(chr(10))}"
    load = next(e.data["load_seconds"] for e in events if e.kind == ev.NOTICE and "load_seconds" in e.data)
    first = "\n".join(m["content"] for m in faultkit.calls(root)[0])
    assert f"{len(big):,} total characters" in first
    del big
    record("400 MB str context", True, f"loaded in {load:.1f} s through a private file (deleted after loading)", load)


def test_two_runs_at_once_in_two_threads_do_not_mix():
    results = {}

    def go(tag, ctx):
        root = model(f"root{tag}", [repl("import time; time.sleep(1); print(context)"), "FINAL_VAR(context)"])
        results[tag] = rlm(root).completion("q", ctx)

    t0 = time.monotonic()
    threads = [threading.Thread(target=go, args=(t, f"context of run {t}")) for t in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    wall = time.monotonic() - t0
    assert results["A"].answer == "context of run A" and results["B"].answer == "context of run B"
    assert results["A"].run_id != results["B"].run_id
    record("two RLM runs at once (two threads)", True, "each run has its own kernel, channel and answer", wall)


def test_stop_mid_sub_call_cancels_cleanly():
    sub = model("sub", lambda m: "too late", latency=30)
    root = model("root", [repl("print(llm_query('slow question'))"), "FINAL(never)"])

    async def main():
        started = asyncio.Event()

        def on_event(e):
            if e.kind == ev.SUBCALL_STARTED:
                started.set()

        task = asyncio.ensure_future(rlm(root, sub, timeout=60).acompletion("q", "ctx", on_event=on_event))
        await asyncio.wait_for(started.wait(), 30)
        t_stop = time.monotonic()
        task.cancel()
        res = await task
        return res, time.monotonic() - t_stop

    res, recover = asyncio.run(main())
    assert res.status == "stopped" and res.message == "stopped by the user"
    it = res.trajectory.iterations[0]
    assert it.cells and it.subcalls and it.subcalls[0].error == "stopped"
    assert recover < 10
    record("user presses stop mid-sub-call", True, "status 'stopped', partial trajectory kept (sub-call marked stopped)", recover)


CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from rlm_jupyter.environment.kernel import KernelREPL

    async def handler(op, payload):
        await asyncio.sleep(3600)

    async def main():
        env = KernelREPL(sandbox={sandbox})
        await env.start(handler)
        await env.load_context("private user data " * 1000)
        print(json.dumps({{"env_id": env.env_id, "workdir": env.workdir, "sandboxed": env.sandboxed, "mode": env.sandbox_mode}}),
              flush=True)
        await env.execute("import os, time\\nif os.fork() == 0:\\n    time.sleep(3600)\\ntime.sleep(3600)")

    asyncio.run(main())
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sandbox", [True, False], ids=["sandbox", "plain"])
def test_killing_the_parent_mid_run_leaves_no_process_and_no_user_data(sandbox):
    mode = faultkit.require_sandbox() if sandbox else "plain"
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(sandbox=sandbox)], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        time.sleep(1.0)  # the cell is running
        assert info["sandboxed"] == sandbox and info["mode"] == mode
        t0 = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        gone = types.SimpleNamespace(env_id=info["env_id"], workdir="/nonexistent")
        left = faultkit.wait_no_leftovers([gone], timeout=10)
        recover = time.monotonic() - t0
        stale = pathlib.Path(info["workdir"])
        leaked = [p.name for p in stale.iterdir() if p.name.startswith("context-")] if stale.exists() else []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if left:  # what the next run's sweep would kill
        kernel_mod.sweep_stale_workdirs()
    assert not leaked, f"the user's context was left on disk: {leaked}"
    kernel_mod.sweep_stale_workdirs()
    assert not stale.exists(), "the next environment's start should sweep the stale work dir"
    record("notebook kernel killed (SIGKILL) mid-run", not left,
           "kernel + forked child die with the parent" if not left else f"survivors until the next run's sweep: {left}", recover, mode)
    assert not left, left
