import pytest

from rlm_jupyter.core import events as ev
from rlm_jupyter.core.trajectory import Trajectory, load_jsonl


def test_subscribers_get_events_in_order_and_a_failing_one_is_dropped():
    bus = ev.EventBus("r1")
    seen = []

    def bad(e):
        raise RuntimeError("broken view")

    bus.subscribe(seen.append)
    bus.subscribe(bad)
    with pytest.warns(RuntimeWarning, match="bad.*broken view"):
        bus.emit(ev.ITERATION_STARTED, "0", None, 0, iteration=1, max_iterations=3)
    bus.emit(ev.ITERATION_STARTED, "0", None, 0, iteration=2, max_iterations=3)
    assert [e.data["iteration"] for e in seen if e.kind == ev.ITERATION_STARTED] == [1, 2]
    assert len(bus.errors) == 1 and isinstance(bus.errors[0][1], RuntimeError)


def test_a_failing_subscriber_is_reported_as_a_notice_and_a_log_warning(caplog):
    bus = ev.EventBus("r1")
    traj = Trajectory()
    bus.subscribe(traj.apply)

    def broken_view(e):
        if e.kind == ev.ROOT_REPLY:
            raise KeyError("widget gone")

    bus.subscribe(broken_view)
    bus.emit(ev.RUN_STARTED, "0", None, 0, query="q")
    bus.emit(ev.ITERATION_STARTED, "0", None, 0, iteration=1, max_iterations=3)
    with caplog.at_level("WARNING", logger="rlm_jupyter.events"), pytest.warns(RuntimeWarning):
        bus.emit(ev.ROOT_REPLY, "0", None, 0, iteration=1, text="hi", usage=None)
    notices = [e for e in traj.events if e.kind == ev.NOTICE]
    assert len(notices) == 1 and "broken_view" in notices[0].data["message"] and "root_reply" in notices[0].data["message"]
    assert traj.iterations[0].notices == [notices[0].data["message"]]  # the views show iteration notices
    assert any("widget gone" in r.getMessage() for r in caplog.records)
    bus.emit(ev.ROOT_REPLY, "0", None, 0, iteration=1, text="again", usage=None)  # removed: no second report
    assert len([e for e in traj.events if e.kind == ev.NOTICE]) == 1


def test_every_event_kind_documents_its_payload():
    assert set(ev.PAYLOADS) == set(ev.KINDS)
    assert ev.PAYLOADS[ev.SUBCALL_STARTED].__annotations__.keys() >= {"op", "model", "prompt", "batch"}


def test_event_json_round_trip_and_rejects_non_events():
    e = ev.Event(ev.FINAL, "0", None, 0, 1.5, {"answer": "x"}, "r")
    assert ev.Event.from_json(e.to_json()) == e
    with pytest.raises(ValueError):
        ev.Event.from_json('{"kind": "nope"}')


def test_jsonl_load_reports_the_bad_line(tmp_path):
    p = tmp_path / "t.jsonl"
    good = ev.Event(ev.RUN_STARTED, "0", None, 0, 0.0, {"query": "q"}, "r").to_json()
    p.write_text(good + "\n{not json\n")
    with pytest.raises(ValueError, match=":2:"):
        load_jsonl(p)


def test_subcalls_attach_to_the_iteration_they_happen_in():
    t = Trajectory()
    bus = ev.EventBus("r")
    bus.subscribe(t.apply)
    bus.emit(ev.RUN_STARTED, "0", None, 0, query="q", context_info={}, model="m", sub_model="s", limits={})
    bus.emit(ev.ITERATION_STARTED, "0", None, 0, iteration=1, max_iterations=2)
    bus.emit(ev.SUBCALL_STARTED, "0.s1", "0", 1, op="llm_query", model="s", prompt="p", batch=None)
    bus.emit(ev.SUBCALL_FINISHED, "0.s1", "0", 1, answer="a", usage={"input_tokens": 3, "output_tokens": 1, "calls": 1}, error=None, cached=False)
    bus.emit(ev.ITERATION_STARTED, "0", None, 0, iteration=2, max_iterations=2)
    assert [len(i.subcalls) for i in t.iterations] == [1, 0]
    assert t.iterations[0].subcalls[0].answer == "a" and t.usage().total_tokens == 4
