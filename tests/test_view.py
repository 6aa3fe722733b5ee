"""The %%rlm live view (widgets, throttling, threads) and its static HTML rendering."""

from __future__ import annotations

import re
import threading

from ipywidgets.widgets.widget import _instances

from rlm_jupyter import RLM
from rlm_jupyter.core import events as ev
from rlm_jupyter.jupyter import render_html as R
from rlm_jupyter.jupyter.view import LiveView



def repl(code: str) -> str:
    """A root reply holding one ```repl block (as conftest.repl; not imported: tests/faults has a conftest too)."""
    return f"```repl\n{code.strip()}\n```"


def _ten_iterations_fifty_subcalls(scripted):
    """Root: 10 iterations, 5 sub-calls each (a batch of 3 + 2 single llm_query)."""
    replies = []
    for i in range(9):
        replies.append(
            f"Look at part **{i}**.\n"
            + repl(
                f"r = llm_query_batched(['p{i}a', 'p{i}b', 'p{i}c'])\n"
                f"r.append(llm_query('single {i}\\nsecond line\\nthird line\\nfourth line'))\n"
                f"r.append(llm_query('other {i}'))\nprint(r)"
            )
        )
    replies.append(repl("r = llm_query_batched(['last%d' % k for k in range(5)])\nFINAL('all done')"))
    root = scripted(replies)
    sub = scripted(lambda m: "answer to " + m[-1]["content"][:12], latency=0.01)
    return root, sub


def test_widget_models_for_a_10_iteration_run_with_50_subcalls(scripted):
    root, sub = _ten_iterations_fifty_subcalls(scripted)
    view = LiveView(use_widgets=True, min_interval=0)  # redraw at every tick: the most widgets
    before = set(_instances)
    res = RLM(model=root, sub_model=sub, max_iterations=12).completion(
        "q", "ctx", on_event=view.on_event, on_tick=view.tick
    )
    view.tick()
    assert res.status == "done" and len(res.trajectory.iterations) == 10 and len(res.trajectory.subcalls) == 50
    created = set(_instances) - before
    # VBox + shared Layout + shared HTMLStyle + header + plot + one HTML per root iteration
    assert len(created) == view.widget_count == 15
    bundle = view.finish(res.answer, res.status, res.message, res.trajectory, res.usage, res.wall_seconds)
    assert not (set(_instances) & created)  # all closed at the end
    html = bundle["text/html"]
    assert len(re.findall(r'class="rlm-iteration"', html)) == 10
    assert len(re.findall(r'class="rlm-subcall"', html)) == 50
    assert len(re.findall(r'class="rlm-batch"', html)) == 10
    assert "all done" in bundle["text/plain"] and bundle["text/plain"].startswith("RLM done · iteration 10/12")
    assert len(html) < 150_000


def test_depth_two_static_rendering_nests_the_child_with_its_iterations(scripted):
    def root_or_child(msgs):
        first_user = next(m["content"] for m in msgs if m["role"] == "user")
        turns = sum(1 for m in msgs if m["role"] == "assistant")
        if "Query: count the words" in first_user:
            return [repl("n = len(context.split())\nprint(llm_query('child sub'), n)"), "FINAL_VAR(n)"][min(turns, 1)]
        return [repl("r = rlm_query('count the words', context='a b c d')\nprint(r)"), "FINAL_VAR(r)"][min(turns, 1)]

    root = scripted(root_or_child)
    view = LiveView(use_widgets=True, min_interval=0)
    res = RLM(model=root, sub_model=root, max_depth=2).completion("q", "x", on_event=view.on_event, on_tick=view.tick)
    bundle = view.finish(res.answer, res.status, res.message, res.trajectory, res.usage, res.wall_seconds)
    html = bundle["text/html"]
    child = html.index('class="rlm-child" data-node="0.c1"')
    assert html.index('data-iteration="1"') < child  # inside the root's first iteration
    assert re.search(r'class="rlm-iteration" data-node="0\.c1" data-iteration="2"', html)
    assert 'data-node="0.c1.s1"' in html and "child RLM 0.c1 (depth 1)" in html
    assert res.answer == "4" and "Answer" in html


def test_events_from_other_threads_only_queue_and_updates_are_throttled(scripted):
    view = LiveView(use_widgets=True, min_interval=10.0)
    events = [
        ev.Event(ev.RUN_STARTED, "0", None, 0, 0.0, {"query": "q", "model": "m", "sub_model": "s", "limits": {"max_iterations": 5}}),
        ev.Event(ev.ITERATION_STARTED, "0", None, 0, 0.1, {"iteration": 1, "max_iterations": 5}),
    ]
    t = threading.Thread(target=lambda: [view.on_event(e) for e in events])
    t.start()
    t.join()
    assert view.widget_count == 0 and view.trajectory.root is None  # nothing applied off the cell's thread
    view.tick()  # first tick draws
    assert view.widget_count == 6 and view.trajectory.root is not None
    sent = view.updates
    for i in range(20):
        view.on_event(ev.Event(ev.SUBCALL_STARTED, f"0.s{i}", "0", 1, 0.2, {"prompt": f"p{i}", "model": "s"}))
        view.tick()
    assert view.updates == sent and len(view.trajectory.subcalls) == 20  # folded, but not redrawn yet
    view._last = 0.0
    view.tick()
    assert view.updates > sent and 'data-node="0.s19"' in view._iters[-1].value
    view.finish(None, "stopped", "stopped by the user")


