"""The ``%%rlm`` cell magic: run an RLM against a notebook variable.

::

    %load_ext rlm_jupyter
    %%rlm docs --out result
    Which section explains how to read a file line by line?

The cell body is the query; ``docs`` (any variable of the notebook) becomes ``context`` in a
separate REPL-environment kernel, so nothing the model's code does can harm this kernel.
``result`` and ``_rlm`` receive the :class:`~rlm_jupyter.result.RLMResult`.
Defaults come from ``%config RLM.<trait> = ...`` (see :class:`rlm_jupyter.rlm.RLM`).
"""

from __future__ import annotations

import atexit
import difflib
import shlex
import sys

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import ArgMethodWrapper, MagicArgumentParser, argument, magic_arguments, parse_argstring
from traitlets import TraitError

from ..core.context import ContextError
from ..rlm import RLM
from ..followup import start_follow_up
from .view import LiveView, models_report, show_result
from .cells import CellsView, current_cell_id, tee

# %%rlm keeps the REPL environment kernels of this many newest runs alive (for %%rlm_step).
KEPT_ENVIRONMENTS = 3


def _unknown_variable(name: str, ns: dict) -> UsageError:
    names = [k for k in ns if not k.startswith("_")]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UsageError(f"%%rlm: no variable named {name!r} in the notebook.{hint}")


# %%rlm options and the RLM traits they set
OPTION_OF_TRAIT = {
    "model": "--model",
    "sub_model": "--sub-model",
    "max_iterations": "--max-iterations",
    "max_depth": "--max-depth",
    "timeout": "--timeout",
    "max_usd": "--budget",
    "tools": "--tools",
    "answer_schema": "--schema",
}


def _tools_and_schema(args, ns: dict) -> dict:
    """``tools``/``answer_schema`` of ``%%rlm --tools a,b --schema S`` from the notebook's
    namespace (``{}`` if not given); an unknown name is a one-line UsageError."""
    found = {}
    if args.tools is not None:
        names = [n.strip() for n in args.tools.split(",") if n.strip()]
        if not names:
            raise UsageError("%%rlm: --tools needs function names: --tools name1,name2")
        missing = [n for n in names if n not in ns]
        if missing:
            raise UsageError(f"%%rlm: --tools: no function named {missing[0]!r} in the notebook")
        found["tools"] = {n: ns[n] for n in names}
    if args.schema is not None:
        if args.schema not in ns:
            raise UsageError(f"%%rlm: --schema: no variable named {args.schema!r} in the notebook (a pydantic model class or a JSON schema dict)")
        found["answer_schema"] = ns[args.schema]
    return found


def _option_error(exc: Exception, given: dict) -> str:
    """One line for a TraitError of :class:`RLM`, naming the %%rlm option that set the trait."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    for trait, option in OPTION_OF_TRAIT.items():
        if trait in given:
            text = text.replace(f"RLM.{trait} ", f"{option} ")
    return text


def _check_model(model: str, option: str) -> None:
    """One-line UsageError for a model id neither this project's providers (``local/``,
    ``scripted/``, ``replay/``, registered ones) nor litellm can route."""
    from ..lm._litellm import litellm_module
    from ..lm.providers import lm_provider_names

    if "/" in model and model.split("/", 1)[0] in lm_provider_names():
        return  # set up (and checked) by its provider when the run starts
    litellm = litellm_module()
    try:
        litellm.get_llm_provider(model)
    except Exception:
        raise UsageError(
            f"%%rlm: unknown model id {model!r} for {option}: use a litellm id such as 'gpt-5-mini', "
            "'anthropic/claude-sonnet-4-5' or 'local/qwen2.5-coder-1.5b'"
        ) from None


# %rlm sub-commands: (name, help, [(argument names, argparse keywords)])
SUBCOMMANDS = [
    ("runs", "List this session's %%rlm runs (number, run id, status, USD, seconds, answer).", []),
    ("show", "Show run N of this session again, or open the player over a recorded run.", [
        (("run",), {"nargs": "?", "metavar": "N|ID|PATH", "help": "Run number or id (see %rlm runs), or a .jsonl/.ipynb recording or rlms log."}),
        (("completion",), {"nargs": "?", "type": int, "default": 0, "help": "Which completion of an rlms log holding several (default 0)."}),
    ]),
    ("models", "The configured root and sub-model, and whether they can be used.", []),
    ("config", "The %config RLM defaults.", []),
    ("close", "Shut down kept REPL environments.", [
        (("run",), {"nargs": "?", "default": "all", "metavar": "N|ID|all", "help": "A run number or id, or all (default)."}),
    ]),
    ("stop", "Stop the %%rlm --step runs still going.", []),
]
COMMANDS_HINT = "'runs', 'show N', 'models', 'config', 'stop' or 'close'"


class _subcommands(ArgMethodWrapper):
    """Adds :data:`SUBCOMMANDS` to a magic's parser as argparse sub-commands (``args.command``)."""

    def add_to_parser(self, parser, group):
        sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=MagicArgumentParser)
        for name, help_, arguments in SUBCOMMANDS:
            p = sub.add_parser(name, help=help_.replace("%", "%%"), description=help_)
            for names, kwargs in arguments:
                p.add_argument(*names, **{**kwargs, "help": kwargs["help"].replace("%", "%%")})


