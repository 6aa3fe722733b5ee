"""Interpreter figures: ``JupyterInterpreter`` (DSPy's CodeInterpreter on the sandboxed kernel)
side by side, in one run, with a plain unsandboxed ipykernel driven by jupyter_client and an
in-process ``exec`` interpreter.

Measured for each (medians over repeats; ms unless said; start-up kind after kind, the rest
interleaved across kinds so that load on a shared machine hits all alike):
construction; start (time to interactive); first execute; warm execute (``x = 1``); host-tool
round trip (sequential calls from the code, timed inside the interpreter); a 1 MB ``str``
variable in (a new value each time, then the same value again); shutdown; memory (RSS of the
interpreter's process tree, MB = 10^6 bytes, highest sample over the phases; and this
process's RSS growth over the kind's start-ups).

Targets (issue 14): warm execute no slower than the plain kernel; tool round trip <= 1 ms;
a 1 MB variable <= 50 ms.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

import psutil

from .common import fmt, machine_info, median, table, write_json

FULL = {"lifecycles": 3, "warm": 200, "tool_calls": 1000, "var_repeats": 10}
SMOKE = {"lifecycles": 1, "warm": 5, "tool_calls": 20, "var_repeats": 2}
TARGETS = {"warm_vs_plain_ratio": 1.0, "tool_ms": 1.0, "var_1mb_ms": 50.0}
VAR_CHARS = 1_000_000


def add(a: int, b: int = 0) -> int:
    """The host tool of the round-trip test."""
    return a + b


TOOL_LOOP = (
    "import time as _t\n_t0 = _t.perf_counter()\nfor _i in range({n}):\n    add(_i, b=1)\n"
    "(_t.perf_counter() - _t0) / {n} * 1e3\n"
)


class ExecInterpreter:
    """In-process baseline: ``exec`` in a dict namespace; tools are the host functions
    themselves; variables are bound by reference (no isolation at all)."""

    def __init__(self, tools: dict[str, Callable] | None = None) -> None:
        self.tools = dict(tools or {})
        self.ns: dict[str, Any] | None = None

    def start(self) -> None:
        if self.ns is None:
            self.ns = {"__name__": "__main__"}

    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        self.start()
        self.ns.update(self.tools)
        self.ns.update(variables or {})
        tree = ast.parse(code)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(tree, "<cell>", "exec"), self.ns)
            value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), self.ns) if last else None
        return value if value is not None else (out.getvalue().rstrip("\n") or None)

    def shutdown(self) -> None:
        self.ns = None

    def pids(self) -> list[int]:
        return []


class PlainKernelInterpreter:
    """Baseline: a plain ipykernel (no sandbox, no helpers, IPC transport) driven with
    jupyter_client's blocking client. Tools travel over the kernel's own stdin channel (``input()`` in a stub,
    answered by the host); variables are sent as Python literals in the code (as DSPy's
    Pyodide interpreter does)."""

    def __init__(self, tools: dict[str, Callable] | None = None) -> None:
        self.tools = dict(tools or {})
        self.km = self.kc = None

    def start(self) -> None:
        if self.km is not None:
            return
        from jupyter_client import KernelManager

        # IPC transport like KernelREPL's (a private dir for its sockets)
        self._dir = tempfile.mkdtemp(prefix="bench-plain-")
        self.km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(self._dir, "k"))
        self.km.start_kernel()
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        stubs = "".join(
            f"def {name}(*a, **k):\n    import json\n    return json.loads(input(json.dumps([{name!r}, a, k])))\n"
            for name in self.tools
        )
        self.execute(stubs)

    def _stdin(self, msg: dict) -> None:
        name, args, kwargs = json.loads(msg["content"]["prompt"])
        self.kc.input(json.dumps(self.tools[name](*args, **kwargs)))

    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        self.start()
        if variables:
            code = "".join(f"{k} = {v!r}\n" for k, v in variables.items()) + code
        parts: list[str] = []

        def output(msg: dict) -> None:
            mt, content = msg["header"]["msg_type"], msg["content"]
            if mt == "stream":
                parts.append(content["text"])
            elif mt == "execute_result":
                parts.append(content["data"].get("text/plain", "") + "\n")
            elif mt == "error":
                parts.append(f"{content['ename']}: {content['evalue']}\n")

        reply = self.kc.execute_interactive(code, allow_stdin=True, stdin_hook=self._stdin, output_hook=output, timeout=120)
        if reply["content"]["status"] != "ok":
            raise RuntimeError("".join(parts))
        return "".join(parts).rstrip("\n") or None

    def shutdown(self) -> None:
        if self.km is not None:
            self.kc.stop_channels()
            self.km.shutdown_kernel(now=True)
            self.km = self.kc = None
            shutil.rmtree(self._dir, ignore_errors=True)

    def pids(self) -> list[int]:
        return [self.km.provisioner.pid] if self.km is not None else []


def _jupyter(sandbox: bool | None) -> Callable[..., Any]:
    def make(tools):
        from rlm_jupyter.interop.dspy import JupyterInterpreter

        it = JupyterInterpreter(tools=tools, sandbox=sandbox)
        it.pids = lambda: [it.repl.km.provisioner.pid] if it.repl is not None else []
        return it

    return make


def _tree_rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            total += sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
        except psutil.Error:
            pass
    return total / 1e6


def _ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return (time.perf_counter() - t0) * 1e3, value


def lifecycle(make: Callable[[dict], Any], cfg: dict) -> tuple[Any, dict]:
    """Construct, start, first execute (and shut down all but the last) ``lifecycles`` times;
    returns the live last instance and the figures."""
    rows: dict[str, list[float]] = {k: [] for k in ("construct_ms", "start_ms", "first_ms", "shutdown_ms")}
    rec: dict[str, Any] = {"rows": rows, "rss": [], "host_before": psutil.Process().memory_info().rss / 1e6}
    it = None
    for i in range(cfg["lifecycles"]):
        t, it = _ms(lambda: make({"add": add}))
        rows["construct_ms"].append(t)
        rows["start_ms"].append(_ms(it.start)[0])
        rows["first_ms"].append(_ms(lambda: it.execute("x = 1"))[0])
        rec["rss"].append(_tree_rss_mb(it.pids()))
        if i < cfg["lifecycles"] - 1:
            rows["shutdown_ms"].append(_ms(it.shutdown)[0])
    rec["host_growth"] = psutil.Process().memory_info().rss / 1e6 - rec["host_before"]
    return it, rec


def measure(makers: dict[str, Callable[[dict], Any]], cfg: dict) -> dict[str, dict]:
    """All figures of every interpreter kind. Start-up is measured kind after kind; the warm
    figures are interleaved (one sample of each kind in turn), so that a load change on a
    shared machine hits every kind alike."""
    live: dict[str, tuple[Any, dict]] = {}
    out: dict[str, dict] = {}
    for kind, make in makers.items():
        print(f"... {kind}: start-up", file=sys.stderr, flush=True)
        try:
            live[kind] = lifecycle(make, cfg)
        except Exception as exc:
            out[kind] = {"error": f"{type(exc).__name__}: {exc}"}
    warm: dict[str, list[float]] = {k: [] for k in live}
    tool: dict[str, list[float]] = {k: [] for k in live}
    var_new: dict[str, list[float]] = {k: [] for k in live}
    var_same: dict[str, list[float]] = {k: [] for k in live}
    print("... warm execute, tools, variables (interleaved)", file=sys.stderr, flush=True)
    for _ in range(cfg["warm"]):
        for kind, (it, _rec) in live.items():
            warm[kind].append(_ms(lambda: it.execute("x = 1"))[0])
    rounds = 5
    for _ in range(rounds):
        for kind, (it, _rec) in live.items():
            tool[kind].append(float(it.execute(TOOL_LOOP.format(n=max(1, cfg["tool_calls"] // rounds)))))
    for i in range(cfg["var_repeats"]):
        big = f"{i:07d}" + "x" * (VAR_CHARS - 7)
        for kind, (it, _rec) in live.items():
            t, n = _ms(lambda: it.execute("len(v)", variables={"v": big}))
            assert int(n) == VAR_CHARS, n
            var_new[kind].append(t)
            var_same[kind].append(_ms(lambda: it.execute("len(v)", variables={"v": big}))[0])
    for kind, (it, rec) in live.items():
        rec["rss"].append(_tree_rss_mb(it.pids()))
        repl = getattr(it, "repl", None)
        sandboxed = None if repl is None else (repl.sandboxed, repl.sandbox_reason)
        rec["rows"]["shutdown_ms"].append(_ms(it.shutdown)[0])
        out[kind] = {
            "sandboxed": sandboxed,
            **{k: median(v) for k, v in rec["rows"].items()},
            "warm_ms": median(warm[kind]),
            "warm_p90_ms": statistics.quantiles(warm[kind], n=10)[-1] if len(warm[kind]) >= 10 else max(warm[kind]),
            "warm_p10_ms": statistics.quantiles(warm[kind], n=10)[0] if len(warm[kind]) >= 10 else min(warm[kind]),
            "tool_ms": median(tool[kind]),
            "tool_best_ms": min(tool[kind]),
            "var_1mb_ms": median(var_new[kind]),
            "var_1mb_same_ms": median(var_same[kind]),
            "interpreter_rss_mb": max(rec["rss"]),
            "host_rss_growth_mb": rec["host_growth"],
            "samples": {"warm_ms": warm[kind], "tool_ms": tool[kind], "var_1mb_ms": var_new[kind], **rec["rows"]},
        }
    return out


KINDS: dict[str, Callable[[dict], Any]] = {
    "jupyter": _jupyter(None),
    "jupyter_nosandbox": _jupyter(False),
    "plain_kernel": PlainKernelInterpreter,
    "exec": ExecInterpreter,
}
ROWS = [
    ("construction", "construct_ms", "ms"),
    ("start (time to interactive)", "start_ms", "ms"),
    ("first execute", "first_ms", "ms"),
    ("warm execute `x = 1`", "warm_ms", "ms"),
    ("warm execute, p10", "warm_p10_ms", "ms"),
    ("warm execute, p90", "warm_p90_ms", "ms"),
    ("host-tool round trip", "tool_ms", "ms"),
    ("host-tool round trip, best round", "tool_best_ms", "ms"),
    ("1 MB str variable in (new value)", "var_1mb_ms", "ms"),
    ("1 MB str variable in (same value)", "var_1mb_same_ms", "ms"),
    ("shutdown", "shutdown_ms", "ms"),
    ("interpreter RSS, max sampled", "interpreter_rss_mb", " MB"),
    ("host RSS growth over its start-ups", "host_rss_growth_mb", " MB"),
]


def report(res: dict) -> str:
    """The side-by-side table (medians) with the ratio JupyterInterpreter / plain kernel."""
    kinds = [k for k in KINDS if k in res["results"]]
    r = res["results"]
    rows = []
    for label, key, unit in ROWS:
        vals = [r[k].get(key) if "error" not in r[k] else None for k in kinds]
        plain = r.get("plain_kernel", {}).get(key)
        ratios = []
        for ours in (r.get("jupyter", {}).get(key), r.get("jupyter_nosandbox", {}).get(key)):
            ratios.append(f"{ours / plain:.2f}x" if ours is not None and plain and "MB" not in unit else "-")
        rows.append([label, *[fmt(v, unit) for v in vals], *ratios])
    lines = [table(["", *kinds, "jupyter/plain", "nosandbox/plain"], rows)]
    s = res["summary"]
    if "warm_ms" not in r.get("jupyter", {}) or "warm_ms" not in r.get("plain_kernel", {}):
        lines.append("targets: not judged (jupyter and plain_kernel are both needed)")
    else:
        lines.append(
            f"targets: warm execute <= plain kernel: {'met' if s['warm_met'] else 'NOT met'} ({s['warm_ratio']:.2f}x); "
            f"tool round trip <= 1 ms: {'met' if s['tool_met'] else 'NOT met'}; "
            f"1 MB variable <= 50 ms: {'met' if s['var_met'] else 'NOT met'}"
        )
    for k in kinds:
        if "error" in r[k]:
            lines.append(f"{k}: not measured: {r[k]['error']}")
    sandboxed = r.get("jupyter", {}).get("sandboxed")
    lines.append(
        f"jupyter sandboxed: {sandboxed}; load average (1/5/15 min) at start {res['machine'].get('loadavg')}, "
        f"at end {res.get('loadavg_end')} on {res['machine'].get('cores')} cores"
    )
    return "\n".join(lines)


def run(smoke: bool = False, kinds: list[str] | None = None, out: str | None = None) -> dict:
    """Measure every interpreter kind; print the table; write JSON; return the results.

    Args:
        smoke: tiny repeat counts (CI: checks that everything runs; figures meaningless).
        kinds: a subset of :data:`KINDS` (default all).
        out: JSON path (default ``bench/results/interpreter-<time>.json``).
    """
    cfg = dict(SMOKE if smoke else FULL)
    res: dict[str, Any] = {"benchmark": "interpreter", "smoke": smoke, "config": cfg, "targets": TARGETS,
                           "machine": machine_info(), "results": {}}
    try:
        from importlib.metadata import version

        res["machine"]["dspy"] = version("dspy")
    except Exception:
        pass
    t0 = time.perf_counter()
    import rlm_jupyter.interop.dspy  # noqa: F401 - imported once, outside the timings (dspy, litellm)

    res["import_dspy_interop_s"] = time.perf_counter() - t0
    measured = measure({k: KINDS[k] for k in (kinds or list(KINDS))}, cfg)
    res["results"] = {k: measured[k] for k in KINDS if k in measured}
    res["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    ours, plain = res["results"].get("jupyter", {}), res["results"].get("plain_kernel", {})
    ratio = ours["warm_ms"] / plain["warm_ms"] if "warm_ms" in ours and plain.get("warm_ms") else float("nan")
    res["summary"] = {
        "warm_ratio": ratio,
        "warm_met": ratio <= TARGETS["warm_vs_plain_ratio"],
        "tool_met": ours.get("tool_ms", float("inf")) <= TARGETS["tool_ms"],
        "var_met": ours.get("var_1mb_ms", float("inf")) <= TARGETS["var_1mb_ms"],
    }
    print(report(res))
    print(write_json(res, "interpreter", out))
    return res
