"""The header line, the query line, the tokens/cost plot and the final answer of a run's rendering.

Untrusted text (model ids, status message, query, answer) goes through
:mod:`rlm_jupyter.safe_html`; colours come from fixed tables.
"""

from __future__ import annotations

from ..core import events as ev
from ..core.limits import Usage
from ..core.stats import RunStats
from ..core.trajectory import Trajectory
from .. import safe_html as S
from .outputs_html import FAILED_COLOR, PRE, STATUS_COLORS, Caps, cap, fmt_tokens, fmt_usd, one_line

esc = S.escape


# The header shows a run's RunStats (live: folded from the events; finished: from the trajectory).
Header = RunStats


def header_html(h: Header) -> str:
    """The header as a ``<div class="rlm-header">`` of ``<span>`` pieces."""
    color = STATUS_COLORS.get(h.status, FAILED_COLOR)
    running = f" ({esc(h.subcalls_running)} running)" if h.subcalls_running and h.status == "running" else ""
    cells = [
        f'<span class="rlm-status" style="color:#fff;background:{color};padding:1px 8px;border-radius:10px;font-weight:600">{esc(h.status)}</span>',
        f'<span class="rlm-iter">iteration {esc(h.iteration)}/{esc(h.max_iterations)}</span>',
        f'<span class="rlm-elapsed">{float(h.elapsed):.1f} s</span>',
        f'<span class="rlm-tokens">{esc(fmt_tokens(h.usage))}</span>',
        f'<span class="rlm-usd">{esc(fmt_usd(h.usage))}</span>',
        f'<span class="rlm-subcount">{esc(h.subcalls)} sub-calls{running}</span>',
        f'<span class="rlm-models">root <code>{esc(h.model)}</code> · sub <code>{esc(h.sub_model)}</code></span>',
    ]
    msg = ""
    if h.message and h.status != "done":
        msg = f'<div class="rlm-message" style="color:{color}">{esc(h.message)}</div>'
    return f'<div class="rlm-header" style="padding:2px 0">{" · ".join(cells)}{msg}</div>'


def query_html(query: str | None) -> str:
    """The query, on one line (300 characters at most)."""
    return f'<div class="rlm-query" style="color:#57606a">Query: {esc(one_line(query, 300))}</div>'


def plot_svg(traj: Trajectory) -> str:
    """A small bar chart: tokens (blue) and USD (orange) per root iteration, as inline SVG."""
    its = traj.iterations
    if not its:
        return ""
    usages = [traj.iteration_usage(it) for it in its]
    toks = [int(u.total_tokens) for u in usages]
    usds = [float(u.usd) for u in usages]
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
                f"<title>iteration {esc(its[i].index)}: {fmt(v)}</title></rect>"
            )
    labels = "".join(
        f'<text x="{80 + i * (bw + gap) + bw / 2}" y="{2 * (h + 14) - 2}" font-size="9" text-anchor="middle" fill="#57606a">{esc(it.index)}</text>'
        for i, it in enumerate(its)
    )
    total_h = 2 * (h + 14)
    return (
        f'<div class="rlm-plot" title="tokens and cost per iteration"><svg xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{total_h}" viewBox="0 0 {width} {total_h}">{"".join(rows)}{labels}</svg></div>'
    )


def final_html(answer: str | None, status: str, caps: Caps = Caps(), source: str | None = None) -> str:
    """The final answer (escaped, capped at ``5 * caps.text`` characters), or "No answer (status)"."""
    if answer is None:
        return f'<div class="rlm-final rlm-no-answer" style="margin-top:6px;color:{FAILED_COLOR}">No answer ({esc(status)}).</div>'
    color = STATUS_COLORS["done"] if status == "done" else STATUS_COLORS["stopped"]
    src = " (forced: the model gave no FINAL)" if source == "forced" else ""
    return (
        f'<div class="rlm-final" style="margin-top:6px;padding:6px 10px;border-left:4px solid {color};background:#f6fff8">'
        f'<div style="font-weight:600">Answer{src}</div>'
        f'<div class="rlm-answer"><pre class="rlm-final-text" style="{PRE};background:transparent;font-size:13px">'
        f"{esc(cap(str(answer), caps.text * 5))}</pre></div></div>"
    )


def header_from_trajectory(traj: Trajectory, status: str | None = None, message: str | None = None,
                           usage: Usage | None = None, elapsed: float | None = None) -> Header:
    """The :class:`Header` of a (finished) trajectory; arguments override what the events say."""
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
