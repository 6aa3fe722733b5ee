"""The ``%%rlm`` cell magic: run an RLM against a notebook variable.

::

    %load_ext rlm_jupyter
    %%rlm docs --out result
    Which section explains how to read a file line by line?

The cell body is the query; ``docs`` (any variable of the notebook) becomes ``context`` in a
separate REPL-environment kernel, so nothing the model's code does can harm this kernel.
``result`` and ``_rlm`` receive the :class:`~rlm_jupyter.core.trajectory.RLMResult`.
Defaults come from ``%config RLM.<trait> = ...`` (see :class:`rlm_jupyter.rlm.RLM`).
"""

from __future__ import annotations

import atexit
import difflib
import shlex
import sys

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ..core.context import ContextError
from ..rlm import RLM
from .view import LiveView, models_report, show_result
from .cells import CellsView, tee

# %%rlm keeps the REPL environment kernels of this many newest runs alive (for %%rlm_step).
KEPT_ENVIRONMENTS = 3


def _unknown_variable(name: str, ns: dict) -> UsageError:
    names = [k for k in ns if not k.startswith("_")]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UsageError(f"%%rlm: no variable named {name!r} in the notebook.{hint}")


def _check_model(model: str, option: str) -> None:
    """One-line UsageError for a model id litellm cannot route."""
    from ..lm._litellm import litellm_module

    litellm = litellm_module()
    try:
        litellm.get_llm_provider(model)
    except Exception:
        raise UsageError(
            f"%%rlm: unknown model id {model!r} for {option}: use a litellm id such as 'gpt-5-mini', "
            "'anthropic/claude-sonnet-4-5' or 'local/qwen2.5-coder-1.5b'"
        ) from None


@magics_class
class RLMMagics(Magics):
    """``%%rlm`` and ``%rlm``; holds the configurable defaults (``%config RLM``)."""

    def __init__(self, shell) -> None:
        super().__init__(shell)
        self.defaults = RLM(parent=shell)
        self.runs: list = []

    @magic_arguments()
    @argument("variable", help="Notebook variable used as the context.")
    @argument("--out", "-o", default=None, help="Variable that receives the RLMResult (also in _rlm).")
    @argument("--model", "-m", default=None, help="Root LM (litellm model id).")
    @argument("--sub-model", default=None, help="Sub-call LM (litellm model id).")
    @argument("--max-iterations", type=int, default=None, help="Root turns before a forced answer.")
    @argument("--max-depth", type=int, default=None, help="Recursion depth (1 = rlm_query is a plain sub-call).")
    @argument("--timeout", type=float, default=None, help="Per-code-block timeout, seconds.")
    @argument("--budget", type=float, default=None, help="Maximum USD for the whole run.")
    @argument("--quiet", "-q", action="store_true", help="Show only the final answer.")
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
        if args.variable not in ns:
            raise _unknown_variable(args.variable, ns)
        overrides = {
            "model": args.model,
            "sub_model": args.sub_model,
            "max_iterations": args.max_iterations,
            "max_depth": args.max_depth,
            "timeout": args.timeout,
            "max_usd": args.budget,
        }
        for opt, key in (("--model", "model"), ("--sub-model", "sub_model")):
            if overrides[key]:
                _check_model(overrides[key], opt)
        rlm = RLM(config=self.defaults.config, keep_environment=True, **{k: v for k, v in overrides.items() if v is not None})
        view = LiveView(quiet=args.quiet)
        cells = CellsView.for_current_cell(self.shell)  # the model's code as notebook cells (issue 5)
        try:
            result = rlm.completion(query, ns[args.variable], on_event=tee(view.on_event, cells.on_event), on_tick=tee(view.tick, cells.tick))
        except (ContextError, FileNotFoundError, TypeError) as exc:
            raise UsageError(f"%%rlm: {exc}") from None
        except BaseException as exc:  # internal failure or a second interrupt: close the live view, then raise
            view.finish(None, "stopped" if isinstance(exc, KeyboardInterrupt) else "error", f"{type(exc).__name__}: {exc}")
            cells.finish("stopped" if isinstance(exc, KeyboardInterrupt) else "error")
            raise
        view.finish(result.answer, result.status, result.message, result.trajectory, result.usage, result.wall_seconds)
        cells.finish(result.status)
        self.runs.append(result)
        self._close_old_environments()
        ns["_rlm"] = result
        if args.out:
            ns[args.out] = result

    def _close_old_environments(self) -> None:
        """Keep only the newest :data:`KEPT_ENVIRONMENTS` runs' environment kernels alive."""
        live = [r for r in self.runs if r.environment is not None and r.environment.alive]
        for r in live[:-KEPT_ENVIRONMENTS]:
            r.close()

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

    @line_magic("rlm")
    def rlm_line(self, line: str) -> None:
        """``%rlm runs`` lists this session's runs; ``%rlm show N`` shows run N again;
        ``%rlm models`` the configured models and whether they can be used; ``%rlm config`` the
        defaults; ``%rlm close R|all`` shuts down kept REPL environments."""
        words = shlex.split(line)
        cmd = words[0] if words else "runs"
        if cmd == "runs":
            if not self.runs:
                print("No %%rlm runs yet in this session.")
            for i, r in enumerate(self.runs):
                env = "environment alive" if r.environment is not None and r.environment.alive else "closed"
                print(f"[{i}] {r.run_id} {r.status:<15} ${r.usage.usd:.4f} {r.wall_seconds:7.1f} s  {env:<17} {(r.answer or '')[:60]!r}")
        elif cmd == "config":
            root, sub = self.defaults.resolved_models()
            print(f"root model: {root}\nsub model:  {sub}")
            for name in sorted(self.defaults.class_own_traits(config=True)):
                print(f"RLM.{name} = {getattr(self.defaults, name)!r}")
        elif cmd == "close":
            if len(words) < 2 or words[1] == "all":
                self.close_all()
            else:
                self._find_run(words[1]).close()
        elif cmd == "models":
            print(models_report(*self.defaults.resolved_models()))
        elif cmd == "show":
            if len(words) < 2:
                raise UsageError("%rlm show: which run? `%rlm show N` (N from `%rlm runs`, or a run id)")
            show_result(self._find_run(words[1]))
        else:
            raise UsageError(f"%rlm: unknown command {cmd!r}; use 'runs', 'show N', 'models', 'config' or 'close'")


def show_outputs(outputs: list[dict]) -> None:
    """Re-publish nbformat outputs (from the environment kernel) in the current cell."""
    from IPython.display import display

    for out in outputs:
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
