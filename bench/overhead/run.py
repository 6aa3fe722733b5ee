"""``python -m bench overhead``: framework cost of rlm_jupyter, side by side with the
official implementation, printed as a table and written as JSON.

Workloads (each run on both implementations in the same benchmark run):

* ``iterations``: the full loop with a scripted root (zero latency) and a trivial cell;
  per-iteration framework time (target ≤ 5 ms).
* ``load``: context load time and peak memory for ASCII strings of 1 MB to 400 MB
  (MB = 10^6 characters; target: 40 MB in ≤ 1 s). One fresh process per size and side.
* ``batched``: 64 sub-calls × 0.5 s at concurrency 16 (ideal 2.0 s; target ≤ 2.4 s).
* ``roundtrip``: sequential ``llm_query`` from model code with an instant model
  (target: well under 1 ms plus model time).
* ``root_reads`` (ours only): tokens of a 1M-character context that reach the root LM with a
  typical peek-and-grep strategy (target ≤ 1 %).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from .. import official
from ..common import DATA_DIR, REPO, fmt, machine_info, median, table, write_json
from . import ours

BOOK = DATA_DIR / "books" / "pg2600_war_and_peace.txt"
FULL = {
    "iterations": 50,
    "sizes_mb": [1, 4, 10, 40, 100, 400],
    "batched": {"n": 64, "latency": 0.5, "concurrency": 16},
    "roundtrip": 500,
    "repeats": 3,
}
SMOKE = {
    "iterations": 5,
    "sizes_mb": [1],
    "batched": {"n": 8, "latency": 0.2, "concurrency": 4},
    "roundtrip": 20,
    "repeats": 1,
}
TARGETS = {
    "per_iteration_ms": 5.0,
    "roundtrip_ms_excl_model": 1.0,
    "load_40mb_seconds": 1.0,
    "batched_seconds": 2.4,
    "root_reads_percent": 1.0,
}


def _ms(x: float | None) -> float | None:
    return None if x is None else x * 1000


def _ours_load(mb: float) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.overhead.ours", "load", "--mb", str(mb), "--book", str(BOOK)],
        capture_output=True, text=True, cwd=str(REPO), timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load {mb} MB failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def root_reads(context_chars: int = 1_000_000) -> dict:
    """Tokens of the context that reach the root LM for a typical strategy (peek at 2,000
    characters, grep for a word and print 10 matching lines, answer) on a 1M-character book
    context; root input tokens summed over its calls, in cl100k tokens, and as % of the
    context's tokens."""
    from rlm_jupyter import RLM
    from rlm_jupyter.lm.scripted import get_script, script

    from ..common import count_tokens

    text = BOOK.read_text(encoding="utf-8-sig").replace("\r\n", "\n")[:context_chars]
    root = script(f"bench-reads-{time.monotonic_ns()}", [
        "```repl\nprint(context[:2000])\n```",
        "```repl\nhits = [l for l in context.splitlines() if 'Moscow' in l]\nprint(len(hits))\nprint('\\n'.join(hits[:10]))\n```",
        "FINAL(done)",
    ])
    res = RLM(model=root, sub_model=root).completion("Which city is mentioned most?", text)
    calls = get_script(root).calls
    per_call = [sum(count_tokens(str(m.get("content") or "")) for m in msgs) for msgs in calls]
    shown = sum(count_tokens(c.text) for it in res.trajectory.iterations for c in it.cells)
    ctx_tokens = count_tokens(text)
    return {
        "context_chars": len(text),
        "context_tokens": ctx_tokens,
        "repl_output_tokens_shown": shown,
        "repl_output_percent": 100 * shown / ctx_tokens,
        "root_input_tokens_total": sum(per_call),
        "root_input_percent": 100 * sum(per_call) / ctx_tokens,
        "root_calls": len(per_call),
        "status": res.status,
    }


