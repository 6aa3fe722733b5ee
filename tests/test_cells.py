"""The kernel side of the ``rlm_jupyter.cells`` comm (issue 5): messages, conventions, a real kernel."""

from __future__ import annotations

import json
import textwrap
import time
import uuid

import pytest
from jupyter_client.manager import start_new_kernel

from conftest import collect_iopub, repl
from rlm_jupyter.jupyter import cells as C
from rlm_jupyter.rlm import RLM


class FakeComm:
    def __init__(self, data):
        self.opened = data
        self.sent: list[dict] = []
        self.closed = False

    def send(self, data):
        assert not self.closed
        json.dumps(data)  # must be JSON
        self.sent.append(data)

    def close(self):
        self.closed = True


def _run_view(root, context="abcdef", parent="cell-1", **kw):
    comms: list[FakeComm] = []

    def open_comm(data):
        comms.append(FakeComm(data))
        return comms[-1]

    view = C.CellsView(parent, open_comm=open_comm)
    ticks = []

    def tick():
        ticks.append(time.monotonic())
        view.tick()

    result = RLM(model=root, sub_model=root, **kw).completion("q", context, on_event=view.on_event, on_tick=tick)
    view.finish(result.status)
    return view, comms, result


def test_a_run_becomes_start_inserts_outputs_finish_on_one_comm(scripted):
    root = scripted(
        [
            "Let me look.\n" + repl("print(len(context))") + "\nand more:\n" + repl("x = context.upper()\nx"),
            "Done.\n" + repl("print(x[:2])"),
            "FINAL(6 chars)",
        ],
        latency=0.25,
    )
    view, comms, result = _run_view(root)
    assert len(comms) == 1 and comms[0].closed
    msgs = [comms[0].opened] + comms[0].sent
    assert msgs == view.sent
    run = result.run_id
    assert [m["type"] for m in msgs][0] == "start" and msgs[-1]["type"] == "finish"
    assert msgs[-1]["status"] == "done"
    for m in msgs:
        assert m["v"] == 1 and m["run_id"] == run and m["parent_cell_id"] == "cell-1" and m["t_event"] > 1e9
    inserts = [m["cell"] for m in msgs if m["type"] == "insert"]
    assert [c["key"] for c in inserts] == [
        f"rlm-{run}-1-md", f"rlm-{run}-1-0", f"rlm-{run}-1-1", f"rlm-{run}-2-md", f"rlm-{run}-2-0", f"rlm-{run}-3-md",
    ]
    assert [c["order"] for c in inserts] == list(range(6))
    assert [c["cell_type"] for c in inserts] == ["markdown", "code", "code", "markdown", "code", "markdown"]
    assert inserts[0]["source"] == "### Iteration 1\n\nLet me look.\n\nand more:"
    assert inserts[1]["source"] == f"%%rlm_step {run} 1\nprint(len(context))"
    assert inserts[2]["source"] == f"%%rlm_step {run} 1\nx = context.upper()\nx"
    assert inserts[1]["metadata"] == {
        "rlm": {"run_id": run, "node_id": "0", "iteration": 1, "block": 0, "status": inserts[1]["metadata"]["rlm"]["status"],
                "key": f"rlm-{run}-1-0", "order": 1, "parent_cell_id": "cell-1"},
        "tags": [f"rlm-run-{run}", "rlm-iteration-1"],
    }
    # every code cell ends up with the environment kernel's outputs and execution count
    final = {c["key"]: (c.get("outputs"), c.get("execution_count")) for c in inserts if c["cell_type"] == "code"}
    for m in msgs:
        if m["type"] == "outputs":
            final[m["key"]] = (m["outputs"], m["execution_count"])
    outs = list(final.values())
    assert outs[0][0] == [{"output_type": "stream", "name": "stdout", "text": "6\n"}]
    assert outs[1][0][0]["output_type"] == "execute_result" and outs[1][0][0]["data"]["text/plain"] == "'ABCDEF'"
    assert outs[2][0][0]["text"] == "AB\n"
    counts = [o[1] for o in outs]
    assert counts == sorted(counts) and all(isinstance(n, int) for n in counts)


