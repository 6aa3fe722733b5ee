"""The %%rlm live view in a real kernel (jupyter_client), under nbclient, and the stop button."""

from __future__ import annotations

import re
import textwrap
import time

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

from conftest import collect_iopub, kernel_children

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

# Registered inside the kernel: a root that makes a batch of 3, one llm_query and one rlm_query
# (a depth-2 child with its own sub-call), then answers; sub-calls take 0.2 s so the run lasts
# long enough for live updates.
SETUP = textwrap.dedent(
    '''
    %load_ext rlm_jupyter
    from rlm_jupyter.lm.scripted import script

    def _root(msgs):
        first = next(m["content"] for m in msgs if m["role"] == "user")
        turns = sum(1 for m in msgs if m["role"] == "assistant")
        if "Query: count the words" in first:
            return ["Counting.\\n```repl\\nn = len(context.split())\\nprint(llm_query('check ' + str(n)), n)\\n```",
                    "FINAL_VAR(n)"][min(turns, 1)]
        return [
            "First I **split** the context.\\n```repl\\nparts = context.split()\\nprint(llm_query_batched(['summarise ' + p for p in parts[:3]]))\\n```",
            "Now one more look and a child RLM.\\n```repl\\nprint(llm_query('is it ' + parts[0]))\\nn = rlm_query('count the words', context='a b c d')\\nprint('child said', n)\\n```",
            "FINAL(the answer is 4)",
        ][min(turns, 2)]

    root = script("view-root", _root)
    sub = script("view-sub", lambda m: "sub says " + m[-1]["content"][:20], latency=0.2)
    docs = "alpha beta gamma delta"
    '''
)




