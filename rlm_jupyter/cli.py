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


# The options of ``rlm-jupyter run`` that set an RLM trait: (trait, option names). Type, help
# and default come from the trait (rlm_jupyter.settings.RLMSettings): defaults live there only.
TRAIT_OPTIONS = [
    ("model", ("--model", "-m")),
    ("sub_model", ("--sub-model",)),
    ("max_iterations", ("--max-iterations",)),
    ("max_depth", ("--max-depth",)),
    ("timeout", ("--timeout",)),
    ("max_usd", ("--budget",)),
    ("max_seconds", ("--max-seconds",)),
    ("max_subcalls", ("--max-subcalls",)),
    ("max_tokens", ("--max-tokens",)),
    ("log_level", ("--log-level",)),
]


def _trait_type(name: str):
    """An argparse ``type`` for RLM trait ``name``: the text converted to the trait's kind (int,
    float or str) and checked by the trait's own validation; a bad value is a one-line
    ``ArgumentTypeError`` (argparse exits with status 2)."""
    from traitlets import Float, Int, TraitError

    from .settings import RLMSettings

    trait = RLMSettings.class_traits()[name]
    kind = int if isinstance(trait, Int) else float if isinstance(trait, Float) else str

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'a whole number' if kind is int else 'a number'}, not {text!r}") from None
        try:
            RLMSettings(**{name: value})
        except TraitError as exc:
            raise argparse.ArgumentTypeError(str(exc).splitlines()[0].replace(f"RLM.{name} ", "", 1)) from None
        return value

    parse.__name__ = kind.__name__
    return parse


def add_trait_options(parser: argparse.ArgumentParser, table=TRAIT_OPTIONS) -> None:
    """Add one option per ``(trait, names)`` of ``table``: ``dest`` the trait's name, ``help``
    its help text and default, ``default`` ``argparse.SUPPRESS`` (an option not given leaves the
    trait's default)."""
    from .settings import RLMSettings

    traits = RLMSettings.class_traits()
    for name, names in table:
        trait = traits[name]
        shown = trait.default_value if trait.default_value not in ("", None) else "unset"
        help_ = f"{trait.help} (RLM.{name}; default: {shown})".replace("%", "%%")
        choices = getattr(trait, "values", None)
        parser.add_argument(*names, dest=name, type=_trait_type(name), default=argparse.SUPPRESS, help=help_,
                            metavar="|".join(v for v in choices if v) if choices else None)


def build_parser() -> argparse.ArgumentParser:
    """The ``rlm-jupyter`` parser (sub-command ``run``); its RLM options come from the traits
    (:data:`TRAIT_OPTIONS`)."""
    parser = argparse.ArgumentParser(prog="rlm-jupyter", description="Recursive Language Models with a Jupyter kernel REPL.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Answer a query about a file or folder with an RLM.")
    run.add_argument("--context", required=True, help="File (text; .json is parsed) or folder (dict of relative path -> text).")
    run.add_argument("--query", required=True, help="The question.")
    run.add_argument("--out", "-o", default=None, help="Trajectory file: .ipynb or .jsonl (default rlm_runs/<run id>.ipynb).")
    add_trait_options(run)
    run.add_argument("--verbose", "-v", action="store_true", help="Also print every sub-call.")
    run.add_argument("--no-cache", action="store_true", help="Do not read or write the persistent LM cache (greedy calls are cached by default; RLM.cache).")
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
    from traitlets import TraitError

    try:
        given = {name: getattr(args, name) for name, _ in TRAIT_OPTIONS if hasattr(args, name)}
        rlm = RLM(**given, **({"cache": False} if args.no_cache else {}))
    except TraitError as exc:  # a setting no option type catches
        print(f"rlm-jupyter: {exc}", file=sys.stderr)
        return 2
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
