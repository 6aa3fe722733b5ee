"""The iteration / sub-call / child-RLM tree of a run as ``<details>`` HTML.

Stable class names and ``data-node`` attributes (``rlm-iteration``, ``rlm-subcall``,
``rlm-batch``, ``rlm-child``) for tests and user CSS. Untrusted text (prose, code, outputs,
prompts, answers, model ids, queries, notices) goes through :mod:`rlm_jupyter.safe_html`.
"""

from __future__ import annotations

from ..core.limits import Usage
from ..core.trajectory import Iteration, NodeTrace, SubCall, Trajectory
from .. import safe_html as S
from .outputs_html import (
    BOX, FAILED_COLOR, MONO, PRE, STATUS_COLORS, SUMMARY, Caps, cap, code_html, fmt_tokens, fmt_usd, one_line,
    outputs_html, preview,
)  # fmt: skip

esc = S.escape


# -- markup ------------------------------------------------------------------------------------
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


def _cell_html(cell, caps: Caps) -> str:
    if cell.status == "ok":
        status = ""
    else:
        color = "#0969da" if cell.status == "running" else FAILED_COLOR
        status = f' <span style="color:{color}">[{esc(cell.status)}]</span>'
    count = f"[{esc(cell.execution_count)}]" if cell.execution_count is not None else "[ ]"
    secs = f" · {cell.seconds:.2f} s" if cell.status != "running" else ""
    return (
        f'<div class="rlm-cell"><div style="color:#57606a;{MONO}">In {count}{status}{secs}</div>'
        f"{code_html((cell.code or '').rstrip())}{outputs_html(cell.outputs, caps)}</div>"
    )


def iteration_html(
    traj: Trajectory, node: NodeTrace, it: Iteration, caps: Caps = Caps(), open_: bool = False, ops: dict | None = None,
    times: dict | None = None,
) -> str:
    """One iteration as a ``<details>``: prose (markdown), code (highlighted), outputs, sub-calls,
    child RLMs (recursively), notices."""
    ops = traj.subcall_ops() if ops is None else ops
    times = traj.iteration_times(node.node_id) if times is None else times
    u = traj.iteration_usage(it)
    t0, t1 = times.get(it.index, (None, None))
    secs = f" · {t1 - t0:.1f} s" if t0 is not None and t1 is not None else (" · running" if t0 is not None else "")
    bits = [f"{len(it.cells)} code block{'s' if len(it.cells) != 1 else ''}"]
    if it.subcalls:
        bits.append(f"{len(it.subcalls)} sub-call{'s' if len(it.subcalls) != 1 else ''}")
    if it.children:
        bits.append(f"{len(it.children)} child RLM{'s' if len(it.children) != 1 else ''}")
    summary = f"<b>Iteration {esc(it.index)}</b> · {' · '.join(bits)} · {u.total_tokens:,} tokens · {fmt_usd(u)}{secs}"
    body = []
    if it.prose:
        body.append(f'<div class="rlm-prose">{S.markdown(cap(it.prose, caps.text))}</div>')
    elif not it.reply:
        body.append('<div class="rlm-prose" style="color:#57606a">waiting for the model…</div>')
    body.extend(_cell_html(cell, caps) for cell in it.cells)
    if it.subcalls:
        body.append(f'<div class="rlm-subcalls"><b>Sub-calls</b>{_subcalls_html(it.subcalls, ops, caps)}</div>')
    for cid in it.children:
        child = traj.nodes.get(cid)
        if child is not None:
            body.append(child_html(traj, child, caps, ops))
    for note in it.notices:
        body.append(f'<div class="rlm-notice" style="color:#9a6700">⚠ {esc(note)}</div>')
    return (
        f'<details class="rlm-iteration" data-node="{esc(node.node_id)}" data-iteration="{esc(it.index)}"{" open" if open_ else ""}>'
        f'<summary style="{SUMMARY}">{summary}</summary><div style="{BOX}">{"".join(body)}</div></details>'
    )


def status_span(status: str) -> str:
    """A run's status word, coloured (the colour from a fixed table, the word escaped)."""
    return f'<span style="color:{STATUS_COLORS.get(status, FAILED_COLOR)};font-weight:600">{esc(status)}</span>'


def child_html(traj: Trajectory, child: NodeTrace, caps: Caps, ops: dict | None = None) -> str:
    """A child RLM (``rlm_query``) with its own iterations, nested."""
    ops = traj.subcall_ops() if ops is None else ops
    u = traj.descendant_usage(child.node_id)
    summary = (
        f"<code>rlm_query</code> child RLM {esc(child.node_id)} (depth {esc(child.depth)}) · {esc(one_line(child.query, 60))} · "
        f"{status_span(child.status)} · {len(child.iterations)} iterations · {u.total_tokens:,} tokens · {fmt_usd(u)}"
    )
    times = traj.iteration_times(child.node_id)
    iters = "".join(iteration_html(traj, child, it, caps, ops=ops, times=times) for it in child.iterations)
    answer = (
        f'<div class="rlm-child-answer"><b>answer</b><pre style="{PRE}">{esc(cap(child.answer, caps.text))}</pre></div>'
        if child.answer is not None else ""
    )
    return (
        f'<details class="rlm-child" data-node="{esc(child.node_id)}"><summary style="{SUMMARY}">{summary}</summary>'
        f'<div style="{BOX}"><div><b>query</b><pre style="{PRE}">{esc(cap(child.query or "", caps.text))}</pre></div>'
        f"<div>models: {esc(child.model)} / {esc(child.sub_model)}</div>{iters}{answer}</div></details>"
    )
