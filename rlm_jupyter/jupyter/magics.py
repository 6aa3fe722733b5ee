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

import difflib
import shlex

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ..core.context import ContextError
from ..rlm import RLM
from .progress import ProgressView


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
        rlm = RLM(config=self.defaults.config, **{k: v for k, v in overrides.items() if v is not None})
        view = ProgressView(quiet=args.quiet)
        try:
            result = rlm.completion(query, ns[args.variable], on_event=view.on_event, on_tick=view.tick)
        except (ContextError, FileNotFoundError, TypeError) as exc:
            raise UsageError(f"%%rlm: {exc}") from None
        view.finish(result.answer, result.status, result.message)
        self.runs.append(result)
        ns["_rlm"] = result
        if args.out:
            ns[args.out] = result

    @line_magic("rlm")
    def rlm_line(self, line: str) -> None:
        """``%rlm runs`` lists this session's runs; ``%rlm config`` shows the defaults."""
        words = shlex.split(line)
        cmd = words[0] if words else "runs"
        if cmd == "runs":
            if not self.runs:
                print("No %%rlm runs yet in this session.")
            for i, r in enumerate(self.runs):
                print(f"[{i}] {r.run_id} {r.status:<15} ${r.usage.usd:.4f} {r.wall_seconds:7.1f} s  {(r.answer or '')[:60]!r}")
        elif cmd == "config":
            root, sub = self.defaults.resolved_models()
            print(f"root model: {root}\nsub model:  {sub}")
            for name in sorted(self.defaults.class_own_traits(config=True)):
                print(f"RLM.{name} = {getattr(self.defaults, name)!r}")
        else:
            raise UsageError(f"%rlm: unknown command {cmd!r}; use 'runs' or 'config'")


def load_ipython_extension(ipython) -> None:
    magics = RLMMagics(ipython)
    ipython.register_magics(magics)
    if magics.defaults not in ipython.configurables:
        ipython.configurables.append(magics.defaults)


def unload_ipython_extension(ipython) -> None:
    ipython.configurables[:] = [c for c in ipython.configurables if not isinstance(c, RLM)]
