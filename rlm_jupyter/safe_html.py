"""The one path by which untrusted content becomes HTML (issue 10).

Everything the environment kernel or a model produced (prose, code, outputs, sub-call prompts
and answers, tracebacks, model ids, the query, status text, run ids) reaches the markup of a
view only through this module:

- :func:`escape` — text, with ``&<>"'`` escaped (safe in element content and quoted attributes);
- :func:`sanitize` — untrusted HTML (``text/html`` outputs) through the nh3 (Ammonia) allow-list:
  tables and text formatting only, no ``style``/``class``/``id``, no images, links only
  ``http(s)`` with ``rel="noopener noreferrer"``, relative URLs removed;
- :func:`markdown` — markdown-it-py (CommonMark + tables + strikethrough) with raw HTML off and
  the image rule off (``![a](u)`` is shown as ``!`` and a link, nothing is fetched), then
  :func:`sanitize`;
- :func:`image` — ``<img>`` of a data URI for validated base64 of ``image/png``, ``jpeg``, ``gif``,
  ``webp``; ``image/svg+xml`` text only as a base64 data URI inside ``<img>`` (the browser runs no
  script and loads nothing from an SVG shown as an image);
- :func:`code` — Python source highlighted by Pygments, then nh3 with ``<span style>`` limited
  to colour and font properties.

For notebook cells (export, the cells extension, ``%%rlm_step``), :func:`safe_outputs` keeps an
allow-list of MIME types (no ``application/javascript``, widget views, plotly…), sanitizes
``text/html``, turns ``text/markdown`` and SVG into sanitized HTML, and :func:`markdown_source`
makes a markdown cell's source that JupyterLab renders without scripts or remote loads.
"""

from __future__ import annotations

import base64
import binascii
import copy
import html
from functools import lru_cache

import nh3

RASTER_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp")
SVG_MIME = "image/svg+xml"
# MIME types kept in notebook cells' outputs (everything else, e.g. application/javascript,
# text/javascript, application/vnd.jupyter.widget-view+json, is dropped).
KEPT_MIMES = frozenset({"text/plain", "text/html", "application/json", *RASTER_MIMES})

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details", "div",
    "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "ins", "kbd", "li", "ol", "p", "pre", "q",
    "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr", "u", "ul", "var",
}  # fmt: skip
_ATTRS = {
    "a": {"href", "title"}, "td": {"colspan", "rowspan", "align"}, "th": {"colspan", "rowspan", "align", "scope"},
    "ol": {"start"}, "col": {"span"}, "colgroup": {"span"}, "*": {"title"},
}  # fmt: skip
_SCHEMES = {"http", "https"}
_CODE_STYLE = {"color", "background-color", "font-weight", "font-style", "text-decoration"}


def escape(text: object) -> str:
    """``text`` (``None`` → empty) as HTML text, quotes escaped: safe in content and in ``"..."`` attributes."""
    return html.escape("" if text is None else str(text), quote=True)


def sanitize(markup: str) -> str:
    """Untrusted HTML → HTML with only the allow-listed tags/attributes (see the module docstring).

    Script and style elements are removed with their content; comments are removed.
    """
    return nh3.clean(
        str(markup or ""), tags=_TAGS, attributes=_ATTRS, url_schemes=_SCHEMES, url_relative="deny",
        link_rel="noopener noreferrer", clean_content_tags={"script", "style"}, strip_comments=True,
    )  # fmt: skip


@lru_cache(maxsize=1)
def _md():
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.disable("image")  # ![alt](url) renders as "!" and a link: no remote fetch
    return md


def markdown(text: str) -> str:
    """Markdown (a model's prose, ``text/markdown`` outputs) → sanitized HTML. Raw HTML in the
    text is shown as text; images become links; only ``http(s)`` links are kept."""
    return sanitize(_md().render(str(text or "")))