def test_the_cells_agree_with_to_notebook(scripted, tmp_path):
    root = scripted(["Look.\n" + repl("print(context[:3])"), "FINAL(ok)"])
    view, comms, result = _run_view(root)
    nb = result.to_notebook(tmp_path / "run.ipynb")
    import nbformat

    nb = nbformat.read(str(nb), as_version=4) if not hasattr(nb, "cells") else nb
    file_cells = [c for c in nb.cells if c.metadata.get("rlm", {}).get("kind") == "prose" or c.cell_type == "code"]
    final = {}
    for m in view.sent:
        if m["type"] == "insert":
            final[m["cell"]["key"]] = dict(m["cell"])
        elif m["type"] == "outputs":
            final[m["key"]].update(outputs=m["outputs"], execution_count=m["execution_count"])
            final[m["key"]]["metadata"]["rlm"]["status"] = m["status"]
    live = list(final.values())
    assert len(live) == len(file_cells) == 3
    for lc, fc in zip(live, file_cells):
        assert lc["cell_type"] == fc.cell_type
        extra = {"key", "order", "parent_cell_id"}
        assert {k: v for k, v in lc["metadata"]["rlm"].items() if k not in extra} == dict(fc.metadata["rlm"])
        assert lc["metadata"]["tags"] == list(fc.metadata["tags"])
        if fc.cell_type == "code":
            first, body = lc["source"].split("\n", 1)
            assert first == f"%%rlm_step {result.run_id} {fc.metadata['rlm']['iteration']}" and body == fc.source
            assert lc["outputs"] == [dict(o) for o in fc.outputs] and lc["execution_count"] == fc.execution_count
        else:
            assert lc["source"] == fc.source


def test_no_cell_id_means_no_comm(scripted):
    root = scripted([repl("print(1)"), "FINAL(x)"])
    opened = []
    view = C.CellsView(None, open_comm=lambda d: opened.append(d))
    assert not view.enabled
    RLM(model=root, sub_model=root).completion("q", "ctx", on_event=view.on_event, on_tick=view.tick)
    view.finish("done")
    assert opened == [] and view.sent == []
    assert C.CellsView.for_current_cell(object()).parent_cell_id is None


def test_a_broken_comm_never_breaks_the_run(scripted):
    root = scripted([repl("print(1)"), "FINAL(fine)"])

    def open_comm(data):
        raise RuntimeError("no frontend")

    view = C.CellsView("c", open_comm=open_comm)
    result = RLM(model=root, sub_model=root).completion("q", "ctx", on_event=view.on_event, on_tick=view.tick)
    view.finish(result.status)
    assert result.answer == "fine" and view.errors and not view.enabled


def test_current_cell_id_reads_the_execute_request_metadata():
    class K:
        def __init__(self, md):
            self.md = md

        def get_parent(self):
            return {"metadata": self.md}

    class S:
        def __init__(self, md):
            self.kernel = K(md)

    assert C.current_cell_id(S({"cellId": "abc-1"})) == "abc-1"
    assert C.current_cell_id(S({})) is None
    assert C.current_cell_id(object()) is None


def test_helpers():
    assert C.cell_key("r1", 2) == "rlm-r1-2-md" and C.cell_key("r1", 2, 0) == "rlm-r1-2-0"
    assert C.step_source("r1", 2, "print(1)\n\n") == "%%rlm_step r1 2\nprint(1)"
    capped = C.cap_outputs([{"output_type": "stream", "name": "stdout", "text": "x" * 50},
                            {"output_type": "execute_result", "data": {"text/plain": ["y" * 30, "z"]}, "metadata": {}}], limit=10)
    assert capped[0]["text"].startswith("x" * 10 + "\n... [40 more") and capped[1]["data"]["text/plain"].startswith("y" * 10)
    calls = []
    C.tee(calls.append, lambda x: calls.append(x * 2))(3)
    assert calls == [3, 6]


# -- a real kernel: the comm messages JupyterLab would receive ----------------------------------
def _execute_with_cell_id(kc, code, cell_id):
    msg = kc.session.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                             "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
    msg["metadata"]["cellId"] = cell_id
    kc.shell_channel.send(msg)
    return msg["header"]["msg_id"]




