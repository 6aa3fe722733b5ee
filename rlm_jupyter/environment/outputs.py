"""Kernel messages to nbformat outputs, and outputs to the plain text the root LM reads.

Input: the kernel's IOPub messages (``stream``, ``display_data``, ``execute_result``,
``error``, ``clear_output``, ``status``; Jupyter messaging protocol 5.x). Output: nbformat v4
output dicts, as a notebook stores them (``nbformat.v4.output_from_msg``), capped in the
parent at :data:`PARENT_OUTPUT_CHARS` per cell on top of the kernel's own cap.
"""

from __future__ import annotations

import json
import re
import threading

import nbformat

MAX_OUTPUT_CHARS = 1_000_000  # per cell and stream, kept by the kernel (head + tail)
PARENT_OUTPUT_CHARS = 4 * MAX_OUTPUT_CHARS  # the parent's own cap per cell (all outputs), characters
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_OUTPUT_TYPES = ("stream", "display_data", "execute_result", "error")


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences (terminal colours of IPython tracebacks)."""
    return _ANSI_RE.sub("", text)


def outputs_to_text(outputs: list[dict]) -> str:
    """Plain text of nbformat outputs, as the root LM sees them.

    ``stream`` text as is; ``execute_result``/``display_data`` their ``text/plain`` (with a
    note for images and HTML without text); ``error`` its traceback without ANSI colours.
    """
    parts: list[str] = []
    for out in outputs:
        ot = out.get("output_type")
        if ot == "stream":
            parts.append(out.get("text", ""))
        elif ot in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "text/plain" in data:
                text = data["text/plain"]
                parts.append((text if isinstance(text, str) else "".join(text)) + "\n")
            others = [k for k in data if k != "text/plain"]
            if any(k.startswith("image/") for k in others):
                parts.append(f"[{', '.join(k for k in others if k.startswith('image/'))} output shown to the user]\n")
        elif ot == "error":
            tb = out.get("traceback") or [f"{out.get('ename')}: {out.get('evalue')}"]
            parts.append(strip_ansi("\n".join(tb)) + "\n")
    return "".join(parts)


def add_output(msg: dict, outputs: list[dict], state: dict) -> None:
    """Fold one IOPub message of the running cell into ``outputs`` (in place).

    ``state`` (a dict kept across the cell's messages) gets ``idle=True`` at the kernel's
    ``status: idle``, ``chars`` (characters seen) and ``dropped`` (characters beyond
    :data:`PARENT_OUTPUT_CHARS`, not kept; errors are always kept). Consecutive chunks of one
    stream are merged, as a notebook stores them; ``clear_output`` empties ``outputs``.
    """
    mt = msg["header"]["msg_type"]
    content = msg["content"]
    if mt == "status":
        if content.get("execution_state") == "idle":
            state["idle"] = True
        return
    if mt == "clear_output":
        outputs.clear()
        return
    if mt not in _OUTPUT_TYPES:
        return
    size = len(json.dumps(content.get("data") or content.get("text") or content.get("traceback") or ""))
    state["chars"] = state.get("chars", 0) + size
    if state["chars"] > PARENT_OUTPUT_CHARS and mt != "error":
        state["dropped"] = state.get("dropped", 0) + size
        return
    out = nbformat.v4.output_from_msg(msg)
    if mt == "stream" and outputs and outputs[-1].get("output_type") == "stream" and outputs[-1].get("name") == out.get("name"):
        outputs[-1]["text"] += out["text"]
        return
    outputs.append(out)


def dropped_note(chars: int) -> dict:
    """The stderr output that says ``chars`` characters of a cell's output were dropped."""
    return nbformat.v4.new_output("stream", name="stderr", text=f"\n... [{chars:,} characters of output dropped: print less] ...\n")


def _warm() -> None:
    try:
        nbformat.v4.output_from_msg(
            {"header": {"msg_type": "stream"}, "content": {"name": "stdout", "text": ""}, "parent_header": {}}
        )
    except Exception:  # noqa: BLE001 - only a warm-up; the real call reports its own errors
        pass


_warmed = False
_warm_lock = threading.Lock()


def warm_up() -> None:
    """Load nbformat's output schema once, in a background thread (the first
    ``output_from_msg`` otherwise costs ~0.25 s inside the first cell). Idempotent."""
    global _warmed
    with _warm_lock:
        if _warmed:
            return
        _warmed = True
    threading.Thread(target=_warm, name="rlm-nbformat-warmup", daemon=True).start()
