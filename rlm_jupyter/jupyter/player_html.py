"""The HTML of one step of the player (:mod:`rlm_jupyter.jupyter.player`), and the static,
self-contained HTML document of every step.

A *step* is one root iteration. Step ``k`` shows: what the root LM saw (its chat messages:
system prompt, user turns, its earlier replies; the context appears only as the description
it got), what it wrote (prose, code) and what that code printed, the sub-calls and child RLMs
of the step, the sub-call tree of steps ``1..k`` (child RLMs with their own sub-calls), and the
tokens and USD spent up to the end of step ``k``.

The messages come from the recording when its ``iteration_started`` events carry them (logs
of the official ``rlms`` package); otherwise they are rebuilt from the trajectory exactly as
the loop built them (:func:`rlm_jupyter.core.fork.fork`).

Untrusted text (anything a model or the environment kernel produced: messages, replies, code,
outputs, prompts, answers, model ids, the query, run ids) reaches the markup only through
:mod:`.safe_html` and the shared renderers (:mod:`.tree_html`, :mod:`.header_html`,
:mod:`.outputs_html`). The static document has no script at all: steps are switched by
radio buttons and CSS (``:checked``), and a Content-Security-Policy forbids scripts and any
load that is not a ``data:`` image.
"""

from __future__ import annotations

from ..core import events as ev
from ..core.fork import fork
from ..core.gate import USER_MESSAGE_PREFIX
from ..core.limits import Usage
from ..core.prompts import FORCED_FINAL_MESSAGE
from ..core.trajectory import NodeTrace, SubCall, Trajectory
from .. import safe_html as S
from .header_html import final_html, header_from_trajectory, header_html, plot_svg, query_html
from .outputs_html import BOX, MONO, PRE, SUMMARY, Caps, code_html, fmt_tokens, fmt_usd, one_line
from .tree_html import iteration_html, status_span

