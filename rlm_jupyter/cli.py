"""Command line: ``rlm-jupyter run --context PATH --query TEXT [--model ID] [--out FILE]``.

Progress goes to stderr (one line per event of interest), the answer to stdout, and the
trajectory to ``--out`` (``.ipynb`` or ``.jsonl``; default ``rlm_runs/<run id>.ipynb``).
Exit status: 0 when the run produced an answer, 1 when it ended without one, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import threading

from .core import events as ev
from .core.stats import RunStats


class StderrProgress:
    """Event subscriber printing a short line per root turn, code block and sub-call."""

    def __init__(self, stream=None, verbose: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.stats = RunStats()
        self._lock = threading.Lock()

    def __call__(self, e: ev.Event) -> None:
        with self._lock:
            self.stats.apply(e)
            line = self._line(e)
            if line:
                print(line, file=self.stream, flush=True)

    def _line(self, e: ev.Event) -> str | None:
        d = e.data
        pad = "  " * e.depth
        t = f"[{e.t:7.1f}s]"
        if e.kind == ev.ITERATION_STARTED:
            return f"{t} {pad}{e.node_id}: iteration {d['iteration']}/{d['max_iterations']}"
        if e.kind == ev.ROOT_REPLY:
            u = d.get("usage") or {}
            first = (d.get("text") or "").strip().splitlines()[:1]
            return f"{t} {pad}  root reply ({u.get('output_tokens', 0)} tokens, {u.get('seconds', 0):.1f} s): {first[0][:80] if first else ''}"
        if e.kind == ev.CODE_FINISHED:
            return f"{t} {pad}  code block {d['block'] + 1}: {d['status']} in {d['seconds']:.2f} s, {len(d.get('text') or ''):,} characters of output"
        if e.kind == ev.SUBCALL_FINISHED and (self.verbose or d.get("error")):
            return f"{t} {pad}  sub-call {e.node_id}: {'error: ' + d['error'] if d.get('error') else 'ok'}"
        if e.kind in (ev.NOTICE, ev.LIMIT, ev.ERROR):
            return f"{t} {pad}  {e.kind}: {d.get('message')}"
        if e.kind == ev.RUN_FINISHED and e.node_id == "0":
            return f"{t} {self.stats.line()}"
        return None


def _load_context(path: str):
    """A context from a path: ``.json`` parsed, a folder as a dict of texts, else text."""
    p = pathlib.Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--context: no such file or folder: {path}")
    if p.is_file() and p.suffix.lower() == ".json":
        return json.loads(p.read_text(encoding="utf-8"))
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlm-jupyter", description="Recursive Language Models with a Jupyter kernel REPL.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Answer a query about a file or folder with an RLM.")
    run.add_argument("--context", required=True, help="File (text; .json is parsed) or folder (dict of relative path -> text).")
    run.add_argument("--query", required=True, help="The question.")
    run.add_argument("--model", "-m", default="", help="Root LM, a litellm id (default: provider key's model, else the embedded model).")
    run.add_argument("--sub-model", default="", help="Sub-call LM, a litellm id.")
    run.add_argument("--out", "-o", default=None, help="Trajectory file: .ipynb or .jsonl (default rlm_runs/<run id>.ipynb).")
    run.add_argument("--max-iterations", type=int, default=30)
    run.add_argument("--max-depth", type=int, default=1)
    run.add_argument("--timeout", type=float, default=120.0, help="Per-code-block timeout, seconds.")
    run.add_argument("--budget", type=float, default=None, help="Maximum USD for the whole run.")
    run.add_argument("--max-seconds", type=float, default=None, help="Maximum wall-clock seconds for the whole run.")
    run.add_argument("--verbose", "-v", action="store_true", help="Also print every sub-call.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .rlm import RLM
    from .core.context import ContextError

    if args.out and pathlib.Path(args.out).suffix.lower() not in (".ipynb", ".jsonl"):
        print(f"rlm-jupyter: --out must end in .ipynb or .jsonl: {args.out}", file=sys.stderr)
        return 2
    try:
        context = _load_context(args.context)
    except (FileNotFoundError, ValueError) as exc:
        print(f"rlm-jupyter: {exc}", file=sys.stderr)
        return 2
    rlm = RLM(
        model=args.model,
        sub_model=args.sub_model,
        max_iterations=args.max_iterations,
        max_depth=args.max_depth,
        timeout=args.timeout,
        max_usd=args.budget,
        max_seconds=args.max_seconds,
    )
    root, sub = rlm.resolved_models()
    print(f"rlm-jupyter: root model {root}, sub-model {sub}", file=sys.stderr)
    progress = StderrProgress(verbose=args.verbose)
    try:
        result = rlm.completion(args.query, context, on_event=progress)
    except (ContextError, FileNotFoundError, TypeError) as exc:
        print(f"rlm-jupyter: {exc}", file=sys.stderr)
        return 2
    out = pathlib.Path(args.out) if args.out else pathlib.Path("rlm_runs") / f"{result.run_id}.ipynb"
    saved = result.save(out)
    u = result.usage
    print(
        f"rlm-jupyter: {result.status} in {result.wall_seconds:.1f} s wall, {u.seconds:.1f} s LM time "
        f"({u.calls} LM calls), {u.total_tokens:,} tokens, ${u.usd:.4f}",
        file=sys.stderr,
    )
    print(f"rlm-jupyter: trajectory saved to {saved}", file=sys.stderr)
    if result.answer is None:
        print(f"rlm-jupyter: no answer ({result.status}: {result.message})", file=sys.stderr)
        return 1
    print(result.answer)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