def _markdown_is_inert(text: str) -> bool:
    """Whether a markdown source has no raw HTML, no image and only http(s) links (parsed by
    markdown-it with HTML on, so raw HTML is seen as such)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    md.validateLink = lambda url: True  # see every link, as other markdown parsers would make it
    stack = list(md.parse(text))
    while stack:
        tok = stack.pop()
        if tok.type in ("html_block", "html_inline", "image"):
            return False
        if tok.type == "link_open":
            href = str(tok.attrGet("href") or "")
            if not href.lower().startswith(("http://", "https://")):
                return False
        stack.extend(tok.children or [])
    return True


def markdown_source(text: str) -> str:
    """A markdown cell's source for untrusted markdown (JupyterLab renders markdown cells with
    its own parser and sanitizer, which lets ``<img src=http…>`` load). Text that parses with no
    raw HTML, no image and only http(s) links is returned unchanged; otherwise the
    :func:`markdown` rendering, on one line (newlines as ``&#10;``) so that it is one HTML block
    that the markdown parser does not reinterpret."""
    text = str(text or "")
    if "![" not in text and _markdown_is_inert(text):
        return text
    rendered = markdown(text).replace("\r", "").replace("\n", "&#10;")
    return f'<div class="rlm-prose">{rendered}</div>'


def _b64(data: object) -> str | None:
    """Canonical base64 of ``data`` (a base64 string, or a list of lines), or ``None`` if invalid."""
    if isinstance(data, list):
        data = "".join(str(x) for x in data)
    if not isinstance(data, str):
        return None
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return base64.b64encode(raw).decode("ascii") if raw else None


def image_uri(mime: str, data: object) -> str | None:
    """``data:`` URI of an image output (validated base64 for raster types; SVG text encoded),
    or ``None`` for any other MIME type or invalid data."""
    if mime in RASTER_MIMES:
        b64 = _b64(data)
        return None if b64 is None else f"data:{mime};base64,{b64}"
    if mime == SVG_MIME:
        text = "".join(data) if isinstance(data, list) else data
        if not isinstance(text, str):
            return None
        return f"data:{SVG_MIME};base64,{base64.b64encode(text.encode('utf-8')).decode('ascii')}"
    return None


def image(mime: str, data: object, css_class: str = "rlm-image") -> str:
    """``<img>`` of an image output (see :func:`image_uri`); empty string when it is not a valid image."""
    uri = image_uri(mime, data)
    if uri is None:
        return ""
    return f'<img class="{escape(css_class)}" style="max-width:100%" alt="" src="{uri}">'


def code(source: str) -> str:
    """Python source highlighted with inline colours (Pygments), then sanitized (``span`` with a
    colour/font ``style`` only); escaped text if Pygments fails."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        body = highlight(str(source or ""), PythonLexer(), HtmlFormatter(noclasses=True, nowrap=True))
    except Exception:
        return escape(source)
    return nh3.clean(body, tags={"span"}, attributes={"span": {"style"}}, filter_style_properties=_CODE_STYLE,
                     url_schemes=set(), clean_content_tags={"script", "style"})


# -- notebook cells --------------------------------------------------------------------------
def _text(value: object) -> str:
    return "".join(value) if isinstance(value, list) else str(value if value is not None else "")


def safe_bundle(data: dict) -> dict:
    """A display's MIME bundle reduced to the kept MIME types (:data:`KEPT_MIMES`): ``text/html``
    sanitized, ``text/markdown`` and SVG turned into sanitized HTML (when no ``text/html`` is
    there), raster images with valid base64 only; executable types dropped."""
    out: dict = {}
    for mime, value in (data or {}).items():
        if mime in RASTER_MIMES:
            b64 = _b64(value)
            if b64 is not None:
                out[mime] = b64
        elif mime == "text/html":
            out[mime] = sanitize(_text(value))
        elif mime in ("text/plain", "application/json"):
            out[mime] = copy.deepcopy(value)
    if "text/html" not in out:
        if SVG_MIME in data and image_uri(SVG_MIME, data[SVG_MIME]):
            out["text/html"] = image(SVG_MIME, data[SVG_MIME])
        elif "text/markdown" in data:
            out["text/html"] = markdown(_text(data["text/markdown"]))
    if not out:
        out["text/plain"] = "[output of a MIME type not shown: " + ", ".join(sorted(map(str, data or {}))) + "]"
    return out


def _safe_metadata(meta: object) -> dict:
    """Only image sizes (numbers) survive from an output's metadata (no ``isolated`` iframes…)."""
    kept: dict = {}
    for mime, sub in (meta or {}).items() if isinstance(meta, dict) else ():
        if mime in RASTER_MIMES and isinstance(sub, dict):
            size = {k: v for k, v in sub.items() if k in ("width", "height") and isinstance(v, (int, float))}
            if size:
                kept[mime] = size
    return kept


def safe_output(out: dict) -> dict | None:
    """One nbformat output made safe for a notebook cell (see :func:`safe_bundle`); streams and
    errors are kept as text; unknown output types → ``None``."""
    ot = out.get("output_type")
    if ot == "stream":
        return {"output_type": "stream", "name": "stderr" if out.get("name") == "stderr" else "stdout",
                "text": _text(out.get("text"))}
    if ot == "error":
        return {"output_type": "error", "ename": _text(out.get("ename")), "evalue": _text(out.get("evalue")),
                "traceback": [_text(t) for t in (out.get("traceback") or [])]}
    if ot in ("display_data", "execute_result"):
        safe = {"output_type": ot, "data": safe_bundle(out.get("data") or {}), "metadata": _safe_metadata(out.get("metadata"))}
        if ot == "execute_result":
            count = out.get("execution_count")
            safe["execution_count"] = count if isinstance(count, int) else None
        return safe
    return None


def safe_outputs(outputs: list[dict]) -> list[dict]:
    """:func:`safe_output` of each output (unknown ones dropped)."""
    return [s for s in (safe_output(o) for o in outputs or [] if isinstance(o, dict)) if s is not None]
