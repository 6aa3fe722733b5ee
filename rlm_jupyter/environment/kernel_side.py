"""Code that runs INSIDE the environment kernel (stdlib only; imported by the bootstrap).

It defines what the root LM's code can call: ``context``, ``llm_query``,
``llm_query_batched``, ``rlm_query``, ``FINAL``, ``FINAL_VAR`` and ``SHOW_VARS``. Sub-calls
travel to the parent process over one socket that the parent owns (newline-delimited JSON).
Each thread of model code gets its own connection, so ``llm_query`` is safe to call from
several threads. Provider keys never enter the kernel: the parent makes every LM call.

Wire format (one JSON object per line):
    handshake, first line of a connection (at most 4 KiB) ``{"token": str}``
    request  ``{"id": int, "op": "llm_query"|"llm_query_batched"|"rlm_query", ...}``
    response ``{"id": int, "ok": bool, "result": ..., "error": str}``

A wait for a reply that is interrupted (the block timeout's ``KeyboardInterrupt``) closes the
connection: the parent then cancels the call, and no late reply can reach a later request.

After every cell, the ``post_run_cell`` hook :func:`_after_cell` restores deleted helpers,
checks ``context`` and takes the answer set by ``FINAL``/``FINAL_VAR`` during that cell
(dropped if the cell raised); the parent reads that report with :func:`take_report`.
"""

from __future__ import annotations

import itertools
import json
import pickle
import socket
import threading

ERROR_PREFIX = "[sub-call error] "

try:  # a local kernel imports the package
    from . import kernel_guard as _guard
except ImportError:  # a gateway kernel got the guard's source first (see bootstrap.py)
    import rlm_jupyter_kernel_guard as _guard

_OutputCap = _guard.OutputCap
_without_frames_of = _guard.without_frames_of
_hide_frames_of = _guard.hide_frames_of
_warm_tracebacks = _guard.warm_tracebacks
marked_processes = _guard.marked_processes
watch_parent = _guard.watch_parent


class SubcallError(RuntimeError):
    """A sub-call failed (provider error, a limit reached, or the channel is gone)."""


class _Channel:
    def __init__(self, path: str, token: str) -> None:
        self.path = path
        self.token = token
        self._local = threading.local()
        self._ids = itertools.count(1)

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.path.startswith("tcp://"):  # a remote kernel (gateway) reaching the parent
                host, port = self.path[len("tcp://") :].rsplit(":", 1)
                sock = socket.create_connection((host, int(port)))
            else:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(self.path)
            conn = (sock, sock.makefile("rb"))
            self._local.conn = conn
            sock.sendall((json.dumps({"token": self.token}) + "\n").encode())
        return conn

    def _drop(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            for part in (conn[1], conn[0]):
                try:
                    part.close()
                except Exception:
                    pass

    def request(self, op: str, **payload):
        __tracebackhide__ = True  # noqa: F841 - IPython leaves this frame out of tracebacks
        rid = next(self._ids)
        data = (json.dumps({"id": rid, "op": op, **payload}) + "\n").encode()
        try:
            sock, reader = self._conn()
            sock.sendall(data)
            while True:
                line = reader.readline()
                if not line:
                    self._drop()
                    raise SubcallError("sub-call channel closed by the parent (the run is over or was stopped)")
                reply = json.loads(line)
                if reply.get("id") == rid:
                    break
                if reply.get("id") is None:  # refused before any request (bad token)
                    self._drop()
                    raise SubcallError(f"sub-call channel refused: {reply.get('error')}")
                # a reply to an earlier request on this connection: never ours, skip it
        except OSError as exc:
            self._drop()
            raise SubcallError(f"sub-call channel failed: {exc}") from None
        except ValueError:
            self._drop()
            raise SubcallError("sub-call channel sent a malformed reply") from None
        except BaseException as exc:
            # interrupted (the block timeout) while waiting: the reply would arrive later on
            # this connection, so close it; the parent sees EOF and cancels the call
            self._drop()
            if isinstance(exc, KeyboardInterrupt):
                raise KeyboardInterrupt() from None  # without the socket's frames
            raise
        if not reply.get("ok"):
            raise SubcallError(reply.get("error") or "sub-call failed")
        return reply.get("result")


class _State:
    channel: _Channel | None = None
    answer: str | None = None
    report: str | None = None  # JSON of the last cell's bookkeeping (see _after_cell)
    hooks = False
    shell = None
    output_cap = None
    context = None  # the loaded value, to restore a deleted ``context``
    context_loaded = False
    context_noted = False


_state = _State()


def _text(x) -> str:
    return x if isinstance(x, str) else str(x)


def _model(model):
    __tracebackhide__ = True  # noqa: F841
    if model is not None and not isinstance(model, str):
        raise TypeError(f"model must be a str (a model id of this run) or None, not {type(model).__name__}")
    return model


def llm_query(prompt, model=None) -> str:
    """Ask a sub-LM ``prompt`` (str); returns its answer (str).

    The sub-LM sees only ``prompt``: include the text it should read. Raises
    :class:`SubcallError` if the call fails, ``model`` is not one of the run's models, or a
    limit of the run is reached.
    """
    __tracebackhide__ = True  # noqa: F841
    return _state.channel.request("llm_query", prompt=_text(prompt), model=_model(model))


def llm_query_batched(prompts, model=None) -> list:
    """Ask a sub-LM every prompt of ``prompts`` (list of str), concurrently.

    Returns the answers in order. An item whose call failed is a string starting with
    ``"[sub-call error] "``; a limit of the run raises :class:`SubcallError`.
    """
    __tracebackhide__ = True  # noqa: F841
    prompts = [_text(p) for p in prompts]
    if not prompts:
        return []
    return _state.channel.request("llm_query_batched", prompts=prompts, model=_model(model))


def rlm_query(prompt, context=None) -> str:
    """Ask a child RLM ``prompt``; its ``context`` is ``context`` if given, else ``prompt``.

    ``context`` must be JSON-serialisable (str, list, dict). Beyond the run's ``max_depth``
    this is a plain :func:`llm_query`.
    """
    __tracebackhide__ = True  # noqa: F841
    if context is not None:
        try:
            json.dumps(context)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"rlm_query context must be JSON-serialisable (str, list, dict): {exc}") from None
    return _state.channel.request("rlm_query", prompt=_text(prompt), context=context)


