"""``python -m bench``: the benchmark commands (see bench/README.md)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description="rlm_jupyter benchmarks")
    sub = p.add_subparsers(dest="cmd", required=True)

    o = sub.add_parser("overhead", help="framework cost, side by side with the official rlms==0.1.3")
    o.add_argument("--smoke", action="store_true", help="tiny workloads (CI), figures meaningless")
    o.add_argument("--sizes", type=float, nargs="+", help="context sizes for the load test, MB (10^6 chars)")
    o.add_argument("--official", choices=["auto", "yes", "no"], default="auto",
                   help="measure the official implementation (auto: install it into the bench venv if needed)")
    o.add_argument("--out", help="JSON path (default bench/results/overhead-<time>.json)")

    q = sub.add_parser("quality", help="score of base model vs RLM vs RLM without sub-calls")
    q.add_argument("--model", help="litellm model id (default: the embedded local model)")
    q.add_argument("--sub-model", help="litellm model id for sub-calls (default: --model)")
    q.add_argument("--tasks", nargs="+", default=["sniah", "oolong", "pairs"], choices=["sniah", "sniah_code", "oolong", "pairs"])
    q.add_argument("--methods", nargs="+", default=["base", "rlm", "rlm_nosub"], choices=["base", "rlm", "rlm_nosub", "summary", "codeact"])
    q.add_argument("--lengths", type=int, nargs="+", help="context lengths in cl100k tokens (default 8192 16384 32768)")
    q.add_argument("--seeds", type=int, default=3, help="tasks per (kind, length): seeds 0..N-1")
    q.add_argument("--first-seed", type=int, default=0, help="first seed (to extend an earlier run; merge the JSONs)")
    q.add_argument("--pairs-tasks", type=int, nargs="+", help="OOLONG-Pairs task ids (default: all 20)")
    q.add_argument("--max-iterations", type=int, default=8)
    q.add_argument("--window", type=int, help="base model's input window in tokens (default: litellm's model map)")
    q.add_argument("--max-seconds", type=float, help="per-run wall-clock limit of an RLM run (seconds)")
    q.add_argument("--smoke", action="store_true", help="scripted model, tiny tasks (CI)")
    q.add_argument("--out", help="JSON path (default bench/results/quality-<time>.json)")
    q.add_argument("--no-plot", action="store_true")

    pl = sub.add_parser("plot", help="PNG of score vs context length from a quality JSON")
    pl.add_argument("json")
    pl.add_argument("--out")

    m = sub.add_parser("merge", help="merge quality JSONs of one model into one table, JSON and plot")
    m.add_argument("jsons", nargs="+")
    m.add_argument("--out", required=True)

    i = sub.add_parser("interpreter", help="DSPy JupyterInterpreter vs a plain ipykernel vs in-process exec")
    i.add_argument("--smoke", action="store_true", help="tiny repeat counts (CI), figures meaningless")
    i.add_argument("--kinds", nargs="+", choices=["jupyter", "jupyter_nosandbox", "plain_kernel", "exec"])
    i.add_argument("--out", help="JSON path (default bench/results/interpreter-<time>.json)")

    sub.add_parser("setup-official", help="create the bench venv with rlms==0.1.3")
    a = p.parse_args(argv)

    if a.cmd == "overhead":
        from .overhead.run import run

        run(smoke=a.smoke, sizes_mb=a.sizes, use_official=a.official, out=a.out)
    elif a.cmd == "quality":
        from .quality.run import run

        run(a)
    elif a.cmd == "interpreter":
        from .interpreter import run

        run(smoke=a.smoke, kinds=a.kinds, out=a.out)
    elif a.cmd == "plot":
        import json

        from .quality.report import plot

        print(plot(json.load(open(a.json)), a.out or a.json.replace(".json", ".png")))
    elif a.cmd == "merge":
        from .quality.report import merge

        merge(a.jsons, a.out)
    elif a.cmd == "setup-official":
        from .official import OfficialUnavailable, ensure_official, official_version

        try:
            py = ensure_official()
        except OfficialUnavailable as exc:
            print(f"official implementation unavailable: {exc}", file=sys.stderr)
            return 1
        print(f"{py} (rlms {official_version(py)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
