"""Host tools: the user's functions that the model's code calls by name from the REPL
environment, run in the host process (the user's), never in the kernel.

The kernel holds only a stub per tool (:mod:`rlm_jupyter.environment.tools_side`); a call sends
``{"op": "tool", "name": str, "call": "<JSON [args, kwargs]>"}`` over the sub-call channel and
gets back the tool's result as a JSON string. Nothing but JSON crosses, so no host object,
key or function body ever enters the kernel. A tool that raises makes the call fail with
``"<Type>: <message>"``, which the stub raises in the model's code as ``ToolError``.

This module has no Jupyter or kernel imports: :mod:`rlm_jupyter.core.loop` serves the calls
(:func:`serve`), :mod:`rlm_jupyter.interop.dspy` reuses the description, binding and JSON parts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import keyword
from typing import Any, Callable, Iterable, Mapping

from . import events as ev

MAX_SHOWN_CALL = 2_000  # characters of a call's text kept in the trajectory (``prompt`` field)
MAX_DOC = 2_000  # characters of a tool's docstring put into the root's prompt


@dataclasses.dataclass
class ToolSpec:
    """One host tool.

    Attributes:
        name: the name the model's code calls it by (a Python identifier).
        fn: the host callable (sync, or ``async def``: awaited on the run's event loop).
        signature: its signature as text, e.g. ``"(query: str, k: int = 3) -> list"``
            (``"(...)"`` when Python cannot tell).
        doc: its docstring (cleaned by :func:`inspect.getdoc`), possibly ``""``.
    """

    name: str
    fn: Callable[..., Any]
    signature: str
    doc: str

    def stub_doc(self) -> str:
        """Docstring of the tool's stub in the kernel: signature, docstring, where it runs."""
        return f"{self.name}{self.signature}\n\n{self.doc}".strip() + "\n\nRuns in the host process (a host tool)."


def signature_text(fn: Callable) -> str:
    """``fn``'s signature as text (``"(...)"`` when it has none Python can read)."""
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(...)"


def describe(name: str, fn: Callable) -> ToolSpec:
    """A :class:`ToolSpec` of ``fn`` called ``name``."""
    return ToolSpec(name, fn, signature_text(fn), inspect.getdoc(fn) or "")


def make_tools(tools: Iterable[Callable] | Mapping[str, Callable] | None, reserved: Iterable[str] = ()) -> dict[str, ToolSpec]:
    """Check and describe the tools of a run.

    Args:
        tools: callables (named by their ``__name__``) or ``{name: callable}``; ``None``: none.
        reserved: names the tools may not take (the REPL's own helpers, ``context``).

    Returns:
        ``{name: ToolSpec}`` in the given order.

    Raises:
        TypeError: ``tools`` is not a list/tuple/dict, or an item is not callable.
        ValueError: a name is not a Python identifier, is a keyword, starts with ``_``, is
            reserved, or is given twice.
    """
    if tools is None:
        return {}
    if isinstance(tools, Mapping):
        items = list(tools.items())
    elif isinstance(tools, (list, tuple)):
        items = []
        for fn in tools:
            if not callable(fn):
                raise TypeError(f"tools must be callables; got {type(fn).__name__} {str(fn)[:60]!r}")
            items.append((getattr(fn, "__name__", None), fn))
    else:
        raise TypeError(f"tools must be a list of functions or a dict of name -> function, not {type(tools).__name__}")
    reserved = set(reserved)
    specs: dict[str, ToolSpec] = {}
    for name, fn in items:
        if not callable(fn):
            raise TypeError(f"tool {name!r} is not callable ({type(fn).__name__})")
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_") or name == "<lambda>":
            raise ValueError(
                f"tool name {name!r} is not usable: a tool needs a Python identifier not starting with '_' "
                "(pass {'name': fn} to name a lambda or a callable object)"
            )
        if name in reserved:
            raise ValueError(f"tool name {name!r} is taken by the REPL environment's own helpers; pass {{'other_name': fn}}")
        if name in specs:
            raise ValueError(f"two tools are named {name!r}; pass {{'name': fn}} to name them apart")
        specs[name] = describe(name, fn)
    return specs


def prompt_lines(tools: Mapping[str, ToolSpec]) -> str:
    """The tools as lines of the root's system prompt (``""`` for none): name, signature and
    the docstring (at most :data:`MAX_DOC` characters)."""
    if not tools:
        return ""
    lines = ["- Host tools (the user's functions; they run outside the REPL, arguments and results are JSON values; "
             "a failing call raises ToolError with the tool's error):"]
    for spec in tools.values():
        doc = spec.doc if len(spec.doc) <= MAX_DOC else spec.doc[: MAX_DOC - 3] + "..."
        doc = "\n".join(("    " + line).rstrip() for line in doc.splitlines())
        lines.append(f"  - `{spec.name}{spec.signature}`" + (f":\n{doc}" if doc else ""))
    return "\n".join(lines) + "\n"


def by_keyword(name: str, fn: Callable, args: list, kwargs: dict) -> tuple[list, dict]:
    """Bind a call to the tool's signature and pass by keyword what may go by keyword (DSPy
    wraps tools as ``invoke(**kwargs)`` carrying the function's signature, and its own
    interpreters turn positional arguments into keywords the same way).

    Raises:
        TypeError: the arguments do not fit the signature (the message names the tool).
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return list(args), dict(kwargs)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{name}{sig}: {exc}") from None
    params = sig.parameters
    star = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params.values())
    pos, kw = [], {}
    for arg, value in bound.arguments.items():
        kind = params[arg].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            pos.extend(value)
        elif kind is inspect.Parameter.VAR_KEYWORD:
            kw.update(value)
        elif kind is inspect.Parameter.POSITIONAL_ONLY or (star and kind is inspect.Parameter.POSITIONAL_OR_KEYWORD):
            pos.append(value)
        else:
            kw[arg] = value
    return pos, kw


def jsonable(value: Any) -> Any:
    """``value`` as JSON-compatible Python (pydantic models, dataclasses, datetimes, sets ...
    through ``pydantic_core`` when it is installed).

    Raises:
        TypeError: it cannot be turned into JSON.
    """
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    try:
        from pydantic_core import PydanticSerializationError, to_jsonable_python
    except ImportError:  # pragma: no cover - pydantic is a dependency of litellm and of this package
        json.dumps(value)
        return value
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise TypeError(str(exc)) from None


def encode_result(name: str, result: Any) -> str:
    """A tool's result as the JSON string sent to the kernel.

    Raises:
        TypeError: it is not a JSON value (the message says what the tool returned).
    """
    try:
        return json.dumps(jsonable(result))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name}() returned a {type(result).__name__}, which cannot be sent to the REPL "
            f"(JSON values only: str, int, float, bool, None, list, dict): {exc}"
        ) from None


def decode_call(call: Any) -> tuple[list, dict]:
    """``[args, kwargs]`` from a request's ``call`` field (a JSON string).

    Raises:
        ValueError: it is not ``[list, dict]`` JSON.
    """
    try:
        args, kwargs = json.loads(call or "[[], {}]")
    except (TypeError, ValueError):
        raise ValueError("malformed tool call (expected the JSON of [args, kwargs])") from None
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("malformed tool call (expected the JSON of [args, kwargs])")
    return args, kwargs


def call_text(name: str, args: list, kwargs: dict) -> str:
    """How a call reads in the trajectory: ``lookup('cats', k=3)`` (at most
    :data:`MAX_SHOWN_CALL` characters)."""
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    text = f"{name}({', '.join(parts)})"
    return text if len(text) <= MAX_SHOWN_CALL else text[: MAX_SHOWN_CALL - 4] + "...)"


async def invoke(spec: ToolSpec, args: list, kwargs: dict) -> Any:
    """Run a tool: a sync function in a worker thread (under the caller's ``contextvars``), an
    async one on this event loop. Whatever it raises propagates."""
    args, kwargs = by_keyword(spec.name, spec.fn, args, kwargs)
    if inspect.iscoroutinefunction(spec.fn):
        return await spec.fn(*args, **kwargs)
    result = await asyncio.to_thread(spec.fn, *args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


async def serve(node: Any, payload: dict) -> str:
    """Serve one ``tool`` request of ``node``'s REPL environment (an :class:`~.loop.RLMNode`):
    run the tool, record it like a sub-call (``subcall_started``/``subcall_finished`` events
    with ``op="tool"``, ``model`` = the tool's name, ``prompt`` = the call's text, ``answer`` =
    the result's JSON), return the result's JSON.

    Raises:
        NameError: no tool of that name in this run. ValueError: a malformed request.
        LimitExceeded: the run's budget is spent (the run is stopping). Anything the tool
        raises, and TypeError for a result that is not JSON (the kernel's stub raises
        ``ToolError`` with the message).
    """
    tools: Mapping[str, ToolSpec] = node.tree.settings.tools
    name = payload.get("name")
    spec = tools.get(name) if isinstance(name, str) else None
    if spec is None:
        raise NameError(f"no tool named {str(name)[:100]!r} in this run; the tools are {sorted(tools)}")
    args, kwargs = decode_call(payload.get("call"))
    node.tree.budget.check()
    sid = f"{node.node_id}.s{next(node._sub_ids)}"
    emit = node.tree.bus.emit
    emit(ev.SUBCALL_STARTED, sid, node.node_id, node.depth + 1, op="tool", model=name,
         prompt=call_text(name, args, kwargs), batch=None)
    try:
        text = encode_result(name, await invoke(spec, args, kwargs))
    except BaseException as exc:
        error = "stopped" if isinstance(exc, asyncio.CancelledError) else f"{type(exc).__name__}: {exc}"
        emit(ev.SUBCALL_FINISHED, sid, node.node_id, node.depth + 1, answer=None, usage=None, error=error, cached=False)
        raise
    emit(ev.SUBCALL_FINISHED, sid, node.node_id, node.depth + 1, answer=text, usage=None, error=None, cached=False)
    return text
