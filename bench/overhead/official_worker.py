"""Framework-cost workloads run against the OFFICIAL implementation (``rlms==0.1.3``).

Runs only in the benchmark's own venv (``bench/official.py`` starts it as
``<venv python> official_worker.py <workload> [options]``); imports nothing from rlm_jupyter
and copies no official code: it drives the installed package through its public pieces
(``RLM``, ``LocalREPL``, ``LMHandler``, ``BaseLM``). Prints one JSON object (last line).

The scripted client :class:`ScriptedLM` is the counterpart of ``rlm_jupyter.lm.scripted``:
fixed replies, optional latency (``time.sleep`` on the sync path, ``asyncio.sleep`` on the
async path used by batched calls), no network.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import threading
import time

from rlm.clients.base_lm import BaseLM
from rlm.core.lm_handler import LMHandler
from rlm.core.types import ModelUsageSummary, UsageSummary
from rlm.environments.local_repl import LocalREPL

TRIVIAL_CELL = "```repl\nx = 1 + {i}\nprint(x)\n```"  # numbered as in bench/overhead/ours.py
FINAL_CELL = "```repl\nanswer['content'] = 'done'\nanswer['ready'] = True\n```"


class ScriptedLM(BaseLM):
    """A BaseLM answering from a list (then repeating its last item) after ``latency`` s.

    Attributes:
        spans: ``(t_enter, t_exit)`` of every sync call, ``time.perf_counter()`` seconds.
    """

    def __init__(self, replies: list[str], latency: float = 0.0, name: str = "scripted") -> None:
        super().__init__(model_name=name)
        self.replies = replies
        self.latency = latency
        self.i = 0
        self.calls = 0
        self.spans: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def _next(self) -> str:
        with self._lock:
            r = self.replies[min(self.i, len(self.replies) - 1)]
            self.i += 1
            self.calls += 1
            return r

    def completion(self, prompt, model=None) -> str:
        t0 = time.perf_counter()
        if self.latency:
            time.sleep(self.latency)
        r = self._next()
        self.spans.append((t0, time.perf_counter()))
        return r

    async def acompletion(self, prompt, model=None) -> str:
        if self.latency:
            await asyncio.sleep(self.latency)
        return self._next()

    def get_usage_summary(self) -> UsageSummary:
        return UsageSummary(model_usage_summaries={self.model_name: self.get_last_usage()})

    def get_last_usage(self) -> ModelUsageSummary:
        return ModelUsageSummary(total_calls=self.calls, total_input_tokens=0, total_output_tokens=0, total_cost=0.0)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB = 10^6 bytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def ascii_text(path: str, n_chars: int) -> str:
    """``n_chars`` characters of ASCII text made by repeating the book at ``path``, built so
    that only one string of that size is ever allocated (a join of references)."""
    with open(path, encoding="utf-8-sig") as f:
        base = f.read().replace("\r\n", "\n").encode("ascii", "ignore").decode("ascii")
    k, rem = divmod(n_chars, len(base))
    return "".join([base] * k + [base[:rem]])


def w_iterations(a) -> dict:
    """The full official loop (RLM.completion) with a scripted root: ``a.n`` trivial cells, then
    the answer cell. Per-iteration framework time = gap between consecutive root calls minus
    the scripted call's own time."""
    import rlm.core.rlm as rlm_core

    client = ScriptedLM([TRIVIAL_CELL.format(i=i) for i in range(a.n)] + [FINAL_CELL])
    rlm_core.get_client = lambda backend, kwargs: client  # the scripted client stands in for a provider SDK
    context = "x" * a.context_chars
    r = rlm_core.RLM(backend="openai", backend_kwargs={"model_name": "scripted"}, environment="local", max_iterations=a.n + 5)
    t0 = time.perf_counter()
    res = r.completion(context, root_prompt="What is 1 + 1?")
    wall = time.perf_counter() - t0
    spans = client.spans
    gaps = [spans[i + 1][0] - spans[i][0] - (spans[i][1] - spans[i][0]) for i in range(len(spans) - 1)]
    return {
        "answer": res.response,
        "root_calls": len(spans),
        "wall_seconds": wall,
        "startup_seconds": spans[0][0] - t0 if spans else None,
        "per_iteration_seconds": gaps,
    }


def w_load(a) -> dict:
    """Load an ASCII string of ``a.mb`` × 10^6 characters with LocalREPL.load_context
    (file write + exec of a read in this process); time and peak-memory growth."""
    s = ascii_text(a.book, int(a.mb * 1e6))
    env = LocalREPL()
    rss0 = peak_rss_mb()
    t0 = time.perf_counter()
    env.load_context(s)
    secs = time.perf_counter() - t0
    ok = len(env.locals["context"]) == len(s)
    peak = peak_rss_mb()
    env.cleanup()
    return {"mb": a.mb, "seconds": secs, "ok": ok, "peak_rss_mb": peak, "peak_growth_mb": peak - rss0}


def _handler_and_env(latency: float, concurrency: int = 16):
    client = ScriptedLM(["ok"], latency=latency)
    handler = LMHandler(client, batch_max_concurrent=concurrency)
    handler.start()
    env = LocalREPL(lm_handler_address=handler.address)
    return client, handler, env


def w_batched(a) -> dict:
    """``llm_query_batched`` of ``a.n`` prompts from model code in LocalREPL; the scripted
    client sleeps ``a.latency`` s per call; LMHandler's concurrency ``a.concurrency``."""
    client, handler, env = _handler_and_env(a.latency, a.concurrency)
    code = f"r = llm_query_batched([f'p{{i}}' for i in range({a.n})])\nprint(len(r), r[0])"
    t0 = time.perf_counter()
    res = env.execute_code(code)
    secs = time.perf_counter() - t0
    handler.stop()
    env.cleanup()
    return {"n": a.n, "latency": a.latency, "concurrency": a.concurrency, "seconds": secs, "stdout": res.stdout.strip(), "stderr": res.stderr.strip()}


def w_roundtrip(a) -> dict:
    """``a.n`` sequential ``llm_query`` calls from model code, zero-latency scripted client:
    seconds per call measured inside the executed code (REPL → handler → REPL)."""
    client, handler, env = _handler_and_env(0.0)
    code = (
        "import time\n_t = time.perf_counter()\n"
        f"for _i in range({a.n}):\n    _r = llm_query('x')\n"
        "print(time.perf_counter() - _t, _r)"
    )
    env.execute_code("llm_query('warm-up')")
    res = env.execute_code(code)
    handler.stop()
    env.cleanup()
    el = float(res.stdout.split()[0])
    return {"n": a.n, "seconds_per_call": el / a.n, "stderr": res.stderr.strip()}


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="workload", required=True)
    s = sub.add_parser("iterations")
    s.add_argument("--n", type=int, default=50)
    s.add_argument("--context-chars", type=int, default=10_000)
    s = sub.add_parser("load")
    s.add_argument("--mb", type=float, required=True)
    s.add_argument("--book", required=True)
    s = sub.add_parser("batched")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--latency", type=float, default=0.5)
    s.add_argument("--concurrency", type=int, default=16)
    s = sub.add_parser("roundtrip")
    s.add_argument("--n", type=int, default=500)
    a = p.parse_args()
    fn = {"iterations": w_iterations, "load": w_load, "batched": w_batched, "roundtrip": w_roundtrip}[a.workload]
    out = fn(a)
    from importlib.metadata import version

    out["rlms_version"] = version("rlms")
    sys.stdout.flush()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