@magics_class
class RLMMagics(Magics):
    """``%%rlm`` and ``%rlm``; holds the configurable defaults (``%config RLM``)."""

    def __init__(self, shell) -> None:
        super().__init__(shell)
        self.defaults = RLM(parent=shell)
        self.runs: list = []
        self.stepped: list = []  # StepDrivers of %%rlm --step runs

    @magic_arguments()
    @argument("variable", nargs="?", default=None, help="Notebook variable used as the context (not with --continue).")
    @argument("--continue", dest="continue_run", metavar="R", default=None,
              help="Follow-up: ask in run R's kept REPL environment (R: a variable holding its result, a run number or id).")
    @argument("--step", action="store_true", help="Pause before each root code block: run, edit, skip, say, continue, stop.")
    @argument("--out", "-o", default=None, help="Variable that receives the RLMResult (also in _rlm).")
    @argument("--model", "-m", default=None, help="Root LM (litellm model id).")
    @argument("--sub-model", default=None, help="Sub-call LM (litellm model id).")
    @argument("--max-iterations", type=int, default=None, help="Root turns before a forced answer.")
    @argument("--max-depth", type=int, default=None, help="Recursion depth (1 = rlm_query is a plain sub-call).")
    @argument("--timeout", type=float, default=None, help="Per-code-block timeout, seconds.")
    @argument("--budget", type=float, default=None, help="Maximum USD for the whole run.")
    @argument("--quiet", "-q", action="store_true", help="Show only the final answer.")
    @argument("--no-cache", action="store_true", help="Do not use the persistent LM cache (RLM.cache) for this run.")
    @argument("--tools", default=None, metavar="NAME,NAME",
              help="Notebook functions the model's code may call by name (they run in this kernel, JSON in and out).")
    @argument("--schema", default=None, metavar="NAME",
              help="A pydantic model class (or JSON schema dict) of the notebook: the answer is validated against it.")
    @cell_magic
    def rlm(self, line: str, cell: str) -> None:
        """Run a Recursive Language Model: the cell body is the query, VARIABLE the context."""
        try:
            args = parse_argstring(self.rlm, line)
        except UsageError as exc:
            raise UsageError(f"%%rlm: {exc}") from None
        query = cell.strip()
        if not query:
            raise UsageError("%%rlm: the cell body (the query) is empty")
        ns = self.shell.user_ns
        earlier = self._earlier(args.continue_run, args.variable) if args.continue_run else None
        if earlier is None and args.variable is None:
            raise UsageError("%%rlm: which variable is the context? `%%rlm VARIABLE` (or `%%rlm --continue R` for a follow-up)")
        if earlier is None and args.variable not in ns:
            raise _unknown_variable(args.variable, ns)
        overrides = {
            "model": args.model,
            "sub_model": args.sub_model,
            "max_iterations": args.max_iterations,
            "max_depth": args.max_depth,
            "timeout": args.timeout,
            "max_usd": args.budget,
            "cache": False if args.no_cache else None,
        }
        for opt, key in (("--model", "model"), ("--sub-model", "sub_model")):
            if overrides[key]:
                _check_model(overrides[key], opt)
        overrides.update(_tools_and_schema(args, ns))
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            rlm = RLM(config=self.defaults.config, keep_environment=True, **given)
        except TraitError as exc:  # a bad option, or a bad %config default
            raise UsageError(f"%%rlm: {_option_error(exc, given)}") from None
        if args.step or rlm.step:
            return self._stepped(rlm, query, earlier, args)
        view = LiveView(quiet=args.quiet)
        cells = CellsView.for_current_cell(self.shell)  # the model's code as notebook cells (issue 5)
        try:
            on_event, on_tick = tee(view.on_event, cells.on_event), tee(view.tick, cells.tick)
            if earlier is not None:  # a follow-up in the earlier run's REPL environment (issue 11)
                result = start_follow_up(rlm, earlier, query, on_event=on_event).run(on_tick=on_tick)
            else:
                result = rlm.completion(query, ns[args.variable], on_event=on_event, on_tick=on_tick)
        except (ContextError, FileNotFoundError, TypeError) as exc:
            raise UsageError(f"%%rlm: {exc}") from None
        except BaseException as exc:  # internal failure or a second interrupt: close the live view, then raise
            view.finish(None, "stopped" if isinstance(exc, KeyboardInterrupt) else "error", f"{type(exc).__name__}: {exc}")
            cells.finish("stopped" if isinstance(exc, KeyboardInterrupt) else "error")
            raise
        answer = result.answer_text  # a typed answer's text (--schema)
        view.finish(answer, result.status, result.message, result.trajectory, result.usage, result.wall_seconds)
        cells.finish(result.status)
        self._store(result, args.out)

    def _store(self, result, out: str | None) -> None:
        """Record a finished run: ``%rlm runs``, ``_rlm`` and ``--out``."""
        self.runs.append(result)
        self._close_old_environments()
        self.shell.user_ns["_rlm"] = result
        if out:
            self.shell.user_ns[out] = result

    def _earlier(self, key: str, variable: str | None):
        """The run ``%%rlm --continue key`` follows up (a notebook variable holding an
        RLMResult, a run number or a run id), with a live REPL environment; else a UsageError."""
        from ..result import RLMResult

        if variable is not None:
            raise UsageError("%%rlm: give either a variable or --continue R: a follow-up's context is the earlier run's")
        value = self.shell.user_ns.get(key)
        run = value if isinstance(value, RLMResult) else self._find_run(key)
        if run.environment is None or not run.environment.alive:
            raise UsageError(f"%%rlm: the REPL environment of run {run.run_id} is closed; re-run its %%rlm cell")
        return run

    def _stepped(self, rlm, query: str, earlier, args) -> None:
        """``%%rlm --step``: start the run in the background and return at once; the step panel
        and the live view go on updating under this cell (see :mod:`.step_view`)."""
        import asyncio

        from .step_view import StepPanel, run_stepped

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise UsageError("%%rlm --step needs a Jupyter kernel with ipywidgets (its controls are widgets)") from None
        view = LiveView(quiet=args.quiet, use_widgets=True)
        cells = CellsView.for_current_cell(self.shell)
        panel = StepPanel()
        on_event = tee(view.on_event, cells.on_event, panel.on_event)
        try:
            if earlier is not None:
                session = start_follow_up(rlm, earlier, query, step=True, on_event=on_event)
            else:
                session = rlm.start(query, self.shell.user_ns[args.variable], step=True, on_event=on_event)
        except (ContextError, FileNotFoundError, TypeError, RuntimeError) as exc:
            raise UsageError(f"%%rlm: {exc}") from None
        panel.session = session
        cell_id = current_cell_id(self.shell)
        for d in self.stepped:  # re-running a --step cell replaces its earlier run, which may still be paused
            if cell_id is not None and d.cell_id == cell_id and not d.session.done:
                d.session.stop_nowait()
        driver = run_stepped(session, panel, view, cells, lambda result: self._store(result, args.out))
        driver.cell_id = cell_id
        self.stepped.append(driver)

    def _close_old_environments(self) -> None:
        """Keep only the newest :data:`KEPT_ENVIRONMENTS` environment kernels alive (follow-ups
        share their earlier run's kernel: it counts once, as recent as its newest run)."""
        envs: list = []
        for r in reversed(self.runs):
            e = r.environment
            if e is not None and e.alive and all(e is not x for x in envs):
                envs.append(e)
        for e in envs[KEPT_ENVIRONMENTS:]:
            e.close()

    def close_all(self) -> None:
        """Shut down every kept REPL environment (at exit, or ``%rlm close all``)."""
        for r in self.runs:
            try:
                r.close()
            except Exception:
                pass

    def _find_run(self, key: str):
        for i, r in enumerate(self.runs):
            if key == str(i) or key == r.run_id:
                return r
        raise UsageError(f"%rlm: no run {key!r}; `%rlm runs` lists them (by number or run id)")

    @magic_arguments()
    @argument("run", help="Run number (see %rlm runs) or run id.")
    @argument("iteration", nargs="?", default=None, help="Iteration the cell came from (informational).")
    @cell_magic
    def rlm_step(self, line: str, cell: str) -> None:
        """Run the cell in a finished run's REPL environment (where ``context`` and the model's
        variables live), not in this kernel, and show its outputs here."""
        args = parse_argstring(self.rlm_step, line)
        run = self._find_run(args.run)
        if run.environment is None or not run.environment.alive:
            raise UsageError(f"%%rlm_step: the REPL environment of run {run.run_id} is closed; re-run its %%rlm cell")
        res = run.environment.execute(cell)
        show_outputs(res.outputs)
        if res.notice:
            print(f"[{res.notice}]", file=sys.stderr)

    @magic_arguments(name="rlm")
    @_subcommands()
    @line_magic("rlm")
    def rlm_line(self, line: str) -> None:
        """Runs of this session, recorded runs, models and settings (default command: runs)."""
        try:
            args = self.rlm_line.parser.parse_args(shlex.split(line))  # POSIX quoting: paths with spaces
        except ValueError as exc:  # shlex: an unclosed quote
            raise UsageError(f"%rlm: {exc}") from None
        except UsageError as exc:
            if "invalid choice" in str(exc):
                raise UsageError(f"%rlm: unknown command {line.split()[0]!r}; use {COMMANDS_HINT}") from None
            raise UsageError(f"%rlm: {exc}") from None
        cmd = args.command or "runs"
        if cmd == "runs":
            if not self.runs:
                print("No %%rlm runs yet in this session.")
            for i, r in enumerate(self.runs):
                env = "environment alive" if r.environment is not None and r.environment.alive else "closed"
                print(f"[{i}] {r.run_id} {r.status:<15} ${r.usage.usd:.4f} {r.wall_seconds:7.1f} s  {env:<17} {(r.answer_text or '')[:60]!r}")
        elif cmd == "config":
            root, sub = self.defaults.resolved_models()
            print(f"root model: {root}\nsub model:  {sub}")
            for name in sorted(self.defaults.class_traits(config=True)):
                print(f"RLM.{name} = {getattr(self.defaults, name)!r}")
        elif cmd == "stop":
            going = [d for d in self.stepped if not d.session.done]
            for d in going:
                d.session.stop_nowait()
            print(f"stopping {len(going)} stepped run(s)" if going else "No stepped run is going.")
        elif cmd == "close":
            if args.run == "all":
                self.close_all()
            else:
                self._find_run(args.run).close()
        elif cmd == "models":
            print(models_report(*self.defaults.resolved_models()))
        elif args.run is None:
            raise UsageError("%rlm show: which run? `%rlm show N` (N from `%rlm runs`, or a run id), or `%rlm show PATH`")
        elif _is_recording(args.run):  # show: a recorded run opens the player (issue 11)
            from IPython.display import display

            from .player import show as player

            try:
                display(player(args.run, run=args.completion))
            except (FileNotFoundError, ValueError) as exc:
                raise UsageError(f"%rlm show: {exc}") from None
        else:
            show_result(self._find_run(args.run))


