"""The root model's code as real notebook cells: the kernel side of the ``rlm_jupyter.cells`` comm.

While ``%%rlm`` runs, the JupyterLab / Notebook 7 extension ``rlm-jupyter-cells`` (folder
``labextension/`` of the repository, shipped prebuilt in the wheel) inserts, below the
``%%rlm`` cell, one markdown cell per root iteration (its heading and the model's prose) and
one code cell per code block the model ran, with the real outputs and execution count of the
run's REPL environment kernel.

Protocol (version 1). The kernel opens one comm per run, target :data:`COMM_TARGET`; the
``comm_open`` data and every ``comm_msg`` data is one message, a JSON object with
``v`` (1), ``type``, ``run_id``, ``parent_cell_id`` (the nbformat id of the ``%%rlm`` cell,
from the ``cellId`` JupyterLab puts in the execute request's metadata) and ``t_event`` (wall
clock of the event behind it), plus by type:

- ``start`` (the comm_open): ``policy`` = ``"replace"``. The frontend removes the cells that
  earlier runs of the same ``%%rlm`` cell inserted (found by ``metadata.rlm.parent_cell_id``),
  edited or not: re-running a ``%%rlm`` cell replaces its cells, it never duplicates them.
- ``insert``: ``cell`` = ``{key, order, cell_type, source, metadata, outputs?, execution_count?}``.
  ``key`` is stable (``rlm-<run>-<iteration>-md`` for the prose, ``rlm-<run>-<iteration>-<block>``
  for code) and becomes the cell's nbformat id; ``order`` increases within the run. A cell whose
  key already exists is left alone.
- ``outputs``: ``key``, ``outputs`` (nbformat dicts), ``execution_count``, ``status``; replaces
  the cell's outputs (no change when they are already equal).
- ``finish``: ``status`` of the run; the kernel closes the comm after it.

Every message is idempotent: applied twice, the second changes nothing.

Step route: an inserted code cell starts with the line ``%%rlm_step <run_id> <iteration>``
(:meth:`~rlm_jupyter.jupyter.magics.RLMMagics.rlm_step`), so running it, edited or not, runs
the body in that run's environment kernel (where ``context`` and the model's variables live)
while the run's environment is kept; it works without the extension too.

Cell metadata follow :mod:`rlm_jupyter.notebook_io` (``result.to_notebook(path)``):
``metadata["rlm"] = {"run_id", "node_id", "iteration", "block"|"kind", ...}`` and tags
``rlm-run-<id>`` / ``rlm-iteration-<i>``; inserted cells add ``key``, ``order`` and
``parent_cell_id``.

Threading: :meth:`CellsView.on_event` runs on the run's worker thread and only enqueues;
:meth:`CellsView.tick` (the cell's own thread) turns the queued events into messages and sends them.
"""

from __future__ import annotations

import json
import logging
import queue
import time
from typing import Any, Callable

from ..core import events as ev
from ..core.text import cap
from ..safe_html import markdown_source, safe_outputs

log = logging.getLogger("rlm_jupyter.jupyter")

COMM_TARGET = "rlm_jupyter.cells"
PROTOCOL_VERSION = 1
REPLACE_POLICY = "replace"
ROOT = "0"
# Text outputs longer than this (characters, per output) are cut before they are sent.
MAX_OUTPUT_CHARS = 100_000


# -- cell conventions shared with rlm_jupyter.notebook_io --------------------------------
def rlm_tags(run_id: str, iteration: int) -> list[str]:
    """Tags of a run's cells (as in ``result.to_notebook``)."""
    return [f"rlm-run-{run_id}", f"rlm-iteration-{iteration}"]


def rlm_metadata(run_id: str, iteration: int, *, block: int | None = None, kind: str | None = None,
                 status: str | None = None, node_id: str = ROOT) -> dict[str, Any]:
    """``metadata["rlm"]`` of a prose (``kind="prose"``) or code (``block=``) cell."""
    meta: dict[str, Any] = {"run_id": run_id, "node_id": node_id, "iteration": iteration}
    if block is not None:
        meta["block"] = block
        meta["status"] = status or "running"
    if kind is not None:
        meta["kind"] = kind
    return meta


def prose_source(iteration: int, prose: str) -> str:
    """Markdown of an iteration's prose cell (as in ``result.to_notebook``); the prose through
    :func:`~rlm_jupyter.safe_html.markdown_source` (no raw HTML, images or non-http links)."""
    heading = f"### Iteration {int(iteration)}"
    return f"{heading}\n\n{markdown_source(prose)}" if prose else heading


