"""Static HTML and plain-text renderings of a run (a :class:`~rlm_jupyter.core.trajectory.Trajectory`).

The same functions draw the live view's pieces (:mod:`rlm_jupyter.jupyter.view`) and the
static rendering that replaces it when the run ends, so a saved notebook shows the run on
GitHub/nbviewer and after a kernel restart. The markup is ``<details>``/``<summary>`` trees
with inline styles (no scripts, no external CSS) and stable class names and ``data-node``
attributes (``rlm-run``, ``rlm-header``, ``rlm-iteration``, ``rlm-subcall``, ``rlm-batch``,
``rlm-child``, ``rlm-final``) for tests and user CSS.

Text that comes from a model (prose, code, outputs, prompts, answers) is escaped; HTML outputs
of the model's code pass an allow-list sanitizer (:func:`sanitize_html`), so no script from a
model reaches the notebook. Long texts are capped (:class:`Caps`) to keep notebooks small; the
full text stays in ``_rlm.trajectory``.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import html.parser
import re
from ..core import events as ev
from ..core.limits import Usage
from ..core.trajectory import Iteration, NodeTrace, SubCall, Trajectory

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
        text: one output stream, answer or prose.
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


def esc(text: object) -> str:
    return html.escape(str(text if text is not None else ""), quote=True)


def cap(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with a marker telling how much was left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… [{len(text) - limit:,} more characters; the full text is in _rlm.trajectory]"


def one_line(text: str | None, limit: int = 100) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def preview(text: str, caps: Caps) -> str:
    lines = (text or "").splitlines()
    head = "\n".join(lines[: caps.preview_lines])
    if len(head) > caps.preview_chars:
        head = head[: caps.preview_chars]
    return head + ("…" if len(head) < len(text or "") else "")


def fmt_usd(u: Usage) -> str:
    return f"${u.usd:.4f}" if u.cost_known else f"${u.usd:.4f}+"


def fmt_tokens(u: Usage) -> str:
    return f"{u.input_tokens:,} in / {u.output_tokens:,} out tokens"


# -- markdown, code, outputs ------------------------------------------------------------------
_md = None


def markdown_html(text: str) -> str:
    """Markdown → HTML with raw HTML escaped (mistune when installed, else a minimal renderer)."""
    global _md
    if _md is None:
        try:
            import mistune

            _md = mistune.create_markdown(escape=True, plugins=["table", "strikethrough"])
        except Exception:  # mistune missing or an incompatible version
            _md = _minimal_markdown
    try:
        return _md(text)
    except Exception:
        return _minimal_markdown(text)


def _inline(text: str) -> str:
    t = esc(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)
    t = re.sub(r"(?<![*\w])\*([^*]+)\*(?![*\w])", r"<em>\1</em>", t)
    return t


_LIST_MARK = re.compile(r"^\s*([-*]|\d+\.)\s+")


def _minimal_markdown(text: str) -> str:
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        if block.startswith("```"):
            out.append(f"<pre>{esc(chr(10).join(l for l in lines if not l.startswith('```')))}</pre>")
        elif m := re.match(r"(#{1,6})\s+(.*)", block):
            n = len(m.group(1))
            out.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
        elif all(re.match(r"\s*([-*]|\d+\.)\s", l) for l in lines):
            items = "".join("<li>" + _inline(_LIST_MARK.sub("", l)) + "</li>" for l in lines)
            out.append(f"<ul>{items}</ul>")
        elif block.strip():
            out.append("<p>" + "<br>".join(_inline(l) for l in lines) + "</p>")
    return "\n".join(out)


def code_html(code: str) -> str:
    """Python source, syntax-highlighted with inline styles (Pygments), or escaped."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        body = highlight(code, PythonLexer(), HtmlFormatter(noclasses=True, nowrap=True))
    except Exception:
        body = esc(code)
    return f'<pre class="rlm-code" style="{PRE};background:#f6f8fa;border:1px solid #d0d7de">{body}</pre>'


_ALLOWED_TAGS = {
    "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "colgroup", "col", "div", "span", "p",
    "b", "i", "em", "strong", "code", "pre", "br", "hr", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "sub", "sup", "small", "blockquote", "dl", "dt", "dd", "details", "summary",
}  # fmt: skip
_ALLOWED_ATTRS = {"class", "colspan", "rowspan", "align", "valign", "border", "title", "style"}
_VOID = {"br", "hr", "col"}


