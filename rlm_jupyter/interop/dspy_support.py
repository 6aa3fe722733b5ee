"""Host-side helpers of :class:`~rlm_jupyter.interop.dspy.JupyterInterpreter`: checking a
cell's syntax before it is sent, describing a tool to the kernel, writing the variables' pickle
file, and leaving this package's own frames out of tracebacks shown to the model. Binding a
tool call to the tool's signature and turning its result into JSON are shared with this
project's own host tools (:mod:`rlm_jupyter.core.tools`)."""

from __future__ import annotations

import ast
import keyword
import os
import pickle
import tempfile
from typing import Any, Callable

from ..core.context import pickling_error
from ..core.tools import by_keyword, jsonable  # noqa: F401 - shared with this project's own host tools
from ..core.tools import describe as describe_tool
from ..environment import kernel_side
from ..environment.kernel import strip_ansi

# names the environment kernel binds itself and restores (kernel_side's protocol helpers; its
# task helpers such as `search` may be shadowed by a tool) or that SUBMIT owns
KERNEL_NAMES = frozenset(getattr(kernel_side, "_PROTOCOL", ())) | {
    "llm_query", "llm_query_batched", "rlm_query", "FINAL", "FINAL_VAR", "SHOW_VARS", "SubcallError",
    "SUBMIT", "__builtins__", "get_ipython", "In", "Out", "exit", "quit",
}
# DSPy tools served by the kernel's own helpers of the same name: tool name -> request field
HELPER_TOOLS = {"llm_query": "prompt", "llm_query_batched": "prompts"}
IMMUTABLE = (str, bytes, int, float, bool, complex, type(None))
_UNSET = object()


def bad_names(tools: dict, variables: dict) -> tuple[list, list]:
    """``(tool names, variable names)`` that cannot be used: not identifiers, keywords, the
    kernel's own names (a tool may take the name of a helper it replaces, :data:`HELPER_TOOLS`),
    ``_rlm*``, or (variables) a tool's name."""

    def bad(n: Any, reserved: bool) -> bool:
        return not isinstance(n, str) or not n.isidentifier() or keyword.iskeyword(n) or reserved or n.startswith("_rlm")

    return (
        [n for n in tools if bad(n, n in KERNEL_NAMES and n not in HELPER_TOOLS)],
        [n for n in variables if bad(n, n in KERNEL_NAMES or n in tools)],
    )


def split_variables(sent: dict | None, variables: dict) -> tuple[list[str], dict]:
    """``(kept names, values to send)``: an immutable value (str, bytes, numbers, None) equal to
    the one ``sent`` before under its name is kept in the kernel, everything else is sent."""
    keep, send = [], {}
    for name, value in variables.items():
        prev = (sent or {}).get(name, _UNSET)
        if type(value) in IMMUTABLE and type(prev) is type(value) and (prev is value or prev == value):
            keep.append(name)
        else:
            send[name] = value
    return keep, send


def describe(name: str, fn: Callable) -> str:
    """Docstring of a tool's stub in the kernel: its signature and docstring."""
    spec = describe_tool(name, fn)
    return f"{name}{spec.signature}\n\n{spec.doc}".strip() + "\n\nRuns in the host process (a DSPy tool)."


_TRANSFORMER = None


def check_syntax(code: str) -> None:
    """Raise ``SyntaxError`` if ``code`` is not a valid cell (IPython syntax, top-level ``await``).

    Raises:
        SyntaxError: with the line number and the line, e.g. ``invalid syntax (line 2: 'x = = 1')``.
    """
    global _TRANSFORMER
    try:  # plain Python (the common case): CPython's parser alone, ~100 times faster
        compile(code, "<cell>", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
        return
    except SyntaxError:
        pass  # maybe IPython syntax (%magic, !shell): transform it as the kernel will
    except ValueError:
        return  # e.g. a NUL byte: the kernel says what is wrong
    if _TRANSFORMER is None:
        from IPython.core.inputtransformer2 import TransformerManager

        _TRANSFORMER = TransformerManager()
    try:
        cell = _TRANSFORMER.transform_cell(code)
    except SyntaxError:
        raise
    except Exception:
        return  # let the kernel judge what IPython's transformers cannot
    try:
        compile(cell, "<cell>", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as exc:
        line = (exc.text or "").strip()
        where = f"line {exc.lineno}: {line!r}" if line else f"line {exc.lineno}"
        raise SyntaxError(f"{exc.msg} ({where})") from None


_OWN_FILES = (
    "rlm_jupyter/interop/dspy_kernel_side.py", "rlm_jupyter/environment/kernel_side.py", "rlm_jupyter/environment/tools_side.py",
)


def without_own_frames(outputs: list[dict]) -> list[dict]:
    """Outputs with the traceback frames of this package's kernel-side code left out (the
    model sees its own lines and the error message, not the stubs' internals)."""
    shown = []
    for out in outputs:
        if out.get("output_type") == "error" and out.get("traceback"):
            frames = [f for f in out["traceback"] if not any(name in strip_ansi(f) for name in _OWN_FILES)]
            out = {**out, "traceback": frames}
        shown.append(out)
    return shown


def write_variables(repl: Any, send: dict[str, Any]) -> str:
    """Pickle ``send`` (name -> value, protocol 5) into a private file in the kernel's work dir,
    readable by the sandbox's uid; returns its path. Nothing is ever unpickled here.

    Raises:
        CodeInterpreterError: a value cannot be pickled (the message names the variable).
    """
    from dspy.primitives.code_interpreter import CodeInterpreterError

    try:
        data = pickle.dumps(send, protocol=5)
    except Exception:
        for name, value in send.items():
            error = pickling_error(value)
            if error is not None:
                raise CodeInterpreterError(
                    f"variable {name!r} ({type(value).__name__}) cannot be pickled to send it to the kernel: {error}"
                ) from None
        raise
    fd, path = tempfile.mkstemp(prefix="vars-", dir=repl.workdir)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if repl.sandboxed and repl.run_as is not None:  # readable by the sandbox's uid
        os.chown(path, repl.run_as, repl.run_as)
    return path
