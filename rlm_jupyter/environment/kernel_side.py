"""Code that runs INSIDE the environment kernel (stdlib only; imported by the bootstrap).

It defines what the root LM's code can call: ``context``, ``llm_query``,
``llm_query_batched``, ``rlm_query``, ``FINAL``, ``FINAL_VAR`` and ``SHOW_VARS``. Sub-calls
travel to the parent process over one Unix socket that the parent owns (newline-delimited
JSON, each request carrying the parent's random token). Each thread of model code gets its
own connection, so ``llm_query`` is safe to call from several threads. Provider keys never
enter the kernel: the parent makes every LM call.

Wire format (one JSON object per line):
    request  ``{"token": str, "id": int, "op": "llm_query"|"llm_query_batched"|"rlm_query", ...}``
    response ``{"id": int, "ok": bool, "result": ..., "error": str}``
"""

from __future__ import annotations

import itertools
import json
import pickle
import socket
import threading

ERROR_PREFIX = "[sub-call error] "


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
        return conn

    def request(self, op: str, **payload):
        msg = {"token": self.token, "id": next(self._ids), "op": op, **payload}
        data = (json.dumps(msg) + "\n").encode()
        try:
            sock, reader = self._conn()
            sock.sendall(data)
            line = reader.readline()
        except OSError as exc:
            self._local.conn = None
            raise SubcallError(f"sub-call channel failed: {exc}") from None
        if not line:
            self._local.conn = None
            raise SubcallError("sub-call channel closed by the parent (the run is over or was stopped)")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise SubcallError(reply.get("error") or "sub-call failed")
        return reply.get("result")


class _State:
    channel: _Channel | None = None
    answer: str | None = None
    shell = None
    output_cap = None
    context = None  # the loaded value, to restore a deleted ``context``
    context_loaded = False
    context_noted = False


_state = _State()


def _text(x) -> str:
    return x if isinstance(x, str) else str(x)


def llm_query(prompt, model=None) -> str:
    """Ask a sub-LM ``prompt`` (str); returns its answer (str).

    The sub-LM sees only ``prompt``: include the text it should read. Raises
    :class:`SubcallError` if the call fails or a limit of the run is reached.
    """
    return _state.channel.request("llm_query", prompt=_text(prompt), model=model)


def llm_query_batched(prompts, model=None) -> list:
    """Ask a sub-LM every prompt of ``prompts`` (list of str), concurrently.

    Returns the answers in order. An item whose call failed is a string starting with
    ``"[sub-call error] "``; a limit of the run raises :class:`SubcallError`.
    """
    prompts = [_text(p) for p in prompts]
    if not prompts:
        return []
    return _state.channel.request("llm_query_batched", prompts=prompts, model=model)


def rlm_query(prompt, context=None) -> str:
    """Ask a child RLM ``prompt``; its ``context`` is ``context`` if given, else ``prompt``.

    ``context`` must be JSON-serialisable (str, list, dict). Beyond the run's ``max_depth``
    this is a plain :func:`llm_query`.
    """
    if context is not None:
        try:
            json.dumps(context)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"rlm_query context must be JSON-serialisable (str, list, dict): {exc}") from None
    return _state.channel.request("rlm_query", prompt=_text(prompt), context=context)


def FINAL(answer) -> None:  # noqa: N802 - protocol name
    """Set the final answer (its ``str``); the run ends after this code block."""
    _state.answer = _text(answer)
    print("Final answer set.")


def FINAL_VAR(name) -> None:  # noqa: N802 - protocol name
    """Set the final answer to a REPL variable, given by name (str) or as the value itself."""
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
    hidden = set(_HELPERS) | {"In", "Out", "exit", "quit", "get_ipython"}
    for k, v in sorted(ns.items()):
        if k.startswith("_") or k in hidden or type(v).__name__ == "module":
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