class _Sanitizer(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0  # inside <script>/<style>

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
            return
        if tag not in _ALLOWED_TAGS or self.skip:
            return
        kept = []
        for k, v in attrs:
            if k in _ALLOWED_ATTRS and v is not None:
                if k == "style" and re.search(r"url\s*\(|expression|@import|javascript:", v, re.I):
                    continue
                kept.append(f' {k}="{esc(v)}"')
        self.out.append(f"<{tag}{''.join(kept)}>")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
            return
        if tag in _ALLOWED_TAGS and tag not in _VOID and not self.skip:
            self.out.append(f"</{tag}>")

    def handle_data(self, data):
        if not self.skip:
            self.out.append(esc(data))


def sanitize_html(markup: str) -> str:
    """Keep only an allow-list of tags and attributes (tables, text formatting); drop scripts,
    event handlers, links, iframes and CSS ``url()``."""
    s = _Sanitizer()
    s.feed(markup)
    s.close()
    return "".join(s.out)


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def outputs_html(outputs: list[dict], caps: Caps) -> str:
    """nbformat output dicts (streams, rich displays, images, errors) as HTML."""
    parts = []
    for out in outputs:
        ot = out.get("output_type")
        if ot == "stream":
            color = "#fff0f0" if out.get("name") == "stderr" else "#ffffff"
            text = cap(_ANSI.sub("", _text(out.get("text"))), caps.text)
            parts.append(f'<pre class="rlm-stream" style="{PRE};background:{color}">{esc(text)}</pre>')
        elif ot in ("display_data", "execute_result"):
            parts.append(_rich_html(out.get("data") or {}, caps))
        elif ot == "error":
            tb = out.get("traceback") or [f"{out.get('ename')}: {out.get('evalue')}"]
            text = cap(_ANSI.sub("", "\n".join(tb)), caps.text)
            parts.append(f'<pre class="rlm-error" style="{PRE};background:#fff0f0;color:{FAILED_COLOR}">{esc(text)}</pre>')
    return f'<div class="rlm-outputs">{"".join(parts)}</div>' if parts else ""


def _rich_html(data: dict, caps: Caps) -> str:
    for mime in ("image/png", "image/jpeg", "image/gif"):
        if mime in data:
            b64 = "".join(_text(data[mime]).split())
            return f'<img class="rlm-image" style="max-width:100%" src="data:{mime};base64,{b64}">'
    if "image/svg+xml" in data:  # as an <img>: scripts inside an SVG image never run
        b64 = base64.b64encode(_text(data["image/svg+xml"]).encode()).decode()
        return f'<img class="rlm-image" style="max-width:100%" src="data:image/svg+xml;base64,{b64}">'
    if "text/html" in data:
        markup = _text(data["text/html"])
        if len(markup) <= caps.text * 5:
            return f'<div class="rlm-html" style="overflow-x:auto">{sanitize_html(markup)}</div>'
    if "text/markdown" in data:
        return markdown_html(cap(_text(data["text/markdown"]), caps.text))
    text = _text(data.get("text/plain", ""))
    return f'<pre class="rlm-result" style="{PRE};background:#ffffff">{esc(cap(text, caps.text))}</pre>'


# -- the tree -----------------------------------------------------------------------------------
def subcall_ops(traj: Trajectory) -> dict[str, str]:
    """Sub-call id → operation (``llm_query``; ``rlm_query`` at max depth), from the events."""
    return {e.node_id: e.data.get("op", "llm_query") for e in traj.events if e.kind == ev.SUBCALL_STARTED}


def descendant_usage(traj: Trajectory, node_id: str) -> Usage:
    """Usage of a child RLM and everything below it."""
    total = Usage()
    prefix = node_id + "."
    for nid, node in traj.nodes.items():
        if nid == node_id or nid.startswith(prefix):
            for it in node.iterations:
                total.add(it.usage)
    for sid, sc in traj.subcalls.items():
        if sid.startswith(prefix):
            total.add(sc.usage)
    return total


def iteration_usage(traj: Trajectory, it: Iteration) -> Usage:
    """The root call of an iteration, its sub-calls and its child RLMs (whole subtrees)."""
    total = Usage()
    total.add(it.usage)
    for sc in it.subcalls:
        total.add(sc.usage)
    for cid in it.children:
        total.add(descendant_usage(traj, cid))
    return total


def iteration_times(traj: Trajectory, node_id: str) -> dict[int, tuple[float, float | None]]:
    """Iteration index → (start, end) seconds since the run started (end ``None`` while running)."""
    times: dict[int, list] = {}
    last = None
    for e in traj.events:
        if e.node_id != node_id:
            continue
        if e.kind == ev.ITERATION_STARTED:
            if last is not None and times[last][1] is None:
                times[last][1] = e.t
            last = e.data.get("iteration")
            times[last] = [e.t, None]
        elif e.kind in (ev.FINAL, ev.RUN_FINISHED) and last is not None and times[last][1] is None:
            times[last][1] = e.t
    return {k: (v[0], v[1]) for k, v in times.items()}


def _subcall_html(sc: SubCall, op: str, caps: Caps) -> str:
    running = sc.t_end is None
    latency = "running…" if running else f"{sc.t_end - sc.t_start:.2f} s"
    if sc.error is not None:
        state = f'<span style="color:{FAILED_COLOR}">error</span>'
    elif running:
        state = '<span style="color:#0969da">running</span>'
    else:
        state = "cache hit" if sc.cached else ""
    summary = (
        f"<code>{esc(op)}</code> · {esc(sc.model)} · {esc(one_line(sc.prompt, 70))} · "
        f"{sc.usage.total_tokens:,} tokens · {fmt_usd(sc.usage)} · {latency}" + (f" · {state}" if state else "")
    )
    prompt = sc.prompt or ""
    whole = ""
    if preview(prompt, caps) != prompt:
        whole = (
            f'<details class="rlm-prompt"><summary style="{SUMMARY}">whole prompt ({len(prompt):,} characters)</summary>'
            f'<pre style="{PRE}">{esc(cap(prompt, caps.prompt))}</pre></details>'
        )
    answer = sc.answer if sc.error is None else f"error: {sc.error}"
    body = (
        f"<div><b>model</b> {esc(sc.model)} · <b>tokens</b> {fmt_tokens(sc.usage)} · <b>cost</b> {fmt_usd(sc.usage)} · "
        f"<b>latency</b> {latency} · <b>cache hit</b> {'yes' if sc.cached else 'no'}</div>"
        f'<div><b>prompt</b><pre class="rlm-prompt-preview" style="{PRE}">{esc(preview(prompt, caps))}</pre>{whole}</div>'
        f'<div><b>answer</b><pre class="rlm-answer-text" style="{PRE}">{esc(cap(answer or "", caps.text)) if not running else "…"}</pre></div>'
    )
    return (
        f'<details class="rlm-subcall" data-node="{esc(sc.node_id)}"><summary style="{SUMMARY}">{summary}</summary>'
        f'<div style="{BOX}">{body}</div></details>'
    )


def _more(n: int) -> str:
    return f'<div class="rlm-more" style="color:#57606a">… {n:,} more sub-calls (all of them are listed when the run ends)</div>'


def _subcalls_html(subcalls: list[SubCall], ops: dict[str, str], caps: Caps) -> str:
    """Sub-calls in order; prompts of one ``llm_query_batched`` call grouped in one entry."""
    parts: list[str] = []
    i = 0
    shown = 0
    while i < len(subcalls):
        if caps.subcalls is not None and shown >= caps.subcalls:
            parts.append(_more(len(subcalls) - i))
            break
        shown += 1
        sc = subcalls[i]
        if sc.batch is None:
            parts.append(_subcall_html(sc, ops.get(sc.node_id, "llm_query"), caps))
            i += 1
            continue
        group = [s for s in subcalls[i:] if s.batch == sc.batch]
        i += len(group)
        u = Usage()
        for s in group:
            u.add(s.usage)
        done = sum(1 for s in group if s.t_end is not None)
        errors = sum(1 for s in group if s.error is not None)
        t_end = max((s.t_end for s in group if s.t_end is not None), default=None)
        span = f"{t_end - min(s.t_start for s in group):.2f} s" if done == len(group) and t_end is not None else f"{done}/{len(group)} done"
        summary = (
            f"<code>llm_query_batched</code> · {len(group)} prompts · {u.total_tokens:,} tokens · {fmt_usd(u)} · {span}"
            + (f' · <span style="color:{FAILED_COLOR}">{errors} errors</span>' if errors else "")
        )
        listed = group if caps.subcalls is None else group[: caps.subcalls]
        inner = "".join(_subcall_html(s, "llm_query_batched", caps) for s in listed)
        if len(listed) < len(group):
            inner += _more(len(group) - len(listed))
        parts.append(
            f'<details class="rlm-batch" data-batch="{esc(sc.batch)}"><summary style="{SUMMARY}">{summary}</summary>'
            f'<div style="{BOX}">{inner}</div></details>'
        )
    return "".join(parts)


def iteration_html(
    traj: Trajectory, node: NodeTrace, it: Iteration, caps: Caps = Caps(), open_: bool = False, ops: dict | None = None,
    times: dict | None = None,
) -> str:
    """One iteration as a ``<details>``: prose (markdown), code (highlighted), outputs, sub-calls,
    child RLMs (recursively), notices."""
    ops = subcall_ops(traj) if ops is None else ops
    times = iteration_times(traj, node.node_id) if times is None else times
    u = iteration_usage(traj, it)
    t0, t1 = times.get(it.index, (None, None))
    secs = f" · {t1 - t0:.1f} s" if t0 is not None and t1 is not None else (" · running" if t0 is not None else "")
    bits = [f"{len(it.cells)} code block{'s' if len(it.cells) != 1 else ''}"]
    if it.subcalls:
        bits.append(f"{len(it.subcalls)} sub-call{'s' if len(it.subcalls) != 1 else ''}")
    if it.children:
        bits.append(f"{len(it.children)} child RLM{'s' if len(it.children) != 1 else ''}")
    summary = f"<b>Iteration {it.index}</b> · {' · '.join(bits)} · {u.total_tokens:,} tokens · {fmt_usd(u)}{secs}"
    body = []
    prose = it.prose
    if prose:
        body.append(f'<div class="rlm-prose">{markdown_html(cap(prose, caps.text))}</div>')
    elif not it.reply:
        body.append('<div class="rlm-prose" style="color:#57606a">waiting for the model…</div>')
    for cell in it.cells:
        status = "" if cell.status in ("ok",) else f' <span style="color:{FAILED_COLOR if cell.status != "running" else "#0969da"}">[{esc(cell.status)}]</span>'
        count = f"[{cell.execution_count}]" if cell.execution_count is not None else "[ ]"
        cell_secs = f" · {cell.seconds:.2f} s" if cell.status != "running" else ""
        body.append(
            f'<div class="rlm-cell"><div style="color:#57606a;{MONO}">In {count}{status}{cell_secs}</div>'
            f"{code_html(cell.code.rstrip())}{outputs_html(cell.outputs, caps)}</div>"
        )
    if it.subcalls:
        body.append(f'<div class="rlm-subcalls"><b>Sub-calls</b>{_subcalls_html(it.subcalls, ops, caps)}</div>')
    for cid in it.children:
        child = traj.nodes.get(cid)
        if child is not None:
            body.append(child_html(traj, child, caps, ops))
    for note in it.notices:
        body.append(f'<div class="rlm-notice" style="color:#9a6700">⚠ {esc(note)}</div>')
    return (
        f'<details class="rlm-iteration" data-node="{esc(node.node_id)}" data-iteration="{it.index}"{" open" if open_ else ""}>'
        f'<summary style="{SUMMARY}">{summary}</summary><div style="{BOX}">{"".join(body)}</div></details>'
    )


def child_html(traj: Trajectory, child: NodeTrace, caps: Caps, ops: dict | None = None) -> str:
    """A child RLM (``rlm_query``) with its own iterations, nested."""
    ops = subcall_ops(traj) if ops is None else ops
    u = descendant_usage(traj, child.node_id)
    summary = (
        f"<code>rlm_query</code> child RLM {esc(child.node_id)} (depth {child.depth}) · {esc(one_line(child.query, 60))} · "
        f"{_status_span(child.status)} · {len(child.iterations)} iterations · {u.total_tokens:,} tokens · {fmt_usd(u)}"
    )
    times = iteration_times(traj, child.node_id)
    iters = "".join(iteration_html(traj, child, it, caps, ops=ops, times=times) for it in child.iterations)
    answer = (
        f'<div class="rlm-child-answer"><b>answer</b><pre style="{PRE}">{esc(cap(child.answer, caps.text))}</pre></div>'
        if child.answer is not None else ""
    )
    return (
        f'<details class="rlm-child" data-node="{esc(child.node_id)}"><summary style="{SUMMARY}">{summary}</summary>'
        f'<div style="{BOX}"><div><b>query</b><pre style="{PRE}">{esc(cap(child.query, caps.text))}</pre></div>'
        f"<div>models: {esc(child.model)} / {esc(child.sub_model)}</div>{iters}{answer}</div></details>"
    )


def _status_span(status: str) -> str:
    return f'<span style="color:{STATUS_COLORS.get(status, FAILED_COLOR)};font-weight:600">{esc(status)}</span>'


# -- header, plot, answer ---------------------------------------------------------------------
@dataclasses.dataclass
class Header:
    """What the header line shows (from :class:`~rlm_jupyter.core.stats.RunStats` or a result)."""

    status: str = "running"
    iteration: int = 0
    max_iterations: int = 0
    elapsed: float = 0.0
    usage: Usage = dataclasses.field(default_factory=Usage)
    subcalls: int = 0
    subcalls_running: int = 0
    model: str = ""
    sub_model: str = ""
    message: str = ""

    def line(self) -> str:
        running = f" ({self.subcalls_running} running)" if self.subcalls_running and self.status == "running" else ""
        return (
            f"RLM {self.status} · iteration {self.iteration}/{self.max_iterations} · {self.elapsed:.1f} s · "
            f"{fmt_tokens(self.usage)} · {fmt_usd(self.usage)} · {self.subcalls} sub-calls{running} · "
            f"models {self.model} / {self.sub_model}"
        )


def header_html(h: Header) -> str:
    color = STATUS_COLORS.get(h.status, FAILED_COLOR)
    running = f" ({h.subcalls_running} running)" if h.subcalls_running and h.status == "running" else ""
    cells = [
        f'<span class="rlm-status" style="color:#fff;background:{color};padding:1px 8px;border-radius:10px;font-weight:600">{esc(h.status)}</span>',
        f'<span class="rlm-iter">iteration {h.iteration}/{h.max_iterations}</span>',
        f'<span class="rlm-elapsed">{h.elapsed:.1f} s</span>',
        f'<span class="rlm-tokens">{fmt_tokens(h.usage)}</span>',
        f'<span class="rlm-usd">{fmt_usd(h.usage)}</span>',
        f'<span class="rlm-subcount">{h.subcalls} sub-calls{running}</span>',
        f'<span class="rlm-models">root <code>{esc(h.model)}</code> · sub <code>{esc(h.sub_model)}</code></span>',
    ]
    msg = ""
    if h.message and h.status != "done":
        msg = f'<div class="rlm-message" style="color:{color}">{esc(h.message)}</div>'
    return f'<div class="rlm-header" style="padding:2px 0">{" · ".join(cells)}{msg}</div>'


def plot_svg(traj: Trajectory) -> str:
    """A small bar chart: tokens (blue) and USD (orange) per root iteration, as inline SVG."""
    its = traj.iterations
    if not its:
        return ""
    usages = [iteration_usage(traj, it) for it in its]
    toks = [u.total_tokens for u in usages]
    usds = [u.usd for u in usages]
    bw, gap, h = 14, 4, 36
    width = 80 + len(its) * (bw + gap)
    rows = []
    for r, (label, vals, color, fmt) in enumerate(
        (("tokens", toks, "#0969da", lambda v: f"{v:,}"), ("USD", usds, "#d4a72c", lambda v: f"${v:.4f}"))
    ):
        top = max(vals) or 1
        y0 = r * (h + 14)
        rows.append(f'<text x="0" y="{y0 + h // 2}" font-size="11" fill="#24292f">{label}</text>')
        rows.append(f'<text x="0" y="{y0 + h // 2 + 12}" font-size="9" fill="#57606a">max {fmt(max(vals))}</text>')
        for i, v in enumerate(vals):
            bh = max(1, round(h * v / top)) if v else 0
            x = 80 + i * (bw + gap)
            rows.append(
                f'<rect x="{x}" y="{y0 + h - bh}" width="{bw}" height="{bh}" fill="{color}">'
                f"<title>iteration {its[i].index}: {fmt(v)}</title></rect>"
            )
    labels = "".join(
        f'<text x="{80 + i * (bw + gap) + bw / 2}" y="{2 * (h + 14) - 2}" font-size="9" text-anchor="middle" fill="#57606a">{it.index}</text>'
        for i, it in enumerate(its)
    )
    total_h = 2 * (h + 14)
    return (
        f'<div class="rlm-plot" title="tokens and cost per iteration"><svg xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{total_h}" viewBox="0 0 {width} {total_h}">{"".join(rows)}{labels}</svg></div>'
    )


def final_html(answer: str | None, status: str, caps: Caps = Caps(), source: str | None = None) -> str:
    if answer is None:
        return f'<div class="rlm-final rlm-no-answer" style="margin-top:6px;color:{FAILED_COLOR}">No answer ({esc(status)}).</div>'
    color = STATUS_COLORS["done"] if status == "done" else STATUS_COLORS["stopped"]
    src = " (forced: the model gave no FINAL)" if source == "forced" else ""
    return (
        f'<div class="rlm-final" style="margin-top:6px;padding:6px 10px;border-left:4px solid {color};background:#f6fff8">'
        f'<div style="font-weight:600">Answer{src}</div>'
        f'<div class="rlm-answer"><pre class="rlm-final-text" style="{PRE};background:transparent;font-size:13px">'
        f"{esc(cap(answer, caps.text * 5))}</pre></div></div>"
    )


def header_from_trajectory(traj: Trajectory, status: str | None = None, message: str | None = None,
                           usage: Usage | None = None, elapsed: float | None = None) -> Header:
    root = traj.root
    limits = {}
    for e in traj.events:
        if e.kind == ev.RUN_STARTED and e.node_id == "0":
            limits = e.data.get("limits", {}) or {}
            break
    return Header(
        status=status or (root.status if root else "running"),
        iteration=len(root.iterations) if root else 0,
        max_iterations=limits.get("max_iterations", 0) or 0,
        elapsed=elapsed if elapsed is not None else (traj.events[-1].t if traj.events else 0.0),
        usage=usage if usage is not None else traj.usage(),
        subcalls=len(traj.subcalls),
        model=root.model if root else "",
        sub_model=root.sub_model if root else "",
        message=message if message is not None else (root.message if root else ""),
    )


def run_html(traj: Trajectory, header: Header, answer: str | None = None, caps: Caps = Caps()) -> str:
    """The whole run: header, query, plot, iterations, final answer (the static rendering)."""
    root = traj.root
    ops = subcall_ops(traj)
    parts = [header_html(header)]
    if root is not None:
        parts.append(f'<div class="rlm-query" style="color:#57606a">Query: {esc(one_line(root.query, 300))}</div>')
        parts.append(plot_svg(traj))
        times = iteration_times(traj, "0")
        parts.extend(iteration_html(traj, root, it, caps, ops=ops, times=times) for it in root.iterations)
    if answer is None and root is not None:
        answer = root.answer
    parts.append(final_html(answer, header.status, caps, root.answer_source if root else None))
    return f'<div class="rlm-run" data-run-id="{esc(traj.run_id)}" style="font-size:13px;line-height:1.4">{"".join(parts)}</div>'


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def run_text(traj: Trajectory, header: Header, answer: str | None = None) -> str:
    """The ``text/plain`` fallback (terminals): header, one line per iteration, the answer."""
    root = traj.root
    lines = [header.line()]
    if header.message and header.status != "done":
        lines.append(header.message)
    if root is not None:
        for it in root.iterations:
            u = iteration_usage(traj, it)
            code = one_line(it.cells[0].code, 60) if it.cells else "(no code)"
            lines.append(
                f"  iteration {it.index}: {_n(len(it.cells), 'code block')}, {_n(len(it.subcalls), 'sub-call')}, "
                f"{_n(len(it.children), 'child RLM')}, {u.total_tokens:,} tokens, {fmt_usd(u)} · {code}"
            )
        if answer is None:
            answer = root.answer
    lines.append("")
    lines.append("Answer:" if answer is not None else f"No answer ({header.status}).")
    if answer is not None:
        lines.append(answer)
    return "\n".join(lines)


def static_bundle(traj: Trajectory, header: Header, answer: str | None = None, caps: Caps = Caps()) -> dict:
    """``{"text/html": ..., "text/plain": ...}`` of a finished run."""
    return {"text/html": run_html(traj, header, answer, caps), "text/plain": run_text(traj, header, answer)}
