"""Code that runs INSIDE the environment kernel for :class:`~rlm_jupyter.interop.dspy.JupyterInterpreter`
(stdlib only; imported by the interpreter's setup cell after :mod:`~rlm_jupyter.environment.kernel_side`).

It binds DSPy's names into the kernel's namespace: one stub per host tool and ``SUBMIT``.
They reach the parent (the host process) over the sub-call channel of
:mod:`~rlm_jupyter.environment.kernel_side`, with ops of their own (every value travels as a
JSON string inside the request, so that nothing but JSON crosses and nothing is unpickled in
the parent):

    ``tool``        ``{"name": str, "call": "[args, kwargs]"}`` -> the tool's result, a JSON string
    ``dspy_submit`` ``{"value": "<JSON of the submitted dict>"}`` -> null
    ``dspy_value``  ``{"value": "<JSON of the cell's last expression>"}`` -> null

``SUBMIT`` ends the cell by raising :class:`Submitted` (a ``BaseException``, so that
``except Exception`` in the model's code does not swallow it); a custom exception handler of
the shell shows no traceback for it. Before every cell a ``pre_run_cell`` hook re-binds the tool
stubs, ``SUBMIT`` and the variables injected by the parent (DSPy injects its ``variables``
before every execution); after every cell a ``post_run_cell`` hook sends the value of a bare
last expression (when it is JSON and at most :data:`VALUE_LIMIT` characters).
"""

from __future__ import annotations

import ast
import json
import pickle
import sys

from ..environment import kernel_side as _ks
from ..environment.tools_side import HostTool, ToolError  # noqa: F401 - ToolError: the stubs' error

VALUE_LIMIT = 1_000_000  # characters of JSON: a larger last value is shown by its repr only

# SUBMIT field type names (DSPy's SIMPLE_TYPES by __name__) -> accepted Python types
_FIELD_TYPES = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list, tuple),
    "dict": (dict,),
    "NoneType": (type(None),),
}


class Submitted(BaseException):
    """Raised by ``SUBMIT`` to end the cell; the parent already holds the submitted value."""


class SetupError(RuntimeError):
    """The variables (or tools) sent for this block could not be set up in the kernel."""


class _State:
    def __init__(self) -> None:
        self.shell = None
        self.installed = False
        self.bindings: dict = {}  # name -> stub / SUBMIT, re-bound before every cell
        self.active: dict = {}  # injected variables, re-bound before every cell
        self.setup_error: str | None = None  # of the last setup: the next cell raises it


class _FailFirst(ast.NodeTransformer):
    """IPython AST transformer: after a failed :func:`setup`, the next cell starts with
    ``_rlm_dspy.raise_setup_error()`` (nothing of it runs). Never raises itself (IPython would
    drop it)."""

    def visit_Module(self, node):
        if _state.setup_error is not None and node.body:
            call = ast.parse("_rlm_dspy.raise_setup_error()").body[0]
            node.body.insert(0, ast.copy_location(call, node.body[0]))
            ast.fix_missing_locations(node)
        return node


_state = _State()


def install(shell) -> None:
    """Register the hooks and the ``SUBMIT`` handler (once per kernel) and bind an untyped ``SUBMIT``."""
    _state.shell = shell
    if not _state.installed:
        shell.set_custom_exc((Submitted,), _on_submitted)
        shell.events.register("pre_run_cell", _before_cell)
        shell.events.register("post_run_cell", _after_cell)
        shell.ast_transformers.append(_FailFirst())
        _state.installed = True
    configure("[]", "null")


def _on_submitted(shell, etype, value, tb, tb_offset=None):
    return []  # no traceback: SUBMIT is how a block ends, not an error


def _request(op: str, **payload):
    __tracebackhide__ = True  # noqa: F841 - IPython leaves this frame out of tracebacks
    channel = _ks._state.channel
    if channel is None:
        raise ToolError("the REPL is not connected to its host (no sub-call channel)")
    return channel.request(op, **payload)


def _encode(value) -> str:
    """JSON of ``value``; sets become lists, objects with ``tolist`` (numpy) their lists, other
    objects their ``str``."""

    def fallback(obj):
        if isinstance(obj, (set, frozenset)):
            try:
                return sorted(obj)
            except TypeError:
                return list(obj)
        if hasattr(obj, "tolist"):
            try:
                return obj.tolist()
            except Exception:
                pass
        return str(obj)

    return json.dumps(value, default=fallback)


def _make_tool(name: str, doc: str):
    return HostTool(name, doc, _request)  # the stub of this project's own runs (tools_side)


def _submit(values: dict):
    __tracebackhide__ = True  # noqa: F841
    _request("dspy_submit", value=_encode(values))
    raise Submitted()