def _is_recording(word: str) -> bool:
    """Whether ``%rlm show WORD`` names a recorded run's file (``.jsonl``/``.ipynb``, or an
    existing file) rather than a run of this session."""
    import os

    return word.lower().endswith((".jsonl", ".ipynb")) or os.path.isfile(os.path.expanduser(word))


def show_outputs(outputs: list[dict]) -> None:
    """Re-publish nbformat outputs (from the environment kernel) in the current cell.

    The user's notebook treats them as its own (trusted) outputs, so they first pass
    :func:`~rlm_jupyter.safe_html.safe_outputs`: executable MIME types (JavaScript,
    widget views, …) are dropped, ``text/html`` is sanitized, images must be valid base64.
    """
    from IPython.display import display

    from ..safe_html import safe_outputs

    for out in safe_outputs(outputs):
        ot = out.get("output_type")
        if ot == "stream":
            stream = sys.stderr if out.get("name") == "stderr" else sys.stdout
            stream.write(out.get("text", ""))
            stream.flush()
        elif ot in ("display_data", "execute_result"):
            display(dict(out.get("data", {})), raw=True, metadata=dict(out.get("metadata", {})))
        elif ot == "error":
            print("\n".join(out.get("traceback") or [f"{out.get('ename')}: {out.get('evalue')}"]), file=sys.stderr)


def load_ipython_extension(ipython) -> None:
    magics = RLMMagics(ipython)
    ipython.register_magics(magics)
    atexit.register(magics.close_all)
    if magics.defaults not in ipython.configurables:
        ipython.configurables.append(magics.defaults)


def unload_ipython_extension(ipython) -> None:
    ipython.configurables[:] = [c for c in ipython.configurables if not isinstance(c, RLM)]