@pytest.fixture
def kernel():
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        assert kc.execute_interactive(SETUP, timeout=120)["content"]["status"] == "ok"
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _eval(kc, expr: str) -> str:
    out = []
    reply = kc.execute_interactive(f"print(repr(({expr})))", output_hook=out.append, timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream").strip()


def test_live_widgets_then_static_html_with_every_iteration_subcall_and_the_child(kernel):
    km, kc = kernel
    msg_id = kc.execute("%%rlm docs --out result -m scripted/view-root --sub-model scripted/view-sub --max-depth 2\nWhat?")
    msgs = collect_iopub(kc, msg_id)
    assert not [m for m in msgs if m["msg_type"] == "error"]
    displays = [m for m in msgs if m["msg_type"] == "display_data"]
    assert len(displays) == 1 and WIDGET_MIME in displays[0]["content"]["data"]
    display_id = displays[0]["content"]["transient"]["display_id"]
    opens = [m for m in msgs if m["msg_type"] == "comm_open" and m["content"]["target_name"] == "jupyter.widget"]
    # VBox, Layout, HTMLStyle, header, plot + one HTML per root iteration drawn live (at most 3)
    assert 6 <= len(opens) <= 8
    updates = [m for m in msgs if m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "update"]
    live_headers = [u["content"]["data"]["state"]["value"] for u in updates if "rlm-header" in u["content"]["data"]["state"].get("value", "")]
    assert any(">running<" in h for h in live_headers)
    assert any("rlm-subcall" in u["content"]["data"]["state"].get("value", "") for u in updates)
    finals = [m for m in msgs if m["msg_type"] == "update_display_data"]
    assert finals and finals[-1]["content"]["transient"]["display_id"] == display_id
    data = finals[-1]["content"]["data"]
    assert WIDGET_MIME not in data
    html, text = data["text/html"], data["text/plain"]
    assert text.startswith("RLM done") and "the answer is 4" in text
    # every node and sub-call of the run is in the static rendering
    assert _eval(kc, "result.status, result.answer") == "('done', 'the answer is 4')"
    subcalls = _eval(kc, "sorted(result.trajectory.subcalls)")
    for sid in re.findall(r"'([^']+)'", subcalls):
        assert f'data-node="{sid}"' in html
    assert len(re.findall(r"'([^']+)'", subcalls)) == 5  # 3 batched + 1 llm_query + the child's llm_query
    for i in (1, 2, 3):
        assert f'class="rlm-iteration" data-node="0" data-iteration="{i}"' in html
    assert 'class="rlm-child" data-node="0.c1"' in html
    assert 'class="rlm-iteration" data-node="0.c1" data-iteration="1"' in html
    assert 'class="rlm-batch"' in html and "<strong>split</strong>" in html and "rlm-plot" in html
    closes = {m["content"]["comm_id"] for m in msgs if m["msg_type"] == "comm_close"}
    assert {m["content"]["comm_id"] for m in opens} <= closes  # no widget left behind
    # %rlm show re-displays the static rendering; %rlm models reports the configured models
    shown = []
    kc.execute_interactive("%rlm show 0", output_hook=shown.append, timeout=60)
    assert any("rlm-run" in m["content"].get("data", {}).get("text/html", "") for m in shown)


def test_stop_button_stops_the_run_cleanly(kernel):
    km, kc = kernel
    setup = 'slow = script("view-slow", lambda m: "late", latency=30)\nloop_root = script("view-loop", ["```repl\\nprint(llm_query(\'wait\'))\\n```", "FINAL(never)"])'
    assert kc.execute_interactive(setup, timeout=60)["content"]["status"] == "ok"
    msg_id = kc.execute("%%rlm docs --out stopped -m scripted/view-loop --sub-model scripted/view-slow\nq")
    # wait until the sub-call is under way (the live view shows it), then press stop
    deadline = time.monotonic() + 60
    seen = False
    msgs = []
    while time.monotonic() < deadline and not seen:
        msg = kc.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") == msg_id:
            msgs.append(msg)
            seen = msg["msg_type"] == "comm_msg" and 'data-node="0.s1"' in str(msg["content"]["data"].get("state", {}).get("value", ""))
    assert seen
    t0 = time.monotonic()
    km.interrupt_kernel()
    msgs += collect_iopub(kc, msg_id, timeout=30)
    stop_seconds = time.monotonic() - t0
    print(f"stopped {stop_seconds:.2f} s after the interrupt")
    assert stop_seconds < 3  # "within a second or two" (0.15 s measured here)
    final = [m for m in msgs if m["msg_type"] == "update_display_data"][-1]["content"]["data"]
    assert "RLM stopped" in final["text/plain"] and ">stopped<" in final["text/html"]
    assert _eval(kc, "stopped.status, len(stopped.trajectory.subcalls), stopped.environment") == "('stopped', 1, None)"
    kernel_pid = km.provisioner.process.pid
    for _ in range(50):  # the run's REPL environment kernel is gone: no orphan
        if not kernel_children(kernel_pid):
            break
        time.sleep(0.1)
    assert not kernel_children(kernel_pid)


def test_nbclient_saves_the_static_rendering_and_widget_state(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(SETUP),
        nbformat.v4.new_code_cell("%%rlm docs --out r -m scripted/view-root --sub-model scripted/view-sub --max-depth 2\nWhat?"),
        nbformat.v4.new_code_cell("print(r.status, r.answer)"),
    ]
    NotebookClient(nb, timeout=180, kernel_name="python3", store_widget_state=True).execute()
    path = tmp_path / "run.ipynb"
    nbformat.write(nb, str(path))
    saved = nbformat.read(str(path), as_version=4)
    nbformat.validate(saved)
    outs = saved.cells[1].outputs
    assert len(outs) == 1 and outs[0].output_type == "display_data"
    data = outs[0].data
    assert WIDGET_MIME not in data and "rlm-run" in data["text/html"] and data["text/plain"].startswith("RLM done")
    assert data["text/html"].count('class="rlm-iteration" data-node="0"') == 3 and 'data-node="0.c1"' in data["text/html"]
    state = saved.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    names = sorted(s["model_name"] for s in state.values())
    assert 3 <= names.count("HTMLModel") <= 5 and "VBoxModel" in names and len(names) <= 8
    assert all(len(s["state"].get("value", "")) < 100 for s in state.values())  # emptied: the file stays small
    assert saved.cells[2].outputs[0].text.strip() == "done the answer is 4"
    # what nbviewer does with the file: nbconvert's HTML keeps the <details> tree
    nbconvert = pytest.importorskip("nbconvert")
    body, _ = nbconvert.HTMLExporter().from_notebook_node(saved)
    assert body.count('class="rlm-subcall"') == 5 and 'class="rlm-child"' in body and "the answer is 4" in body
