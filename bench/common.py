"""Helpers shared by the benchmarks: paths, results files, machine facts, tables, tokens."""

from __future__ import annotations

import datetime as _dt
import json
import os
import pathlib
import platform
import statistics
import subprocess
from typing import Any, Iterable, Sequence

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
# Shared data lives beside the repo (../shared/data); $RLM_BENCH_DATA overrides it.
DATA_DIR = pathlib.Path(os.environ.get("RLM_BENCH_DATA") or REPO.parent / "shared" / "data")


def cache_dir() -> pathlib.Path:
    """Benchmark cache outside the repo: ``$RLM_BENCH_CACHE`` or ``~/.cache/rlm_jupyter/bench``."""
    if os.environ.get("RLM_BENCH_CACHE"):
        return pathlib.Path(os.environ["RLM_BENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "rlm_jupyter" / "bench"


def machine_info() -> dict[str, Any]:
    """Facts that make timings comparable: CPU model, cores, memory (GiB), load average
    (1/5/15 min) at the time of the call, Python and package versions, git commit."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        info["loadavg"] = [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        pass
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["mem_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        info["git_commit"] = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except Exception:
        pass
    from importlib import metadata

    for pkg in ("litellm", "ipykernel", "jupyter_client", "llama_cpp_python"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return info


def write_json(data: dict, name: str, out: str | os.PathLike | None = None) -> pathlib.Path:
    """Write ``data`` as indented JSON to ``out`` or ``bench/results/<name>-<UTC time>.json``;
    returns the path."""
    if out is None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS_DIR / f"{name}-{stamp}.json"
    else:
        path = pathlib.Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table (columns padded to width; floats as given, pre-format them)."""
    rows = [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join([line, sep, *body])


def median(xs: Sequence[float]) -> float | None:
    """Median of ``xs`` (``None`` when empty)."""
    return statistics.median(xs) if xs else None


def fmt(x: float | None, unit: str = "", digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits and a unit; ``-`` for ``None``."""
    if x is None:
        return "-"
    return f"{x:.{digits}g}{unit}"


_ENCODING = None


def encoding():
    """The tiktoken ``cl100k_base`` encoding (files bundled inside litellm: works offline)."""
    global _ENCODING
    if _ENCODING is None:
        import importlib.util

        spec = importlib.util.find_spec("litellm")
        if spec is not None and spec.submodule_search_locations:
            bundled = pathlib.Path(list(spec.submodule_search_locations)[0]) / "litellm_core_utils" / "tokenizers"
            if bundled.is_dir():
                os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(bundled))
        import tiktoken

        _ENCODING = tiktoken.get_encoding("cl100k_base")
    return _ENCODING


def count_tokens(text: str) -> int:
    """Tokens of ``text`` in ``cl100k_base`` (the unit of the paper's and the data README's lengths)."""
    return len(encoding().encode(text, disallowed_special=()))