class _OutputCap:
    """Caps what one cell writes to ``sys.stdout``/``sys.stderr``, so that ``print`` of
    hundreds of MB never travels to the parent: the first 2/3 of ``limit`` characters pass,
    the last 1/3 is kept and written when the cell ends, after a marker saying how many
    characters were dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head = limit * 2 // 3
        self.tail_len = limit - self.head
        self.streams: dict[str, list] = {}  # name -> [original write, seen, dropped, tail]
        self.targets: dict[str, object] = {}  # name -> the stream object wrapped

    def wrap(self, stream, name: str) -> None:
        # IPython 9 re-wraps ``stream.write`` (its output "tee"): check the function, not the stream
        if stream is None or getattr(stream.write, "_rlm_cap", False):
            return
        original = stream.write
        entry = [original, 0, 0, ""]
        self.streams[name] = entry
        self.targets[name] = stream

        def write(text):
            # a wrapper that was wrapped again (see pre_run_cell) only passes text through
            if not isinstance(text, str) or self.streams.get(name) is not entry:
                return original(text)
            room = self.head - entry[1]
            if room >= len(text):
                entry[1] += len(text)
                return original(text)
            if room > 0:
                original(text[:room])
                entry[1] += room
                text = text[room:]
            entry[2] += len(text)
            entry[3] = (entry[3] + text[-self.tail_len :])[-self.tail_len :]
            return len(text)

        write._rlm_cap = True
        stream.write = write

    def pre_run_cell(self, *args) -> None:
        # IPython 9 re-wraps the streams' write between cells: wrap them again if so
        for name, stream in list(self.targets.items()):
            self.wrap(stream, name)
        for entry in self.streams.values():
            entry[1:] = [0, 0, ""]

    def post_run_cell(self, *args) -> None:
        for entry in self.streams.values():
            original, _, dropped, tail = entry
            if dropped:
                kept = len(tail)
                original(
                    f"\n... [{dropped - kept:,} characters of output dropped by the REPL environment: print less] ...\n"
                    + tail
                )
            entry[1:] = [0, 0, ""]


def install(shell, socket_path: str, token: str, max_output_chars: int | None = None) -> None:
    """Bind the helpers into the kernel's namespace and connect the sub-call channel.

    ``max_output_chars`` caps what each cell may print (per stream); ``None`` = no cap.
    """
    import sys

    _state.shell = shell
    _state.channel = _Channel(socket_path, token)
    shell.user_ns.update(_HELPERS)
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


def take_answer() -> str:
    """JSON of the answer set in the REPL since the last call (``null`` if none); clears it."""
    answer, _state.answer = _state.answer, None
    return json.dumps(answer)


def value_text(name: str) -> str:
    """JSON ``[found, text]``: the ``str`` of REPL variable ``name``, looked up by name only."""
    ns = _state.shell.user_ns
    if name in ns:
        return json.dumps([True, _text(ns[name])])
    return json.dumps([False, ""])


def restore_helpers() -> str:
    """Re-bind any helper the model's code deleted or rebound; JSON list of their names."""
    ns = _state.shell.user_ns
    fixed = [k for k, v in _HELPERS.items() if ns.get(k) is not v]
    ns.update(_HELPERS)
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


def marked_processes(marker: str) -> list:
    """PIDs of other processes whose environment holds ``marker`` (``NAME=value``; Linux /proc)."""
    import os

    needle = marker.encode()
    found = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(d))
    return found


def watch_parent(marker: str, interval: float = 0.5) -> None:
    """Unsandboxed kernels only: when the parent process dies (a notebook kernel restarted
    mid-run), SIGKILL every process carrying ``marker`` in its environment (this kernel and
    anything the model's code forked or daemonised), then this kernel's process group."""
    import os
    import signal
    import time

    parent = os.getppid()

    def run():
        while os.getppid() == parent:
            time.sleep(interval)
        for pid in marked_processes(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.killpg(os.getpgid(0), signal.SIGKILL)
        finally:
            os._exit(1)

    threading.Thread(target=run, name="rlm-parent-watch", daemon=True).start()