@pytest.fixture(scope="module")
def kernel():
    km, kc = start_new_kernel(kernel_name="python3")
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def test_protocol_with_a_real_kernel_and_the_step_route(kernel):
    kc = kernel
    setup = textwrap.dedent(
        """
        %load_ext rlm_jupyter
        import os
        from rlm_jupyter.lm.scripted import script
        script("cells-kernel", [
            "Count first.\\n```repl\\nimport os\\nsecret = len(context) * 7\\nprint(len(context), os.getpid())\\n```",
            "Then:\\n```repl\\nsecret + 1\\n```",
            "FINAL(done)",
        ], latency=0.2)
        docs = "0123456789"
        """
    )
    assert kc.execute_interactive(setup, timeout=120)["content"]["status"] == "ok"
    cell_id = f"rlm-cell-{uuid.uuid4().hex[:8]}"
    code = "%%rlm docs --out result -m scripted/cells-kernel --sub-model scripted/cells-kernel\nCount."
    msgs = collect_iopub(kc, _execute_with_cell_id(kc, code, cell_id))
    assert not [m for m in msgs if m["msg_type"] == "error"]
    opens = [m for m in msgs if m["msg_type"] == "comm_open" and m["content"]["target_name"] == "rlm_jupyter.cells"]
    assert len(opens) == 1  # (other comms, e.g. the live view's widgets, may be there too)
    comm_id = opens[0]["content"]["comm_id"]
    comm_msgs = [m for m in msgs if m["msg_type"].startswith("comm_") and m["content"]["comm_id"] == comm_id]
    kinds = [m["msg_type"] for m in comm_msgs]
    assert kinds[0] == "comm_open" and kinds[-1] == "comm_close" and set(kinds[1:-1]) == {"comm_msg"}
    data = [comm_msgs[0]["content"]["data"]] + [m["content"]["data"] for m in comm_msgs[1:-1]]
    types = [d["type"] for d in data]
    assert types[0] == "start" and types[-1] == "finish" and data[0]["policy"] == "replace"
    assert all(d["parent_cell_id"] == cell_id for d in data)
    run = data[0]["run_id"]
    inserts = [d["cell"] for d in data if d["type"] == "insert"]
    assert [c["key"] for c in inserts] == [f"rlm-{run}-1-md", f"rlm-{run}-1-0", f"rlm-{run}-2-md", f"rlm-{run}-2-0", f"rlm-{run}-3-md"]
    # comm messages are interleaved with the live view (sent while the cell runs, not at the end)
    first_comm = msgs.index(comm_msgs[1])
    assert any(m["msg_type"] in ("display_data", "update_display_data") for m in msgs[first_comm:])

    # the inserted code cell, edited, runs in the run's environment kernel
    step_cell = inserts[1]["source"] + "\nprint('seen', secret, context)"
    out = []
    reply = kc.execute_interactive(step_cell, output_hook=out.append, timeout=60)
    assert reply["content"]["status"] == "ok"
    text = "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")
    lines = text.strip().splitlines()
    assert lines[1] == "seen 70 0123456789"
    env_pid = int(lines[0].split()[1])
    out2 = []
    kc.execute_interactive("print('context' in globals(), 'secret' in globals(), os.getpid())", output_hook=out2.append, timeout=30)
    user = "".join(m["content"].get("text", "") for m in out2 if m["msg_type"] == "stream").split()
    assert user[:2] == ["False", "False"] and int(user[2]) != env_pid


def test_re_running_the_cell_opens_a_new_run_for_the_same_parent(kernel):
    kc = kernel
    kc.execute_interactive('script("cells-again", ["```repl\\nprint(2)\\n```", "FINAL(b)"])', timeout=30)
    code = "%%rlm docs -q -m scripted/cells-again --sub-model scripted/cells-again\nAgain."
    runs = []
    for _ in range(2):
        msgs = collect_iopub(kc, _execute_with_cell_id(kc, code, "same-cell"))
        opens = [m for m in msgs if m["msg_type"] == "comm_open" and m["content"]["target_name"] == C.COMM_TARGET]
        assert len(opens) == 1
        runs.append(opens[0]["content"]["data"]["run_id"])
    assert runs[0] != runs[1]


def test_without_a_cell_id_no_comm_is_opened(kernel):
    kc = kernel
    msg_id = kc.execute("%%rlm docs -q -m scripted/cells-again --sub-model scripted/cells-again\nNo id.")
    msgs = collect_iopub(kc, msg_id)
    assert not [m for m in msgs if m["msg_type"] == "comm_open" and m["content"]["target_name"] == C.COMM_TARGET]
    assert not [m for m in msgs if m["msg_type"] == "error"]