def run(smoke: bool = False, sizes_mb: list[float] | None = None, use_official: str = "auto", out: str | None = None) -> dict:
    """Run every workload on both sides; print the table; write JSON; return the results.

    Args:
        smoke: tiny workloads (CI: checks that everything runs, figures meaningless).
        sizes_mb: context sizes for ``load`` (MB = 10^6 characters).
        use_official: ``"auto"`` (install ``rlms`` in the bench venv if needed; smoke: only
            if already installed), ``"yes"`` (fail if unavailable), ``"no"``.
        out: JSON path (default ``bench/results/overhead-<time>.json``).
    """
    cfg = dict(SMOKE if smoke else FULL)
    if sizes_mb:
        cfg["sizes_mb"] = sizes_mb
    res: dict[str, Any] = {"benchmark": "overhead", "smoke": smoke, "config": cfg, "targets": TARGETS,
                           "machine": machine_info(), "ours": {}, "official": {}, "official_error": None}
    py = None
    if use_official != "no":
        try:
            py = official.ensure_official(install=not smoke or use_official == "yes")
            res["official_version"] = official.official_version(py)
        except official.OfficialUnavailable as exc:
            res["official_error"] = str(exc)
            if use_official == "yes":
                raise
            print(f"NOTE: official implementation not measured: {exc}", file=sys.stderr)
    else:
        res["official_error"] = "skipped (--official no)"

    def both(name: str, ours_fn, off_args: list[str]) -> None:
        print(f"... {name}", file=sys.stderr, flush=True)
        res["ours"][name] = [ours_fn() for _ in range(cfg["repeats"])]
        if py is not None:
            try:
                res["official"][name] = [official.run_worker(py, *off_args) for _ in range(cfg["repeats"])]
            except official.OfficialUnavailable as exc:
                res["official"][name] = {"error": str(exc)}

    n = cfg["iterations"]
    both("iterations", lambda: ours.w_iterations(n), ["iterations", "--n", str(n)])
    b = cfg["batched"]
    both("batched", lambda: ours.w_batched(b["n"], b["latency"], b["concurrency"]),
         ["batched", "--n", str(b["n"]), "--latency", str(b["latency"]), "--concurrency", str(b["concurrency"])])
    r = cfg["roundtrip"]
    both("roundtrip", lambda: ours.w_roundtrip(r), ["roundtrip", "--n", str(r)])
    res["ours"]["load"], res["official"]["load"] = [], []
    for mb in cfg["sizes_mb"]:
        print(f"... load {mb} MB", file=sys.stderr, flush=True)
        res["ours"]["load"].append(_ours_load(mb))
        if py is not None:
            try:
                res["official"]["load"].append(official.run_worker(py, "load", "--mb", str(mb), "--book", str(BOOK)))
            except official.OfficialUnavailable as exc:
                res["official"]["load"].append({"mb": mb, "error": str(exc)})
    print("... root_reads", file=sys.stderr, flush=True)
    res["ours"]["root_reads"] = root_reads(100_000 if smoke else 1_000_000)
    res["summary"] = summarize(res)
    path = write_json(res, "overhead-smoke" if smoke else "overhead", out)
    print(render(res))
    print(f"\nJSON: {path}")
    res["json_path"] = str(path)
    return res


def _pooled(runs: list[dict] | dict | None, key: str) -> list[float]:
    if not isinstance(runs, list):
        return []
    return [x for r in runs for x in (r.get(key) if isinstance(r.get(key), list) else [r.get(key)]) if x is not None]