def test_finished_iterations_are_drawn_closed_and_not_redrawn(scripted):
    view = LiveView(use_widgets=True, min_interval=0)
    view.on_event(ev.Event(ev.RUN_STARTED, "0", None, 0, 0.0, {"query": "q", "limits": {"max_iterations": 3}}))
    view.on_event(ev.Event(ev.ITERATION_STARTED, "0", None, 0, 0.1, {"iteration": 1}))
    view.on_event(ev.Event(ev.ROOT_REPLY, "0", None, 0, 0.2, {"iteration": 1, "text": "thinking", "usage": {}}))
    view.tick()
    first = view._iters[0]
    assert "<details" in first.value and " open>" in first.value.split("<summary")[0]
    view.on_event(ev.Event(ev.ITERATION_STARTED, "0", None, 0, 0.3, {"iteration": 2}))
    view.tick()
    frozen = first.value
    assert " open" not in frozen.split("<summary")[0] and "thinking" in frozen
    view.on_event(ev.Event(ev.ROOT_REPLY, "0", None, 0, 0.4, {"iteration": 2, "text": "more", "usage": {}}))
    view.tick()
    assert first.value == frozen and "more" in view._iters[1].value
    view.finish(None, "error", "boom")


def test_quiet_view_creates_no_widgets_and_shows_only_the_answer(scripted):
    root = scripted(["FINAL(quiet answer)"])
    view = LiveView(quiet=True, use_widgets=True)
    res = RLM(model=root, sub_model=root).completion("q", "x", on_event=view.on_event, on_tick=view.tick)
    bundle = view.finish(res.answer, res.status, res.message, res.trajectory, res.usage, res.wall_seconds)
    assert view.widget_count == 0 and bundle["text/plain"] == "quiet answer"
    assert "rlm-iteration" not in bundle["text/html"] and "quiet answer" in bundle["text/html"]


def test_static_rendering_of_outputs_images_errors_and_hostile_html():
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": "hello <b>\n"},
        {"output_type": "display_data", "data": {"image/png": png, "text/plain": "<Figure>"}, "metadata": {}},
        {"output_type": "execute_result", "data": {"text/html": '<table onclick="x()"><tr><td>1</td></tr></table><script>alert(1)</script><a href="javascript:x">l</a><img src=x onerror=alert(2)>', "text/plain": "t"}, "metadata": {}, "execution_count": 1},
        {"output_type": "error", "ename": "ValueError", "evalue": "bad", "traceback": ["\x1b[31mValueError\x1b[0m: bad"]},
    ]
    out = R.outputs_html(outputs, R.Caps())
    assert "hello &lt;b&gt;" in out and f"data:image/png;base64,{png}" in out
    assert "<table><tbody><tr><td>1</td></tr></tbody></table>" in out  # nh3 (html5ever) adds the tbody
    assert "script" not in out and "onclick" not in out and "onerror" not in out and "javascript" not in out
    assert "ValueError: bad" in out and "\x1b" not in out
    long = R.outputs_html([{"output_type": "stream", "name": "stdout", "text": "x" * 50_000}], R.Caps(text=1000))
    assert "49,000 more characters" in long and len(long) < 2_000


def test_markdown_prose_and_code_highlighting():
    md = R.markdown_html("# Title\n\nSome **bold** and `code` <i>\n\n- a\n- b\n\n<script>x</script>")
    assert "<h1>Title</h1>" in md and "<strong>bold</strong>" in md and "<li>" in md and "<script>" not in md
    assert "&lt;i&gt;" in md and "&lt;script&gt;" in md  # raw HTML is text (markdown-it, html off)
    code = R.code_html("def f(x):\n    return '<x>'")
    assert "<span" in code and "&lt;x&gt;" in code.replace("&#39;", "'")


def test_plot_has_one_bar_per_iteration_for_tokens_and_cost(scripted):
    root = scripted([repl("print(llm_query('a'))"), repl("print(1)"), "FINAL(x)"])
    res = RLM(model=root, sub_model=scripted(lambda m: "sub answer")).completion("q", "x")
    svg = R.plot_svg(res.trajectory)
    assert svg.count("<rect") == 2 * 3 and "iteration 1:" in svg and "$" in svg
