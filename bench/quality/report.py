"""Quality results: the printed table (mean per task kind × length × method) and the PNG plot
of score versus context length."""

from __future__ import annotations

import pathlib
from collections import defaultdict

from ..common import table

METHOD_NAMES = {"base": "base model (context in prompt)", "rlm": "RLM", "rlm_nosub": "RLM, no sub-calls",
                "summary": "summary agent", "codeact": "CodeAct + BM25"}


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean score, tokens, USD, seconds per (task kind, length, method); how many base prompts
    were truncated."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["task"]["kind"], r["task"]["length"], r["method"])].append(r)
    out = []
    for (kind, length, method), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], list(METHOD_NAMES).index(kv[0][2]))):
        n = len(rs)
        out.append({
            "kind": kind, "length": length, "method": method, "n": n,
            "score": sum(r["score"] for r in rs) / n,
            "input_tokens": sum(r["input_tokens"] for r in rs) / n,
            "output_tokens": sum(r["output_tokens"] for r in rs) / n,
            "usd": sum(r["usd"] for r in rs) / n,
            "cost_known": all(r["cost_known"] for r in rs),
            "wall_seconds": sum(r["wall_seconds"] for r in rs) / n,
            "lm_seconds": sum(r["lm_seconds"] for r in rs) / n,
            "truncated": sum(1 for r in rs if r.get("truncated")),
            "kept_fraction": (sum(r["kept_fraction"] for r in rs if r.get("kept_fraction") is not None) / n) if method in ("base", "codeact") else None,
            "errors": sum(1 for r in rs if r["status"] == "error"),
            "lm_busy_seconds": _mean_known(rs, "lm_busy_seconds"),
            "wall_over_lm": _wall_over_lm(rs),
            "prefill_ratio": _ratio(rs),
            "prefill_ratio_one_state": _ratio(rs, "one_state_tokens"),
            "helpers": _helpers(rs),
        })
    return out


def _ratio(rs: list[dict], key: str = "evaluated_tokens") -> float | None:
    """Prompt tokens the embedded model processed (``key``: or would have, with one llama.cpp
    state) / the run's unique prompt tokens (summed over the rows)."""
    ev = sum(r.get(key) or 0 for r in rs)
    un = sum(r.get("unique_tokens") or 0 for r in rs)
    return ev / un if un else None


def _mean_known(rs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rs if r.get(key) is not None]
    return sum(vals) / len(vals) if vals else None


def _wall_over_lm(rs: list[dict]) -> float | None:
    """Wall seconds / seconds with an LM call in flight, summed over the rows that have both
    (1.0: the run did nothing but wait for the LM)."""
    pairs = [(r["wall_seconds"], r["lm_busy_seconds"]) for r in rs if r.get("lm_busy_seconds")]
    return sum(w for w, _ in pairs) / sum(b for _, b in pairs) if pairs else None


def _helpers(rs: list[dict]) -> str:
    """``name:runs`` for each REPL helper the root called, counted once per run."""
    runs: dict[str, int] = defaultdict(int)
    for r in rs:
        for name in r.get("helpers") or {}:
            runs[name] += 1
    return " ".join(f"{k}:{v}" for k, v in sorted(runs.items()))


def _fmt_ratio(a: dict) -> str:
    if a.get("prefill_ratio") is None:
        return ""
    one = a.get("prefill_ratio_one_state")
    return f"{a['prefill_ratio']:.2f}" + ("" if one is None else f" ({one:.2f})")