def summarize(res: dict) -> dict:
    """Headline figures (medians over repeats/iterations) and ours/official ratios."""
    o, f = res["ours"], res["official"]
    s: dict[str, Any] = {}
    s["per_iteration_ms"] = _ms(median(_pooled(o.get("iterations"), "per_iteration_seconds")))
    s["per_iteration_incl_litellm_ms"] = _ms(median(_pooled(o.get("iterations"), "per_iteration_incl_client_seconds")))
    s["cell_ms"] = _ms(median(_pooled(o.get("iterations"), "cell_seconds")))
    s["startup_s"] = median(_pooled(o.get("iterations"), "startup_seconds"))
    s["official_per_iteration_ms"] = _ms(median(_pooled(f.get("iterations"), "per_iteration_seconds")))
    s["official_startup_s"] = median(_pooled(f.get("iterations"), "startup_seconds"))
    s["batched_s"] = median(_pooled(o.get("batched"), "seconds"))
    s["official_batched_s"] = median(_pooled(f.get("batched"), "seconds"))
    b = res["config"]["batched"]
    s["batched_ideal_s"] = -(-b["n"] // b["concurrency"]) * b["latency"]
    s["roundtrip_channel_ms"] = _ms(median(_pooled(o.get("roundtrip"), "channel_seconds_per_call")))
    s["roundtrip_full_ms"] = _ms(median(_pooled(o.get("roundtrip"), "full_seconds_per_call")))
    s["roundtrip_litellm_ms"] = _ms(median(_pooled(o.get("roundtrip"), "lm_client_seconds_per_call")))
    s["official_roundtrip_ms"] = _ms(median(_pooled(f.get("roundtrip"), "seconds_per_call")))
    for k_ours, k_off in [("per_iteration_ms", "official_per_iteration_ms"), ("batched_s", "official_batched_s"),
                          ("roundtrip_channel_ms", "official_roundtrip_ms"), ("roundtrip_full_ms", "official_roundtrip_ms"),
                          ("per_iteration_incl_litellm_ms", "official_per_iteration_ms")]:
        if s.get(k_ours) is not None and s.get(k_off):
            s[f"ratio_{k_ours}"] = s[k_ours] / s[k_off]
    loads = [x for x in o.get("load", []) if "seconds" in x]
    s["load_s_per_mb"] = median([x["seconds"] / x["mb"] for x in loads if x["mb"] >= 10] or [x["seconds"] / x["mb"] for x in loads])
    off_loads = [x for x in f.get("load", []) if "seconds" in x]
    s["official_load_s_per_mb"] = median([x["seconds"] / x["mb"] for x in off_loads if x["mb"] >= 10] or [x["seconds"] / x["mb"] for x in off_loads])
    if s["load_s_per_mb"] and s["official_load_s_per_mb"]:
        s["ratio_load"] = s["load_s_per_mb"] / s["official_load_s_per_mb"]
    for x in loads:
        if x["mb"] == 40:
            s["load_40mb_s"] = x["seconds"]
    rr = o.get("root_reads") or {}
    s["root_reads_percent"] = rr.get("repl_output_percent")
    s["root_input_percent"] = rr.get("root_input_percent")
    return s


def render(res: dict) -> str:
    """The printed report: a table of headline figures with targets, and the load table."""
    s = res["summary"]
    T = TARGETS

    def ratio(k):
        v = s.get(f"ratio_{k}")
        return "-" if v is None else f"{v:.3g}x"

    rows = [
        ["per root iteration, framework (excl. litellm)", fmt(s["per_iteration_ms"], " ms"), fmt(s["official_per_iteration_ms"], " ms"), ratio("per_iteration_ms"), f"<= {T['per_iteration_ms']} ms"],
        ["per root iteration, incl. litellm call overhead", fmt(s["per_iteration_incl_litellm_ms"], " ms"), fmt(s["official_per_iteration_ms"], " ms") + " (no SDK)", ratio("per_iteration_incl_litellm_ms"), ""],
        ["  of which: trivial cell in the kernel", fmt(s["cell_ms"], " ms"), "", "", ""],
        ["run startup (kernel start + context load)", fmt(s["startup_s"], " s"), fmt(s["official_startup_s"], " s"), "", ""],
        ["sub-call round trip, channel only", fmt(s["roundtrip_channel_ms"], " ms"), fmt(s["official_roundtrip_ms"], " ms"), ratio("roundtrip_channel_ms"), f"<< {T['roundtrip_ms_excl_model']} ms"],
        ["sub-call round trip, full (incl. litellm)", fmt(s["roundtrip_full_ms"], " ms"), fmt(s["official_roundtrip_ms"], " ms") + " (no SDK)", ratio("roundtrip_full_ms"), ""],
        [f"batched {res['config']['batched']['n']} x {res['config']['batched']['latency']} s, conc. {res['config']['batched']['concurrency']} (ideal {s['batched_ideal_s']:g} s)",
         fmt(s["batched_s"], " s"), fmt(s["official_batched_s"], " s"), ratio("batched_s"), f"<= {T['batched_seconds']} s (full size)"],
        ["context load, seconds per MB (>= 10 MB)", fmt(s["load_s_per_mb"], " s"), fmt(s["official_load_s_per_mb"], " s"), ratio("load"), f"40 MB <= {T['load_40mb_seconds']} s"],
        ["context shown to root (peek+grep), % of tokens", fmt(s["root_reads_percent"], " %"), "", "", f"<= {T['root_reads_percent']} %"],
        ["root input tokens, all turns, % of context", fmt(s["root_input_percent"], " %"), "", "", ""],
    ]
    out = [table(["figure (median)", "rlm_jupyter", "official rlms", "ratio", "target"], rows)]
    if res.get("official_error"):
        out.append(f"\nOFFICIAL IMPLEMENTATION NOT MEASURED: {res['official_error']}")
    off = {x["mb"]: x for x in res["official"].get("load", [])}
    lrows = []
    for x in res["ours"].get("load", []):
        y = off.get(x["mb"], {})
        lrows.append([
            f"{x['mb']:g}", fmt(x["seconds"], " s"), fmt(x.get("kernel_peak_mb"), " MB"), fmt(x.get("kernel_peak_growth_mb"), " MB"),
            fmt(x.get("parent_peak_growth_mb"), " MB"), fmt(y.get("seconds"), " s"), fmt(y.get("peak_growth_mb"), " MB"),
            "ok" if x.get("ok") else "FAILED",
        ])
    out.append("\ncontext load (ASCII str; MB = 10^6 chars; peak = VmHWM / ru_maxrss)")
    out.append(table(["MB", "ours s", "kernel peak", "kernel growth", "parent growth", "official s", "official growth", "check"], lrows))
    return "\n".join(out)
