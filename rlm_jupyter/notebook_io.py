"""A trajectory as a Jupyter notebook (nbformat v4).

The root LM's code becomes code cells with the real outputs and execution counts the
environment kernel produced; its prose becomes markdown; each iteration's sub-calls are
summarised in a markdown table (child RLMs by their answer). Cells carry
``metadata["rlm"] = {"run_id", "node_id", "iteration", "block"}`` and tags
``rlm-run-<id>`` / ``rlm-iteration-<i>``. The notebook's ``metadata["rlm"]["events"]`` keeps
the whole event stream, so :func:`read_notebook` rebuilds the exact trajectory.

Untrusted content (issue 10): outputs pass :func:`~rlm_jupyter.safe_html.safe_outputs`
(no executable MIME types, sanitized ``text/html``, valid base64 images); every markdown cell
(query, model ids, prose, sub-call table, notices, answer) passes
:func:`~rlm_jupyter.safe_html.markdown_source` (no raw HTML, no images, http(s) links only).
"""

from __future__ import annotations

import dataclasses
import pathlib

import nbformat
from nbformat import v4

from .core.events import Event
from .core.text import one_line
from .core.trajectory import NodeTrace, Trajectory
from .safe_html import markdown_source, safe_outputs

PROMPT_PREVIEW_CHARS = 120


def _one_line(text: str | None, limit: int = PROMPT_PREVIEW_CHARS) -> str:
    """One table cell: :func:`~rlm_jupyter.core.text.one_line` with ``|`` escaped."""
    return one_line(text, limit).replace("|", "\\|")


def _subcall_table(traj: Trajectory, node: NodeTrace, index: int) -> str | None:
    it = next((i for i in node.iterations if i.index == index), None)
    if it is None or not (it.subcalls or it.children):
        return None
    rows = ["| sub-call | model | prompt | answer | tokens | s |", "|---|---|---|---|---|---|"]
    for sc in it.subcalls:
        secs = f"{(sc.t_end or sc.t_start) - sc.t_start:.2f}"
        answer = sc.answer if sc.error is None else f"error: {sc.error}"
        rows.append(
            f"| {sc.node_id} | {sc.model} | {_one_line(sc.prompt)} | {_one_line(answer)} | {sc.usage.total_tokens} | {secs} |"
        )
    for cid in it.children:
        child = traj.nodes.get(cid)
        if child is not None:
            rows.append(
                f"| {cid} (child RLM, {len(child.iterations)} iterations) | {child.model} | {_one_line(child.query)} | "
                f"{_one_line(child.answer)} | | |"
            )
    head = f"**Sub-calls of iteration {index}** ({len(it.subcalls)} sub-calls, {len(it.children)} child RLMs)\n\n"
    return head + markdown_source("\n".join(rows))


def trajectory_to_notebook(traj: Trajectory) -> nbformat.NotebookNode:
    """Build the notebook of ``traj`` (see the module docstring)."""
    root = traj.root
    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["rlm"] = {"run_id": traj.run_id, "events": [dataclasses.asdict(e) for e in traj.events]}
    if root is None:
        nb.cells.append(v4.new_markdown_cell("# Empty RLM run"))
        return nb
    u = traj.usage()
    info = root.context_info
    nb.cells.append(
        v4.new_markdown_cell(
            markdown_source(
                f"# RLM run `{traj.run_id}`\n\n**Query:** {root.query}\n\n"
                f"- context: {info.get('type')}, {info.get('total_chars', 0):,} characters\n"
                f"- root model: `{root.model}`, sub-model: `{root.sub_model}`\n"
                f"- status: **{root.status}** {root.message}\n"
                f"- {len(root.iterations)} iterations, {len(traj.subcalls)} sub-calls, "
                f"{u.input_tokens:,} input + {u.output_tokens:,} output tokens, ${u.usd:.4f}"
            ),
            metadata={"rlm": {"run_id": traj.run_id, "node_id": "0", "kind": "header"}},
        )
    )
    tags = [f"rlm-run-{traj.run_id}"]
    for it in root.iterations:
        meta = {"run_id": traj.run_id, "node_id": "0", "iteration": it.index}
        prose = it.prose
        heading = f"### Iteration {it.index}"
        nb.cells.append(
            v4.new_markdown_cell(
                f"{heading}\n\n{markdown_source(prose)}" if prose else heading,
                metadata={"rlm": {**meta, "kind": "prose"}, "tags": tags + [f"rlm-iteration-{it.index}"]},
            )
        )
        for b, cell in enumerate(it.cells):
            code = v4.new_code_cell(
                cell.code.rstrip("\n"),
                execution_count=cell.execution_count,
                outputs=[nbformat.from_dict(o) for o in safe_outputs(cell.outputs)],
                metadata={"rlm": {**meta, "block": b, "status": cell.status}, "tags": tags + [f"rlm-iteration-{it.index}"]},
            )
            nb.cells.append(code)
        table = _subcall_table(traj, root, it.index)
        if table:
            nb.cells.append(v4.new_markdown_cell(table, metadata={"rlm": {**meta, "kind": "subcalls"}}))
        if it.notices:
            notes = markdown_source("\n".join(f"> {n}" for n in it.notices))
            nb.cells.append(v4.new_markdown_cell(notes, metadata={"rlm": {**meta, "kind": "notices"}}))
    answer = root.answer if root.answer is not None else "(no answer)"
    nb.cells.append(
        v4.new_markdown_cell(
            markdown_source(f"## Final answer ({root.answer_source or root.status})\n\n{answer}"),
            metadata={"rlm": {"run_id": traj.run_id, "node_id": "0", "kind": "final"}},
        )
    )
    nbformat.validate(nb)
    return nb


def write_notebook(traj: Trajectory, path: str | pathlib.Path) -> pathlib.Path:
    """Write ``traj`` as an .ipynb file; returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(trajectory_to_notebook(traj), str(path))
    return path


def read_notebook(path: str | pathlib.Path) -> Trajectory:
    """Rebuild the :class:`Trajectory` saved in a notebook by :func:`write_notebook`.

    Raises:
        ValueError: the notebook holds no RLM events.
    """
    nb = nbformat.read(str(path), as_version=4)
    events = nb.metadata.get("rlm", {}).get("events")
    if not events:
        raise ValueError(f"{path} holds no RLM trajectory (metadata.rlm.events is missing)")
    return Trajectory.from_events(Event(**dict(e)) for e in events)