def FINAL(answer) -> None:  # noqa: N802 - protocol name
    """Set the final answer (its ``str``); the run ends after this code block, unless the
    block then raises (the answer is dropped and the model told to call FINAL again)."""
    __tracebackhide__ = True  # noqa: F841
    _state.answer = _text(answer)
    print("Final answer set.")


def FINAL_VAR(name) -> None:  # noqa: N802 - protocol name
    """Set the final answer to a REPL variable, given by name (str) or as the value itself
    (taken like :func:`FINAL`'s)."""
    __tracebackhide__ = True  # noqa: F841
    ns = _state.shell.user_ns if _state.shell is not None else {}
    if isinstance(name, str) and name.strip().isidentifier():
        if name.strip() not in ns:
            print(f"FINAL_VAR: no variable named {name.strip()!r}; create it first. No answer was set.")
            return
        value = ns[name.strip()]
    else:
        value = name
    _state.answer = _text(value)
    print("Final answer set.")


def SHOW_VARS() -> None:  # noqa: N802 - protocol name
    """Print the REPL's variables with their types and sizes."""
    ns = _state.shell.user_ns if _state.shell is not None else {}
    hidden = {"In", "Out", "exit", "quit", "get_ipython"}
    for k, v in sorted(ns.items()):
        if k.startswith("_") or k in hidden or _HELPERS.get(k) is v or type(v).__name__ == "module":
            continue
        size = ""
        try:
            size = f", len {len(v):,}"
        except Exception:
            pass
        print(f"{k}: {type(v).__name__}{size}")


_HELPERS = {
    "llm_query": llm_query,
    "llm_query_batched": llm_query_batched,
    "rlm_query": rlm_query,
    "FINAL": FINAL,
    "FINAL_VAR": FINAL_VAR,
    "SHOW_VARS": SHOW_VARS,
    "SubcallError": SubcallError,
}

try:  # task helpers (grep, search, chunks, llm_map, llm_classify, ...)
    from .repl_helpers import make_helpers as _make_helpers
except ImportError:  # sent as source (a gateway kernel): SourceBootstrap ran repl_helpers first
    import sys as _sys

    _make_helpers = getattr(_sys.modules.get("rlm_jupyter_repl_helpers"), "make_helpers", None)
    del _sys
# The protocol helpers above (and host tools, added by tools_side) are restored whenever model
# code deletes or rebinds them; a task helper only when deleted (``chunks = chunks(context,
# 1000)`` keeps the model's variable, and a tool may take a task helper's name).
_PROTOCOL = frozenset(_HELPERS)  # also the names a host tool may not take (tools_side.RESERVED)
_TASK: frozenset = frozenset()
if _make_helpers is not None:
    _task_helpers = _make_helpers(lambda op, **kw: _state.channel.request(op, **kw), lambda: _state.shell.user_ns)
    _TASK = frozenset(_task_helpers)
    _HELPERS.update(_task_helpers)
    del _task_helpers


def _own(tb) -> bool:
    return tb.tb_frame.f_code.co_filename == _own.__code__.co_filename


