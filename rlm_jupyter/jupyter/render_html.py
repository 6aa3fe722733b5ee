"""Static HTML and plain-text renderings of a run (a :class:`~rlm_jupyter.core.trajectory.Trajectory`).

The same functions draw the live view's pieces (:mod:`rlm_jupyter.jupyter.view`) and the
static rendering that replaces it when the run ends, so a saved notebook shows the run on
GitHub/nbviewer and after a kernel restart. The markup is ``<details>``/``<summary>`` trees
with inline styles (no scripts, no external CSS) and stable class names and ``data-node``
attributes (``rlm-run``, ``rlm-header``, ``rlm-iteration``, ``rlm-subcall``, ``rlm-batch``,
``rlm-child``, ``rlm-final``) for tests and user CSS.

The pieces live in small modules, re-exported here (``from . import render_html as R``):

- :mod:`.safe_html` — the only way untrusted text becomes HTML (nh3 allow-list + escaping);
- :mod:`.outputs_html` — caps, styles, formats, nbformat outputs;
- :mod:`.tree_html` — iterations, sub-calls, child RLMs;
- :mod:`.header_html` — header, query, plot, final answer.

Long texts are capped (:class:`Caps`) to keep notebooks small; the full text stays in
``_rlm.trajectory``.
"""

from __future__ import annotations

from ..core.trajectory import Trajectory
from .. import safe_html
from .header_html import Header, final_html, header_from_trajectory, header_html, plot_svg, query_html
from .outputs_html import (
    BOX, FAILED_COLOR, LIVE_CAPS, MONO, PRE, STATUS_COLORS, SUMMARY, Caps, cap, code_html, esc, fmt_tokens, fmt_usd,
    markdown_html, one_line, outputs_html, preview, rich_html, sanitize_html,
)  # fmt: skip
from .tree_html import child_html, iteration_html, status_span

__all__ = [
    "BOX", "FAILED_COLOR", "LIVE_CAPS", "MONO", "PRE", "STATUS_COLORS", "SUMMARY", "Caps", "Header", "cap",
    "child_html", "code_html", "esc", "final_html", "fmt_tokens", "fmt_usd", "header_from_trajectory",
    "header_html", "iteration_html", "markdown_html", "one_line", "outputs_html",
    "plot_svg", "preview", "query_html", "rich_html", "run_html", "run_text", "safe_html", "sanitize_html",
    "static_bundle", "status_span",
]  # fmt: skip


def run_html(traj: Trajectory, header: Header, answer: str | None = None, caps: Caps = Caps()) -> str:
    """The whole run: header, query, plot, iterations, final answer (the static rendering)."""
    root = traj.root
    ops = traj.subcall_ops()
    parts = [header_html(header)]
    if root is not None:
        parts.append(query_html(root.query))
        parts.append(plot_svg(traj))
        times = traj.iteration_times("0")
        parts.extend(iteration_html(traj, root, it, caps, ops=ops, times=times) for it in root.iterations)
    if answer is None and root is not None:
        answer = root.answer
    parts.append(final_html(answer, header.status, caps, root.answer_source if root else None))
    return f'<div class="rlm-run" data-run-id="{esc(traj.run_id)}" style="font-size:13px;line-height:1.4">{"".join(parts)}</div>'


def quiet_html(answer: str | None, header: Header, caps: Caps = Caps()) -> str:
    """The ``--quiet`` rendering: the answer and the header as one small line."""
    return (
        f'<div class="rlm-run rlm-quiet">{final_html(answer, header.status, caps)}'
        f'<div style="color:#57606a;font-size:11px">{esc(header.line())}</div></div>'
    )


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
            u = traj.iteration_usage(it)
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
