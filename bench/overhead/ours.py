"""The framework-cost workloads against rlm_jupyter (the counterparts of
``official_worker.py``). Each ``w_*`` coroutine returns a JSON-serialisable dict.

Also a CLI (``python -m bench.overhead.ours load --mb 40 --book PATH``) so that memory is
measured in a fresh process per size.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import time

from rlm_jupyter import RLM
from rlm_jupyter.core import events as ev
from rlm_jupyter.environment.kernel import KernelREPL
from rlm_jupyter.lm.scripted import script

# A trivial cell; numbered so that consecutive replies differ (identical replies end a run).
TRIVIAL_CELL = "```repl\nx = 1 + {i}\nprint(x)\n```"
_names = itertools.count()


def _name(prefix: str) -> str:
    return f"bench-{prefix}-{next(_names)}"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB = 10^6 bytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def kernel_pid(repl: KernelREPL) -> int:
    """PID of the environment kernel's Python process: the launched process, or (when the
    kernel runs inside a sandbox such as bwrap) its descendant running ipykernel."""
    root = repl.km.provisioner.pid
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
    todo, found = [root], []
    while todo:
        pid = todo.pop()
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"ipykernel_launcher" in b" ".join(argv) and b"bwrap" not in argv[0]:
            found.append(pid)
        todo.extend(children.get(pid, []))
    return found[-1] if found else root


def proc_status_mb(pid: int, field: str) -> float | None:
    """``VmRSS``/``VmHWM`` (peak RSS) of process ``pid`` from /proc, in MB (10^6 bytes)."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        return None
    return None


def ascii_text(path: str, n_chars: int) -> str:
    """``n_chars`` characters of ASCII text repeating the book at ``path``; only one string of
    that size is ever allocated (same construction as the official worker)."""
    with open(path, encoding="utf-8-sig") as f:
        base = f.read().replace("\r\n", "\n").encode("ascii", "ignore").decode("ascii")
    k, rem = divmod(n_chars, len(base))
    return "".join([base] * k + [base[:rem]])


def _run(query: str, context, root: str, sub: str, **kw):
    events: list[ev.Event] = []
    t0 = time.perf_counter()
    res = RLM(model=root, sub_model=sub, **kw).completion(query, context, on_event=events.append)
    return res, events, time.perf_counter() - t0


def w_iterations(n: int = 50, context_chars: int = 10_000) -> dict:
    """The full loop (``RLM.completion``) with a scripted root: ``n`` trivial cells then FINAL.

    Returns per-iteration seconds (gap between consecutive ITERATION_STARTED events) split into:
    ``per_iteration_seconds`` (gap minus the LM client's measured call time: our loop, events,
    parsing, kernel round trip), ``per_iteration_incl_client_seconds`` (the whole gap, including
    litellm's own per-call overhead; the scripted model itself takes ~0 s) and
    ``cell_seconds`` (kernel execution of the trivial cell, included in both).
    """
    root = script(_name("root"), [TRIVIAL_CELL.format(i=i) for i in range(n)] + ["FINAL(done)"])
    res, events, wall = _run("What is 1 + 1?", "x" * context_chars, root, root, max_iterations=n + 5)
    starts = [e.t for e in events if e.kind == ev.ITERATION_STARTED and e.node_id == "0"]
    lm = [e.data["usage"]["seconds"] for e in events if e.kind == ev.ROOT_REPLY and e.node_id == "0"]
    cells = [e.data["seconds"] for e in events if e.kind == ev.CODE_FINISHED and e.node_id == "0"]
    gaps = [starts[i + 1] - starts[i] for i in range(len(starts) - 1)]
    return {
        "answer": res.answer,
        "status": res.status,
        "root_calls": len(lm),
        "wall_seconds": wall,
        "startup_seconds": starts[0] if starts else None,
        "per_iteration_seconds": [g - s for g, s in zip(gaps, lm)],
        "per_iteration_incl_client_seconds": gaps,
        "lm_client_seconds": lm[: len(gaps)],
        "cell_seconds": cells,
    }