def _make_submit(fields):
    if not fields:

        def SUBMIT(*args, **kwargs):  # noqa: N802 - DSPy's name
            """End this block and submit ``output`` (one value) as the final output."""
            __tracebackhide__ = True  # noqa: F841
            if kwargs and set(kwargs) != {"output"} or len(args) + len(kwargs) != 1:
                raise TypeError("SUBMIT takes one value: SUBMIT(output)")
            _submit({"output": args[0] if args else kwargs["output"]})

        return SUBMIT

    names = [f["name"] for f in fields]
    call = ", ".join(f"{n}=..." for n in names)

    def SUBMIT(*args, **kwargs):  # noqa: N802 - DSPy's name
        __tracebackhide__ = True  # noqa: F841
        if len(args) > len(names):
            raise TypeError(f"SUBMIT takes {len(names)} value(s), {names}, got {len(args)}: call SUBMIT({call})")
        values = dict(zip(names, args))
        twice = sorted(set(values) & set(kwargs))
        if twice:
            raise TypeError(f"SUBMIT got field(s) {twice} twice: call SUBMIT({call})")
        unknown = sorted(set(kwargs) - set(names))
        if unknown:
            raise TypeError(f"SUBMIT got unknown field(s) {unknown}; the output fields are {names}: call SUBMIT({call})")
        values.update(kwargs)
        missing = [n for n in names if n not in values]
        if missing:
            raise TypeError(f"SUBMIT is missing field(s) {missing}: call SUBMIT({call})")
        for field in fields:
            kind = field.get("type")
            value = values[field["name"]]
            accepted = _FIELD_TYPES.get(kind)
            if accepted is None:
                continue
            if isinstance(value, bool) and bool not in accepted or not isinstance(value, accepted):
                shown = repr(value)
                shown = shown if len(shown) <= 80 else shown[:77] + "..."
                raise TypeError(
                    f"SUBMIT field {field['name']!r} must be {kind}, got {type(value).__name__} {shown}: "
                    f"convert it, e.g. SUBMIT({field['name']}={kind}(...))"
                )
        _submit(values)

    SUBMIT.__doc__ = f"End this block and submit the final output: SUBMIT({call})."
    return SUBMIT


def configure(tools_json: str, fields_json: str) -> None:
    """Bind the tool stubs and ``SUBMIT``.

    ``tools_json``: JSON list of ``[name, doc]``; ``fields_json``: JSON list of DSPy output
    fields (``{"name": str, "type": str}``, type optional) or ``null`` (untyped ``SUBMIT``).
    """
    ns = _state.shell.user_ns
    for name, obj in _state.bindings.items():
        if ns.get(name) is obj:
            del ns[name]
    bindings = {name: _make_tool(name, doc) for name, doc in json.loads(tools_json)}
    bindings["SUBMIT"] = _make_submit(json.loads(fields_json))
    _state.bindings = bindings
    ns.update(bindings)


def setup(tools_json, fields_json, path, keep) -> None:
    """Run by the parent as a silent request just before a block: :func:`configure` (when
    ``tools_json`` is not ``None``) and :func:`load` (when ``keep`` is not ``None``). An error is
    kept and raised by the block itself (see :class:`_FailFirst`), whose code then does not run."""
    _state.setup_error = None
    try:
        if tools_json is not None:
            configure(tools_json, fields_json)
        if keep is not None:
            load(path, keep)
    except BaseException as exc:  # e.g. unpickling a class the kernel cannot import
        _state.setup_error = f"{type(exc).__name__}: {exc}"


def raise_setup_error() -> None:
    """Tell the parent why the setup failed, then raise :class:`SetupError` (first statement of
    the block after a failed setup)."""
    __tracebackhide__ = True  # noqa: F841
    error, _state.setup_error = _state.setup_error, None
    try:
        _request("dspy_setup_error", error=error)
    except Exception:
        pass
    raise SetupError(error)


def load(path, keep) -> None:
    """Inject variables: those pickled by the parent in file ``path`` (``None``: none), plus
    the names in ``keep`` from the last injection (unchanged immutable values)."""
    active = {k: _state.active[k] for k in keep}
    if path is not None:
        with open(path, "rb") as f:
            active.update(pickle.load(f))
    _state.active = active
    _state.shell.user_ns.update(active)


def _before_cell(*args) -> None:
    ns = _state.shell.user_ns
    ns["_rlm_dspy"] = sys.modules[__name__]
    ns.update(_state.bindings)
    ns.update(_state.active)


def _after_cell(result=None) -> None:
    value = getattr(result, "result", None)
    if value is None or not getattr(result, "success", False):
        return
    try:
        data = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return
    if len(data) > VALUE_LIMIT:
        return
    try:
        _request("dspy_value", value=data)
    except Exception:
        pass  # the parent falls back to the shown text