esc = S.escape


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with a marker of what was left out."""
    return text if len(text) <= limit else text[:limit] + f"\n… [{len(text) - limit:,} more characters]"


def _max_iterations(traj: Trajectory) -> int:
    started = traj.events[0].data if traj.events and traj.events[0].kind == ev.RUN_STARTED else {}
    return int((started.get("limits") or {}).get("max_iterations") or 30)


def recorded_messages(traj: Trajectory) -> dict[int, list]:
    """Root iteration → the messages recorded in its ``iteration_started`` event (``rlms`` logs)."""
    return {
        e.data.get("iteration"): e.data["messages"]
        for e in traj.events
        if e.kind == ev.ITERATION_STARTED and e.node_id == "0" and e.data.get("messages") is not None
    }


def _as_messages(value: object) -> list[dict]:
    if isinstance(value, list):
        return [m if isinstance(m, dict) else {"role": "user", "content": m} for m in value]
    return [{"role": "user", "content": value}]


def saw(traj: Trajectory, k: int, recorded: dict | None = None) -> list[dict] | None:
    """The messages the root LM received at step ``k`` (1-based), or ``None`` when neither
    recorded nor rebuildable (an imported run without them)."""
    it = traj.iterations[k - 1]
    recorded = recorded_messages(traj) if recorded is None else recorded
    if it.index in recorded:
        return _as_messages(recorded[it.index])
    max_it = _max_iterations(traj)
    turns = sum(1 for i in traj.iterations if i.index <= max_it)
    try:
        if it.index <= max_it:
            fp = fork(traj, k - 1)
            return fp.messages + [fp.next_user_message(fp.next_said)]
        fp = fork(traj, turns)  # the forced final call after the last turn
        pending = "\n\n".join([fp.pending, *(USER_MESSAGE_PREFIX + t for t in fp.next_said)])
        return fp.messages + [{"role": "user", "content": f"{pending}\n\n{FORCED_FINAL_MESSAGE}"}]
    except ValueError:
        return None


def usage_upto(traj: Trajectory, k: int) -> Usage:
    """Tokens and USD of every LM call of steps ``1..k`` (root calls, sub-calls, child RLMs)."""
    total = Usage()
    for it in traj.iterations[:k]:
        total.add(traj.iteration_usage(it))
    return total


def _content(m: dict) -> str:
    c = m.get("content")
    if isinstance(c, list):  # OpenAI content parts
        return "\n".join(str(p.get("text", p)) if isinstance(p, dict) else str(p) for p in c)
    return "" if c is None else str(c)


def messages_html(messages: list[dict], caps: Caps) -> str:
    """Chat messages as ``<details class="rlm-message" data-role=...>``; the newest one open.
    The newest and system messages are cut at ``caps.text`` characters, the others (shown in
    full at their own step) at ``caps.prompt``."""
    parts = []
    for i, m in enumerate(messages):
        last = i == len(messages) - 1
        text = _content(m)
        role = str(m.get("role", "?"))
        summary = f"<b>{esc(role)}</b> · {len(text):,} characters · {esc(one_line(text, 90))}"
        body = esc(cut(text, caps.text if last or role == "system" else caps.prompt))
        parts.append(
            f'<details class="rlm-message" data-role="{esc(role)}"{" open" if last else ""}>'
            f'<summary style="{SUMMARY}">{summary}</summary><pre style="{PRE}">{body}</pre></details>'
        )
    return f'<div class="rlm-player-messages">{"".join(parts)}</div>'


def _sub_li(sc: SubCall, op: str) -> str:
    answer = f"error: {sc.error}" if sc.error is not None else (sc.answer or "")
    return (
        f'<li class="rlm-player-sub" data-node="{esc(sc.node_id)}"><code>{esc(op)}</code> {esc(sc.node_id)} · '
        f"{esc(sc.model)} · {esc(one_line(sc.prompt, 60))} → {esc(one_line(answer, 60))} · {sc.usage.total_tokens:,} tokens</li>"
    )


def _subs_li(subcalls: list[SubCall], ops: dict) -> list[str]:
    out, seen = [], set()
    for sc in subcalls:
        if sc.batch is None:
            out.append(_sub_li(sc, ops.get(sc.node_id, "llm_query")))
        elif sc.batch not in seen:
            seen.add(sc.batch)
            group = [s for s in subcalls if s.batch == sc.batch]
            u = Usage()
            for s in group:
                u.add(s.usage)
            inner = "".join(_sub_li(s, "llm_query_batched") for s in group)
            out.append(
                f'<li class="rlm-player-batch"><code>llm_query_batched</code> {len(group)} prompts · {u.total_tokens:,} tokens'
                f"<ul>{inner}</ul></li>"
            )
    return out


def _node_li(traj: Trajectory, node: NodeTrace, ops: dict, upto: int | None, current: int | None) -> str:
    """A node and its iterations (``upto``: the first iterations only), recursively."""
    items = []
    for it in node.iterations[:upto]:
        inner = _subs_li(it.subcalls, ops)
        for cid in it.children:
            child = traj.nodes.get(cid)
            if child is not None:
                inner.append(_node_li(traj, child, ops, None, None))
        mark = ' class="rlm-player-current"' if it.index == current else ""
        bold = ("<b>", "</b>") if it.index == current else ("", "")
        items.append(
            f'<li data-node="{esc(node.node_id)}" data-iteration="{esc(it.index)}"{mark}>{bold[0]}iteration {esc(it.index)}{bold[1]}'
            f" · {len(it.subcalls)} sub-calls · {len(it.children)} child RLMs"
            + (f"<ul>{''.join(inner)}</ul>" if inner else "")
            + "</li>"
        )
    if node.parent_id is None:
        head = f"root RLM · {esc(node.model)}"
    else:
        u = traj.descendant_usage(node.node_id)
        head = (
            f"<code>rlm_query</code> child RLM {esc(node.node_id)} (depth {esc(node.depth)}) · {esc(one_line(node.query, 60))} · "
            f"{status_span(node.status)} · {u.total_tokens:,} tokens → {esc(one_line(node.answer, 60))}"
        )
    return f'<li class="rlm-player-node" data-node="{esc(node.node_id)}">{head}<ul>{"".join(items)}</ul></li>'


def subcall_tree_html(traj: Trajectory, k: int, ops: dict | None = None) -> str:
    """The sub-call tree of root steps ``1..k`` as nested lists (``rlm-player-tree``)."""
    ops = traj.subcall_ops() if ops is None else ops
    root = traj.root
    current = traj.iterations[k - 1].index if root is not None and k else None
    body = _node_li(traj, root, ops, k, current) if root is not None else ""
    return f'<ul class="rlm-player-tree" style="margin:2px 0;padding-left:18px">{body}</ul>'


def _section(cls: str, title: str, body: str, open_: bool = True) -> str:
    return (
        f'<details class="{cls}"{" open" if open_ else ""}><summary style="{SUMMARY};font-weight:600">{title}</summary>'
        f'<div style="{BOX}">{body}</div></details>'
    )


def step_html(traj: Trajectory, k: int, caps: Caps = Caps(), ops: dict | None = None, times: dict | None = None,
              recorded: dict | None = None) -> str:
    """Everything about step ``k`` (1-based) as one ``<div class="rlm-player-step-body">`` with
    ``data-step``, ``data-iteration``, ``data-tokens`` (tokens up to this step) and ``data-usd``.

    Raises:
        IndexError: ``k`` is not between 1 and the number of root iterations.
    """
    its = traj.iterations
    if not 1 <= k <= len(its):
        raise IndexError(f"step {k} out of range: the run has {len(its)} step(s)")
    root = traj.root
    it = its[k - 1]
    ops = traj.subcall_ops() if ops is None else ops
    times = traj.iteration_times("0") if times is None else times
    u = usage_upto(traj, k)
    t_end = times.get(it.index, (None, None))[1]
    when = f" · {t_end:.1f} s into the run" if t_end is not None else ""
    head = (
        f'<div class="rlm-player-head" style="padding:2px 0"><b>Step {k} of {len(its)}</b> · root iteration {esc(it.index)}'
        f' · up to here: <span class="rlm-player-tokens">{esc(fmt_tokens(u))}</span> · '
        f'<span class="rlm-player-usd">{esc(fmt_usd(u))}</span>{when}</div>'
    )
    messages = saw(traj, k, recorded)
    if messages is None:
        seen = '<div style="color:#57606a">This recording does not hold the root model\'s messages.</div>'
        n_msgs = "not recorded"
    else:
        seen = messages_html(messages, caps)
        n_msgs = f"{len(messages)} messages"
    raw = (
        f'<details class="rlm-player-reply"><summary style="{SUMMARY}">the reply as written ({len(it.reply):,} characters)</summary>'
        f'<pre style="{PRE}">{esc(cut(it.reply, caps.text))}</pre></details>'
    )
    edited = "".join(  # step mode: the user edited a block before it ran; the model's version
        f'<details class="rlm-player-edited"><summary style="{SUMMARY}">block {b + 1}: the model\'s code '
        f"(the user edited it before it ran)</summary>{code_html(cell.original_code.rstrip())}</details>"
        for b, cell in enumerate(it.cells)
        if cell.original_code is not None
    )
    wrote = iteration_html(traj, root, it, caps, open_=True, ops=ops, times=times) + edited + raw
    parts = [
        head,
        query_html(root.query),
        _section("rlm-player-saw", f"What the root model saw ({n_msgs}; the context only as its description)", seen),
        _section("rlm-player-wrote", "What it wrote, and what the code printed", wrote),
        _section("rlm-player-tree-so-far", f"Sub-call tree so far ({len(traj.subcalls)} sub-calls in the whole run)", subcall_tree_html(traj, k, ops)),
    ]
    if k == len(its):
        parts.append(final_html(root.answer, root.status, caps, root.answer_source))
    return (
        f'<div class="rlm-player-step-body" data-step="{k}" data-iteration="{esc(it.index)}" data-tokens="{u.total_tokens}" '
        f'data-usd="{u.usd:.6f}" style="font-size:13px;line-height:1.4">{"".join(parts)}</div>'
    )


def run_summary_html(traj: Trajectory) -> str:
    """Header line and tokens/USD plot of the whole run (above the steps)."""
    return header_html(header_from_trajectory(traj)) + plot_svg(traj)


CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
_CSS = (
    "body{font-family:system-ui,sans-serif;margin:16px;color:#24292f}"
    ".rlm-radio{position:absolute;opacity:0;width:1px;height:1px;margin:0}"
    ".rlm-player-bar{display:flex;flex-wrap:wrap;gap:2px;margin:6px 0;padding:3px;border-radius:4px}"
    ".rlm-player-bar label{cursor:pointer;min-width:26px;text-align:center;padding:2px 4px;border:1px solid #d0d7de;"
    f"border-radius:3px;{MONO}}}"
    ".rlm-radio:focus-visible~.rlm-player-bar{outline:2px solid #0969da}"
    ".rlm-player-step{display:none}"
    ".rlm-player-nav{margin:4px 0}"
    ".rlm-player-nav label,.rlm-player-nav span.rlm-off{display:inline-block;padding:2px 10px;border:1px solid #d0d7de;"
    "border-radius:4px;margin-right:6px;cursor:pointer;background:#f6f8fa}"
    ".rlm-player-nav span.rlm-off{color:#8c959f;cursor:default}"
)


def _nav(k: int, n: int) -> str:
    prev = f'<label class="rlm-prev" for="rlm-s{k - 1}">‹ previous</label>' if k > 1 else '<span class="rlm-off">‹ previous</span>'
    nxt = f'<label class="rlm-next" for="rlm-s{k + 1}">next ›</label>' if k < n else '<span class="rlm-off">next ›</span>'
    return f'<div class="rlm-player-nav">{prev}{nxt}<span>step {k} of {n} · arrow keys step once a step is selected</span></div>'


def document_html(traj: Trajectory, caps: Caps = Caps(), steps: list[str] | None = None) -> str:
    """The static player: one HTML document, every step pre-rendered, no script (radio buttons
    and CSS switch the steps; the arrow keys move between radio buttons), no remote load.

    Args:
        traj: the run; caps: character limits; steps: the step HTML already rendered
            (:func:`step_html` of steps 1..N), else rendered here.
    """
    n = len(traj.iterations)
    ops, times, recorded = traj.subcall_ops(), traj.iteration_times("0"), recorded_messages(traj)
    steps = steps if steps is not None else [step_html(traj, k, caps, ops, times, recorded) for k in range(1, n + 1)]
    rules = [
        f"#rlm-s{k}:checked~.rlm-player-steps #rlm-step-{k}{{display:block}}"
        f'#rlm-s{k}:checked~.rlm-player-bar label[for="rlm-s{k}"]{{background:#0969da;color:#fff}}'
        for k in range(1, n + 1)
    ]
    radios = "".join(
        f'<input type="radio" class="rlm-radio" name="rlm-step" id="rlm-s{k}" aria-label="step {k}"{" checked autofocus" if k == 1 else ""}>'
        for k in range(1, n + 1)
    )
    bar = "".join(f'<label for="rlm-s{k}" title="step {k}">{k}</label>' for k in range(1, n + 1))
    sections = "".join(
        f'<section class="rlm-player-step" id="rlm-step-{k}" data-step="{k}">{_nav(k, n)}{html}</section>'
        for k, html in enumerate(steps, 1)
    )
    empty = "" if n else '<p class="rlm-player-empty">This run has no root iterations.</p>'
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>RLM run {esc(traj.run_id)}</title><style>{_CSS}{''.join(rules)}</style></head>"
        f'<body><div class="rlm-player rlm-player-static">{run_summary_html(traj)}{radios}'
        f'<div class="rlm-player-bar" aria-hidden="true">{bar}</div><div class="rlm-player-steps">{sections}</div>{empty}'
        "</div></body></html>\n"
    )