def step_source(run_id: str, iteration: int, code: str) -> str:
    """Source of an inserted code cell: the ``%%rlm_step`` line, then the model's code."""
    return f"%%rlm_step {run_id} {iteration}\n{code.rstrip(chr(10))}"


def cell_key(run_id: str, iteration: int, block: int | None = None) -> str:
    """Stable key (and nbformat cell id) of an inserted cell."""
    return f"rlm-{run_id}-{iteration}-{'md' if block is None else block}"


def current_cell_id(shell: Any = None) -> str | None:
    """The nbformat id of the cell being executed, from the execute request's metadata
    (``cellId``, sent by JupyterLab / Notebook 7), or ``None`` (no kernel, or a frontend that
    does not send it)."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover
            return None
        shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return None
    try:
        parent = kernel.get_parent() if hasattr(kernel, "get_parent") else getattr(shell, "parent_header", {})
    except Exception:
        return None
    cell_id = ((parent or {}).get("metadata") or {}).get("cellId")
    return cell_id if isinstance(cell_id, str) and cell_id else None


def _cap_text(text: Any, limit: int) -> Any:
    if isinstance(text, list):
        text = "".join(text)
    return cap(text, limit, " not shown", dots="...") if isinstance(text, str) else text


def cap_outputs(outputs: list[dict], limit: int = MAX_OUTPUT_CHARS) -> list[dict]:
    """Safe copies of ``outputs`` (:func:`~rlm_jupyter.safe_html.safe_outputs`: no
    executable MIME types, sanitized HTML) with long stream / text outputs cut to ``limit`` characters."""
    capped = []
    for out in outputs or []:  # cut first, then made safe (a cut HTML tag is repaired by the sanitizer)
        if not isinstance(out, dict):
            continue
        out = dict(out)
        if out.get("output_type") == "stream":
            out["text"] = _cap_text(out.get("text", ""), limit)
        elif isinstance(out.get("data"), dict):
            data = dict(out["data"])
            for mime in ("text/plain", "text/html", "text/markdown"):
                if mime in data:
                    data[mime] = _cap_text(data[mime], limit)
            out["data"] = data
        capped.append(out)
    return safe_outputs(capped)


def _open_kernel_comm(data: dict) -> Any:
    """Open a comm to the frontend (ipykernel's ``comm.create_comm``)."""
    from comm import create_comm

    return create_comm(target_name=COMM_TARGET, data=data)


class CellsView:
    """Sends a run's root iterations to the frontend as notebook cells (see the module docstring).

    Args:
        parent_cell_id: nbformat id of the ``%%rlm`` cell; ``None`` disables the view.
        open_comm: ``open_comm(data) -> comm`` (with ``send(data)`` and ``close()``); default
            opens an ipykernel comm with target :data:`COMM_TARGET`.
        clock: wall clock for ``t_event``.

    Attributes:
        sent: every message sent, in order (the first is the comm_open's ``start``).
        run_id: the run's id, known from its first event.
    """

    def __init__(self, parent_cell_id: str | None, open_comm: Callable[[dict], Any] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.parent_cell_id = parent_cell_id
        self._open_comm = open_comm or _open_kernel_comm
        self._clock = clock
        self._queue: queue.SimpleQueue[tuple[float, ev.Event]] = queue.SimpleQueue()
        self._comm: Any = None
        self._order = 0
        self._finished = False
        self._failed = False
        self.run_id: str | None = None
        self.sent: list[dict] = []
        self.errors: list[BaseException] = []

    @classmethod
    def for_current_cell(cls, shell: Any = None) -> "CellsView":
        """A view for the cell being executed (disabled outside a kernel or without a cell id)."""
        return cls(current_cell_id(shell))

    @property
    def enabled(self) -> bool:
        return self.parent_cell_id is not None and not self._failed

    def on_event(self, e: ev.Event) -> None:
        """Event-bus subscriber; thread-safe (only enqueues)."""
        if self.enabled and e.node_id == ROOT:
            self._queue.put((self._clock(), e))

    def tick(self) -> None:
        """Turn queued events into messages and send them (call from the cell's thread)."""
        if self.enabled:
            try:
                self._send(self._drain())
            except Exception as exc:  # never break the run
                log.warning("the cells view failed and stops: %s: %s", type(exc).__name__, exc)
                self.errors.append(exc)
                self._failed = True

    def finish(self, status: str | None = None) -> None:
        """Send what is left and the ``finish`` message (if the run's own was not seen); close the comm."""
        if not self.enabled:
            return
        msgs = self._drain()
        if not self._finished and self.run_id is not None and not any(m["type"] == "finish" for m in msgs):
            msgs.append(self._msg("finish", self._clock(), status=status or "done"))
        self._send(msgs)
        self._close()

    # -- internals ---------------------------------------------------------------------------
    def _msg(self, type_: str, t: float, **fields: Any) -> dict:
        return {"v": PROTOCOL_VERSION, "type": type_, "run_id": self.run_id, "parent_cell_id": self.parent_cell_id,
                "t_event": round(t, 6), **fields}

    def _insert(self, t: float, key: str, cell_type: str, source: str, meta: dict, iteration: int, **extra: Any) -> dict:
        meta = {**meta, "key": key, "order": self._order, "parent_cell_id": self.parent_cell_id}
        cell = {"key": key, "order": self._order, "cell_type": cell_type, "source": source,
                "metadata": {"rlm": meta, "tags": rlm_tags(self.run_id or "", iteration)}, **extra}
        self._order += 1
        return self._msg("insert", t, cell=cell)

    def _drain(self) -> list[dict]:
        msgs: list[dict] = []
        pending: dict[str, dict] = {}  # key -> insert message not yet sent (outputs fold into it)
        while True:
            try:
                t, e = self._queue.get_nowait()
            except queue.Empty:
                return msgs
            d = e.data
            if e.kind == ev.RUN_STARTED:
                if self.run_id is None:
                    self.run_id = e.run_id
                    msgs.append(self._msg("start", t, policy=REPLACE_POLICY))
                continue
            if self.run_id is None or self._finished:
                continue
            if e.kind == ev.ROOT_REPLY:
                from ..core.parsing import parse_reply

                it = int(d.get("iteration", 0))
                prose = parse_reply(d.get("text") or "").prose
                msgs.append(self._insert(t, cell_key(self.run_id, it), "markdown", prose_source(it, prose),
                                         rlm_metadata(self.run_id, it, kind="prose"), it))
            elif e.kind == ev.CODE_STARTED:
                it, block = int(d.get("iteration", 0)), int(d.get("block", 0))
                key = cell_key(self.run_id, it, block)
                msg = self._insert(t, key, "code", step_source(self.run_id, it, d.get("code") or ""),
                                   rlm_metadata(self.run_id, it, block=block), it, outputs=[], execution_count=None)
                pending[key] = msg
                msgs.append(msg)
            elif e.kind == ev.CODE_FINISHED:
                it, block = int(d.get("iteration", 0)), int(d.get("block", 0))
                key = cell_key(self.run_id, it, block)
                outputs = cap_outputs(d.get("outputs") or [])
                status = d.get("status") or "ok"
                count = d.get("execution_count")
                if key in pending:  # not sent yet: one insert with the outputs
                    cell = pending.pop(key)["cell"]
                    cell.update(outputs=outputs, execution_count=count)
                    cell["metadata"]["rlm"]["status"] = status
                else:
                    msgs.append(self._msg("outputs", t, key=key, outputs=outputs, execution_count=count, status=status))
            elif e.kind == ev.RUN_FINISHED:
                msgs.append(self._msg("finish", t, status=d.get("status") or "done"))

    def _send(self, msgs: list[dict]) -> None:
        for msg in msgs:
            if self._failed:
                return
            try:
                if self._comm is None:
                    if msg["type"] != "start":  # the comm opens with the start message
                        self._comm = self._open_comm(self._msg("start", msg["t_event"], policy=REPLACE_POLICY))
                        self.sent.append(self._msg("start", msg["t_event"], policy=REPLACE_POLICY))
                    else:
                        self._comm = self._open_comm(msg)
                        self.sent.append(msg)
                        continue
                self._comm.send(msg)
                self.sent.append(msg)
            except Exception as exc:  # a broken frontend link must not break the run
                log.warning("the cells view's comm failed; no more cells are sent: %s: %s", type(exc).__name__, exc)
                self.errors.append(exc)
                self._failed = True
                return
            if msg["type"] == "finish":
                self._finished = True

    def _close(self) -> None:
        if self._comm is not None:
            try:
                self._comm.close()
            except Exception as exc:
                self.errors.append(exc)
            self._comm = None


def tee(*fns: Callable[..., None]) -> Callable[..., None]:
    """One callback calling each of ``fns`` in turn (to give ``completion`` two views)."""

    def call(*args: Any) -> None:
        for fn in fns:
            fn(*args)

    return call


def message_size(msg: dict) -> int:
    """Bytes of a message as JSON (for tests and diagnostics)."""
    return len(json.dumps(msg, default=str))