def _hide_own_frames(shell) -> None:
    """Leave this module's frames out of every traceback the shell renders."""
    _hide_frames_of(shell, _own.__code__.co_filename, "_rlm_hide")


def install(shell, socket_path: str, token: str, max_output_chars: int | None = None) -> None:
    """Bind the helpers into the kernel's namespace and connect the sub-call channel.

    ``max_output_chars`` caps what each cell may print (per stream); ``None`` = no cap.
    """
    import sys

    _state.shell = shell
    _state.channel = _Channel(socket_path, token)
    shell.user_ns.update(_HELPERS)
    _hide_own_frames(shell)
    if not _state.hooks:
        _warm_tracebacks(shell)
        shell.events.register("pre_run_cell", _before_cell)
        shell.events.register("post_run_cell", _after_cell)
        _state.hooks = True
    if max_output_chars and _state.output_cap is None:
        cap = _OutputCap(max_output_chars)
        cap.wrap(sys.stdout, "stdout")
        cap.wrap(sys.stderr, "stderr")
        shell.events.register("pre_run_cell", cap.pre_run_cell)
        shell.events.register("post_run_cell", cap.post_run_cell)
        _state.output_cap = cap


def load_bytes(data: bytes, kind: str) -> None:
    """Set ``context`` from bytes sent through the kernel channel (a remote kernel):
    ``kind`` text (UTF-8), bytes, or pickle (made by the parent)."""
    if kind == "text":
        value = data.decode("utf-8", errors="surrogatepass")
    elif kind == "bytes":
        value = data
    else:
        value = pickle.loads(data)
    _set_context(value)


def load_context(path: str, kind: str) -> None:
    """Set ``context`` from the parent's private file (``kind``: text, bytes or pickle)."""
    if kind == "text":
        with open(path, encoding="utf-8") as f:
            value = f.read()
    elif kind == "bytes":
        with open(path, "rb") as f:
            value = f.read()
    else:
        with open(path, "rb") as f:
            value = pickle.load(f)
    _set_context(value)


def _set_context(value) -> None:
    _state.shell.user_ns["context"] = value
    _state.context = value
    _state.context_loaded = True
    _state.context_noted = False


def _before_cell(*args) -> None:
    """``pre_run_cell`` hook: only an answer set during the coming cell counts."""
    _state.answer = None
    _state.report = None


def _after_cell(result=None) -> None:
    """``post_run_cell`` hook (IPython runs it also when the cell raised or was interrupted,
    when ipykernel skips ``user_expressions``): restore the helpers, check ``context`` and
    take the cell's answer; the parent reads the report with :func:`take_report`."""
    answer, _state.answer = _state.answer, None
    failed = result is not None and not getattr(result, "success", True)
    _state.report = json.dumps({
        "answer": None if failed else answer,
        "dropped": failed and answer is not None,
        "fixed": json.loads(restore_helpers()),
        "ctx": json.loads(check_context()),
    })


def take_report() -> str:
    """JSON of the last cell's report, then cleared: ``{"answer": str|null, "dropped": bool
    (an answer was set but the cell raised), "fixed": [helper names restored], "ctx":
    see :func:`check_context`}``; ``null`` when no cell ran since the last call."""
    report, _state.report = _state.report, None
    return report or json.dumps(None)


def value_text(name: str) -> str:
    """JSON ``[found, text]``: the ``str`` of REPL variable ``name``, looked up by name only."""
    ns = _state.shell.user_ns
    if name in ns:
        return json.dumps([True, _text(ns[name])])
    return json.dumps([False, ""])


def restore_helpers() -> str:
    """Re-bind any protocol helper or host tool the model's code deleted or rebound, and any
    task helper it deleted; JSON list of their names."""
    ns = _state.shell.user_ns
    fixed = [k for k, v in _HELPERS.items() if (k not in ns if k in _TASK else ns.get(k) is not v)]
    ns.update({k: _HELPERS[k] for k in fixed})
    return json.dumps(fixed)


def check_context() -> str:
    """JSON: ``null`` if ``context`` is the loaded value; ``"deleted"`` if the model's code
    deleted it (it is restored); ``"rebound:<type>"`` the first time it holds another value
    (left as is: rebinding can be deliberate)."""
    if not _state.context_loaded:
        return json.dumps(None)
    ns = _state.shell.user_ns
    if "context" not in ns:
        ns["context"] = _state.context
        _state.context_noted = False
        return json.dumps("deleted")
    if ns["context"] is not _state.context:
        if _state.context_noted:
            return json.dumps(None)
        _state.context_noted = True
        return json.dumps(f"rebound:{type(ns['context']).__name__}")
    _state.context_noted = False
    return json.dumps(None)