def render(result: dict) -> str:
    """The table printed after a run, with the truncation note."""
    rows = []
    for a in result["summary"]:
        trunc = ""
        if a["method"] in ("base", "codeact") and a["truncated"]:
            trunc = f"{a['truncated']}/{a['n']} cut, kept {a['kept_fraction'] * 100:.0f}%"
        rows.append([
            a["kind"], a["length"], METHOD_NAMES[a["method"]], a["n"], f"{a['score'] * 100:.1f}",
            f"{a['input_tokens']:,.0f}", f"{a['output_tokens']:,.0f}",
            f"${a['usd']:.4f}" + ("" if a["cost_known"] else "+"), f"{a['wall_seconds']:.1f}",
            f"{a['lm_seconds']:.1f}", "" if a.get("wall_over_lm") is None else f"{a['wall_over_lm']:.2f}",
            _fmt_ratio(a), trunc,
            a["errors"] or "", a.get("helpers") or "",
        ])
    head = ["task", "tokens", "method", "n", "score %", "in tok", "out tok", "USD", "wall s", "LM s", "wall/LM busy", "prefill/unique (1 state)",
            "base prompt", "errors", "helpers (runs)"]
    notes = [
        f"model {result['model']} (sub-calls: {result['sub_model']}); base window {result['base_window']:,} tokens: "
        "contexts longer than that were CUT in the middle for the base model (see 'base prompt').",
        "Scores: S-NIAH fraction of gold strings found; OOLONG 0.75^|gold-pred| for numbers, else exact; "
        "Pairs F1. OOLONG-style tasks are generated from TREC, not OOLONG itself: not comparable with the paper.",
        "LM s sums every call (concurrent sub-calls overlap); wall/LM busy = wall time over the time in which "
        "at least one LM call was in flight (RLM).",
    ]
    return table(head, rows) + "\n" + "\n".join(notes)


def plot(result: dict, path: str | pathlib.Path) -> str:
    """Write a PNG (score vs context length, one panel per task kind, one line per method);
    returns a message (matplotlib missing: says so and writes nothing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install matplotlib)"
    summary = result["summary"]
    kinds = sorted({a["kind"] for a in summary})
    style = {"base": ("C0", "o", "-"), "rlm": ("C1", "s", "-"), "rlm_nosub": ("C2", "^", "--"),
             "summary": ("C3", "D", ":"), "codeact": ("C4", "v", "-.")}
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.9), squeeze=False)
    handles: dict[str, object] = {}
    for ax, kind in zip(axes[0], kinds):
        for method, label in METHOD_NAMES.items():
            pts = sorted((a["length"], a["score"] * 100, a["truncated"] > 0) for a in summary
                         if a["kind"] == kind and a["method"] == method)
            if not pts:
                continue
            color, marker, ls = style[method]
            handles[label], = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, linestyle=ls,
                                      color=color, label=label)
            cut = [p for p in pts if p[2]]
            if cut:  # hollow markers: the base model's prompt was cut to fit its window
                key = "base: context cut to fit its window"
                handles[key], = ax.plot([p[0] for p in cut], [p[1] for p in cut], "o", markersize=11,
                                        markerfacecolor="white", markeredgecolor=color, label=key)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-5, 105)
        ax.set_title(kind)
        ax.set_xlabel("context length (cl100k tokens)")
        ax.set_ylabel("score (%)")
        ax.grid(alpha=0.3)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles), fontsize=8)
    fig.suptitle(f"{result['model']}", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot: {path}"


def merge(paths: list[str], out: str) -> dict:
    """Merge quality results files (same model) into one: rows concatenated (a task × method
    already present is kept from the first file), summary recomputed; prints the table, writes
    the JSON and the PNG beside it."""
    import json

    from ..common import write_json

    merged: dict | None = None
    seen = set()
    for p in paths:
        d = json.loads(pathlib.Path(p).read_text())
        if merged is None:
            merged = {**d, "rows": [], "merged_from": []}
        merged["merged_from"].append({"path": str(p), "methods": d.get("methods"), "lengths": d.get("lengths"),
                                      "base_window": d.get("base_window"), "machine": d.get("machine")})
        for r in d["rows"]:
            t = r["task"]
            key = (t["kind"], t["length"], t["seed"], json.dumps(t["meta"], sort_keys=True), r["method"])
            if key not in seen:
                seen.add(key)
                merged["rows"].append(r)
    windows = sorted({m["base_window"] for m in merged["merged_from"] if "base" in (m.get("methods") or [])})
    if windows:
        merged["base_window"] = windows[0] if len(windows) == 1 else windows[-1]
        merged["base_windows"] = windows
    merged["summary"] = aggregate(merged["rows"])
    merged["methods"] = sorted({r["method"] for r in merged["rows"]})
    path = write_json(merged, "quality", out)
    print(render(merged))
    print(plot(merged, path.with_suffix(".png")))
    print(f"JSON: {path}")
    return merged
