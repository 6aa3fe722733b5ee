"""Outputs of the environment kernel (nbformat output dicts) as HTML, and the pieces every
rendering shares: character caps, inline styles, number formats.

Untrusted text reaches the markup only through :mod:`rlm_jupyter.safe_html`; the style
strings here are constants of this module.
"""

from __future__ import annotations

import dataclasses
import re

from ..core.stats import fmt_tokens, fmt_usd  # noqa: F401 (the views import them from here)
from ..core.text import cap as text_cap
from ..core.text import one_line  # noqa: F401 (the views import it from here)
from .. import safe_html as S

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
STATUS_COLORS = {"running": "#0969da", "done": "#1a7f37", "stopped": "#9a6700"}
FAILED_COLOR = "#cf222e"
MONO = "font-family:monospace;font-size:12px"
PRE = f"white-space:pre-wrap;margin:2px 0;padding:2px 6px;background:#f6f8fa;{MONO}"
SUMMARY = "cursor:pointer;padding:2px 0"
BOX = "margin-left:14px;padding-left:8px;border-left:2px solid #d0d7de"


@dataclasses.dataclass
class Caps:
    """Character limits of a rendering (a notebook must stay fast to save and reopen).

    Attributes:
        text: one output stream, answer or prose (characters).
        prompt: a sub-call's whole prompt (sub-call prompts are often large slices of the context).
        preview_lines / preview_chars: the first lines of a prompt shown before "expand".
        subcalls: sub-call entries listed per iteration or batch (``None``: all); the rest are
            counted in one line.
    """

    text: int = 20_000
    prompt: int = 4_000
    preview_lines: int = 3
    preview_chars: int = 240
    subcalls: int | None = None


# While running, the current iteration is redrawn every half second: keep it light.
LIVE_CAPS = Caps(text=2_000, prompt=1_000, subcalls=40)

esc = S.escape


def cap(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with a marker telling how much was left out and
    where the rest is (:func:`rlm_jupyter.core.text.cap`)."""
    return text_cap(text, limit, "; the full text is in _rlm.trajectory")


def preview(text: str, caps: Caps) -> str:
    """The first ``caps.preview_lines`` lines (at most ``caps.preview_chars`` characters) of ``text``."""
    lines = (text or "").splitlines()
    head = "\n".join(lines[: caps.preview_lines])
    if len(head) > caps.preview_chars:
        head = head[: caps.preview_chars]
    return head + ("…" if len(head) < len(text or "") else "")


def markdown_html(text: str) -> str:
    """Markdown → sanitized HTML (:func:`rlm_jupyter.safe_html.markdown`)."""
    return S.markdown(text)


def sanitize_html(markup: str) -> str:
    """Untrusted HTML → allow-listed HTML (:func:`rlm_jupyter.safe_html.sanitize`)."""
    return S.sanitize(markup)


def code_html(code: str) -> str:
    """Python source, syntax-highlighted with inline styles, in a ``<pre class="rlm-code">``."""
    return f'<pre class="rlm-code" style="{PRE};background:#f6f8fa;border:1px solid #d0d7de">{S.code(code)}</pre>'


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def outputs_html(outputs: list[dict], caps: Caps) -> str:
    """nbformat output dicts (streams, rich displays, images, errors) as HTML; executable MIME
    types (JavaScript, widget views) are never rendered."""
    parts = []
    for out in outputs or []:
        if not isinstance(out, dict):
            continue
        ot = out.get("output_type")
        if ot == "stream":
            color = "#fff0f0" if out.get("name") == "stderr" else "#ffffff"
            text = cap(_ANSI.sub("", _text(out.get("text"))), caps.text)
            parts.append(f'<pre class="rlm-stream" style="{PRE};background:{color}">{esc(text)}</pre>')
        elif ot in ("display_data", "execute_result"):
            data = out.get("data")
            parts.append(rich_html(data if isinstance(data, dict) else {}, caps))
        elif ot == "error":
            tb = out.get("traceback") or [f"{out.get('ename')}: {out.get('evalue')}"]
            text = cap(_ANSI.sub("", "\n".join(_text(t) for t in tb)), caps.text)
            parts.append(f'<pre class="rlm-error" style="{PRE};background:#fff0f0;color:{FAILED_COLOR}">{esc(text)}</pre>')
    return f'<div class="rlm-outputs">{"".join(parts)}</div>' if parts else ""


def rich_html(data: dict, caps: Caps) -> str:
    """One display's MIME bundle: the first of a valid image, sanitized ``text/html``, markdown,
    ``text/plain``; other MIME types are not shown."""
    for mime in (*S.RASTER_MIMES, S.SVG_MIME):
        if mime in data:
            img = S.image(mime, data[mime])
            if img:
                return img
    if "text/html" in data:
        markup = _text(data["text/html"])
        if len(markup) <= caps.text * 5:
            return f'<div class="rlm-html" style="overflow-x:auto">{S.sanitize(markup)}</div>'
    if "text/markdown" in data:
        return f'<div class="rlm-markdown">{S.markdown(cap(_text(data["text/markdown"]), caps.text))}</div>'
    text = _text(data.get("text/plain", ""))
    if not text and data:
        text = "[output of a MIME type not shown: " + ", ".join(sorted(map(str, data))) + "]"
    return f'<pre class="rlm-result" style="{PRE};background:#ffffff">{esc(cap(text, caps.text))}</pre>'