def w_batched(n: int = 64, latency: float = 0.5, concurrency: int = 16) -> dict:
    """``llm_query_batched`` of ``n`` prompts from model code; the scripted sub-model takes
    ``latency`` s per call; ``RLM(concurrency=...)``. ``seconds`` = the cell's execution time."""
    sub = script(_name("sub"), lambda m: "ok", latency=latency)
    code = f"```repl\nr = llm_query_batched([f'p{{i}}' for i in range({n})])\nprint(len(r), r[0])\n```"
    root = script(_name("root"), [code, "FINAL(done)"])
    res, events, wall = _run("q", "ctx", root, sub, concurrency=concurrency, max_iterations=3)
    cell = next(e for e in events if e.kind == ev.CODE_FINISHED and e.node_id == "0")
    return {
        "n": n,
        "latency": latency,
        "concurrency": concurrency,
        "seconds": cell.data["seconds"],
        "stdout": cell.data["text"].strip(),
        "status": res.status,
        "subcalls": sum(1 for e in events if e.kind == ev.SUBCALL_FINISHED),
    }


TIMING_CODE = (
    "import time\n_t = time.perf_counter()\n"
    "for _i in range({n}):\n    _r = llm_query('x')\n"
    "print(time.perf_counter() - _t, _r)"
)


async def _channel_roundtrip(n: int) -> float:
    async def handler(op: str, payload: dict):
        return "ok"

    repl = KernelREPL()
    await repl.start(handler)
    try:
        await repl.execute("llm_query('warm-up')")
        res = await repl.execute(TIMING_CODE.format(n=n))
        return float(res.text.split()[0]) / n
    finally:
        await repl.shutdown()


def w_roundtrip(n: int = 500) -> dict:
    """Sequential ``llm_query`` calls from model code, seconds per call:
    ``channel_seconds_per_call`` = kernel → parent → kernel over our socket with a handler
    that answers at once (no LM); ``full_seconds_per_call`` = through the RLM with a
    zero-latency scripted sub-model (adds the loop's sub-call bookkeeping and events, and
    litellm's per-call overhead)."""
    channel = asyncio.run(_channel_roundtrip(n))
    sub = script(_name("sub"), lambda m: "ok")
    root = script(_name("root"), ["```repl\nllm_query('warm-up')\n" + TIMING_CODE.format(n=n) + "\n```", "FINAL(done)"])
    res, events, wall = _run("q", "ctx", root, sub, max_iterations=3)
    cell = next(e for e in events if e.kind == ev.CODE_FINISHED and e.node_id == "0")
    full = float(cell.data["text"].split()[0]) / n
    lm = [e.data["usage"]["seconds"] for e in events if e.kind == ev.SUBCALL_FINISHED and e.data.get("usage")]
    return {
        "n": n,
        "channel_seconds_per_call": channel,
        "full_seconds_per_call": full,
        "lm_client_seconds_per_call": sum(lm) / len(lm) if lm else None,
    }


async def _load(mb: float, book: str) -> dict:
    s = ascii_text(book, int(mb * 1e6))

    async def handler(op: str, payload: dict):
        return "ok"

    repl = KernelREPL(timeout=600)
    await repl.start(handler)
    try:
        pid = kernel_pid(repl)
        k_rss0 = proc_status_mb(pid, "VmRSS")
        p_peak0 = peak_rss_mb()
        secs = await repl.load_context(s)
        k_peak = proc_status_mb(pid, "VmHWM")
        k_rss = proc_status_mb(pid, "VmRSS")
        p_peak = peak_rss_mb()
        check = await repl.execute("print(len(context))")
        ok = check.text.strip() == str(len(s))
    finally:
        await repl.shutdown()
    return {
        "mb": mb,
        "seconds": secs,
        "ok": ok,
        "kernel_rss_before_mb": k_rss0,
        "kernel_peak_mb": k_peak,
        "kernel_rss_after_mb": k_rss,
        "kernel_peak_growth_mb": (k_peak - k_rss0) if k_peak and k_rss0 else None,
        "parent_peak_growth_mb": p_peak - p_peak0,
    }


def w_load(mb: float, book: str) -> dict:
    """Load an ASCII string of ``mb`` × 10^6 characters into a fresh kernel: seconds
    (``KernelREPL.load_context``: private file write + read in the kernel), the kernel's peak
    RSS and its growth over its RSS before the load (MB), and the parent's peak growth (MB)."""
    return asyncio.run(_load(mb, book))


def main() -> None:
    p = argparse.ArgumentParser(description="one rlm_jupyter overhead workload; prints JSON")
    sub = p.add_subparsers(dest="workload", required=True)
    s = sub.add_parser("load")
    s.add_argument("--mb", type=float, required=True)
    s.add_argument("--book", required=True)
    a = p.parse_args()
    print(json.dumps(w_load(a.mb, a.book)))


if __name__ == "__main__":
    main()
