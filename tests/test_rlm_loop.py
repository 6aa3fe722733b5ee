"""The RLM loop end to end: scripted root and sub models (litellm custom provider) driving a
real environment kernel."""

import asyncio
import re
import threading

import pytest

from conftest import kernel_children, repl
from rlm_jupyter import RLM
from rlm_jupyter.core import events as ev

BOOK = "\n".join(f"line {i}: nothing to see" for i in range(2000)) + "\nThe secret code is 7312.\n" + "tail\n" * 100


def test_peek_grep_and_final_answer(scripted):
    root = scripted([
        "First I peek.\n" + repl("print(context[:30])\nprint(len(context))"),
        repl("import re\nprint(re.findall(r'secret code is (\\d+)', context))"),
        "FINAL(7312)",
    ])
    res = RLM(model=root, sub_model=root).completion("What is the secret code?", BOOK)
    assert res.status == "done" and res.answer == "7312"
    its = res.trajectory.iterations
    assert len(its) == 3 and its[0].cells[0].text.startswith("line 0: nothing")
    assert its[1].cells[0].text.strip() == "['7312']"
    # the root LM never saw the context: only its description and printed output
    first_prompt = "\n".join(m["content"] for m in scripted.calls(root)[0])
    assert "secret code is 7312" not in first_prompt and f"{len(BOOK):,} total characters" in first_prompt


def test_llm_query_sub_calls_are_recorded_with_usage_and_tree_totals(scripted):
    sub = scripted(lambda msgs: "LEN=" + str(len(msgs[0]["content"])), usd_per_million_tokens=2.0)
    root = scripted([repl("a = llm_query('Summarise: ' + context[:100])\nprint(a)"), "FINAL_VAR(a)"], usd_per_million_tokens=1.0)
    res = RLM(model=root, sub_model=sub).completion("q", BOOK)
    assert res.answer == "LEN=111"
    sc = res.trajectory.iterations[0].subcalls
    assert len(sc) == 1 and sc[0].node_id == "0.s1" and sc[0].parent_id == "0" and sc[0].depth == 1
    assert sc[0].prompt.startswith("Summarise: line 0") and sc[0].usage.input_tokens > 0
    assert res.usage.calls == 3 and res.usage.usd > 0 and res.usage.cost_known
    assert res.usage.total_tokens == res.trajectory.usage().total_tokens


def test_batched_sub_calls_overlap_in_time(scripted):
    sub = scripted(lambda msgs: "ok", latency=0.4)
    root = scripted([repl("r = llm_query_batched([f'p{i}' for i in range(8)])\nprint(r)"), "FINAL(done)"])
    res = RLM(model=root, sub_model=sub, concurrency=8).completion("q", "ctx")
    calls = res.trajectory.iterations[0].subcalls
    assert len(calls) == 8 and len({c.batch for c in calls}) == 1
    last_start = max(c.t_start for c in calls)
    first_end = min(c.t_end for c in calls)
    assert last_start < first_end, "all 8 sub-calls should be in flight together"
    assert res.trajectory.iterations[0].cells[0].seconds < 8 * 0.4


def test_concurrency_limit_bounds_calls_in_flight(scripted):
    sub = scripted(lambda msgs: "ok", latency=0.2)
    root = scripted([repl("llm_query_batched(['x'] * 6)"), "FINAL(done)"])
    res = RLM(model=root, sub_model=sub, concurrency=2).completion("q", "ctx")
    spans = [(c.t_start, c.t_end) for c in res.trajectory.iterations[0].subcalls]
    # the semaphore is taken after the start event: count overlap of answered intervals
    assert res.trajectory.iterations[0].cells[0].seconds >= 3 * 0.2 * 0.9
    assert len(spans) == 6


def test_depth_two_runs_a_child_rlm_with_its_own_kernel(scripted):
    def root_or_child(msgs):
        first_user = next(m["content"] for m in msgs if m["role"] == "user")
        is_child = "Query: count the words" in first_user
        turns = sum(1 for m in msgs if m["role"] == "assistant")
        if is_child:
            return [repl("n = len(context.split())\nprint(n)"), "FINAL_VAR(n)"][min(turns, 1)]
        return [repl("r = rlm_query('count the words', context='a b c d')\nprint(r)"), "FINAL_VAR(r)"][min(turns, 1)]

    root = scripted(root_or_child)
    res = RLM(model=root, sub_model=root, max_depth=2).completion("q", "ignored")
    assert res.status == "done" and res.answer == "4"
    child = res.trajectory.nodes["0.c1"]
    assert child.parent_id == "0" and child.depth == 1 and child.answer == "4"
    assert res.trajectory.iterations[0].children == ["0.c1"]
    # usage covers the whole tree: 2 root calls + 2 child root calls
    assert res.usage.calls == 4 and res.trajectory.usage().calls == 4


def test_rlm_query_at_max_depth_is_a_plain_sub_call(scripted):
    sub = scripted(lambda msgs: "plain:" + msgs[0]["content"][:5])
    root = scripted([repl("print(rlm_query('hello'))"), "FINAL(x)"])
    res = RLM(model=root, sub_model=sub, max_depth=1).completion("q", "ctx")
    assert res.trajectory.iterations[0].cells[0].text.strip() == "plain:hello"
    assert list(res.trajectory.nodes) == ["0"]


def test_long_output_is_truncated_with_a_marker(scripted):
    root = scripted([repl("print('x' * 50000)"), "FINAL(ok)"])
    res = RLM(model=root, sub_model=root, max_output_chars=1000).completion("q", "ctx")
    fed = scripted.calls(root)[1][-1]["content"]
    assert re.search(r"\[49,0\d\d characters truncated\]", fed) and len(fed) < 1500
    assert len(res.trajectory.iterations[0].cells[0].text) > 50000  # the trajectory keeps everything


def test_block_timeout_is_reported_to_the_model(scripted):
    root = scripted([repl("import time\nwhile True: time.sleep(0.01)"), "FINAL(gave up)"])
    res = RLM(model=root, sub_model=root, timeout=1.0).completion("q", "ctx")
    fed = scripted.calls(root)[1][-1]["content"]
    assert "longer than 1 s and was interrupted" in fed and "KeyboardInterrupt" in fed
    assert res.trajectory.iterations[0].cells[0].status == "timeout" and res.answer == "gave up"


def test_kernel_death_is_survived_and_the_model_told(scripted):
    root = scripted([repl("import os\nos._exit(1)"), repl("print(len(context))"), "FINAL(3)"])
    res = RLM(model=root, sub_model=root).completion("q", "abc")
    assert "kernel died" in scripted.calls(root)[1][-1]["content"]
    assert res.trajectory.iterations[1].cells[0].text.strip() == "3" and res.answer == "3"


def test_final_in_the_same_reply_as_unseen_code_is_ignored(scripted):
    root = scripted([repl("print(len(context))") + "\nFINAL(I guess 99)", "FINAL(3)"])
    res = RLM(model=root, sub_model=root).completion("q", "abc")
    assert res.answer == "3" and len(res.trajectory.iterations) == 2
    assert "FINAL(...) was ignored" in scripted.calls(root)[1][-1]["content"]


def test_final_var_after_code_in_the_same_reply_uses_the_computed_value(scripted):
    root = scripted([repl("ans = context.upper()") + "\nFINAL_VAR(ans)"])
    assert RLM(model=root, sub_model=root).completion("q", "abc").answer == "ABC"


def test_missing_final_var_is_reported_and_the_run_goes_on(scripted):
    root = scripted(["FINAL_VAR(nothing_here)", "FINAL(recovered)"])
    res = RLM(model=root, sub_model=root).completion("q", "abc")
    assert res.answer == "recovered"
    assert "no REPL variable named 'nothing_here'" in scripted.calls(root)[1][-1]["content"]


def test_reply_without_code_or_final_gets_a_reminder(scripted):
    root = scripted(["I think about it.", "FINAL(ok)"])
    res = RLM(model=root, sub_model=root).completion("q", "abc")
    assert res.answer == "ok" and "had no ```repl code block" in scripted.calls(root)[1][-1]["content"]


def test_out_of_iterations_forces_one_final_call(scripted):
    root = scripted([repl("print(1)"), repl("print(2)"), "Best guess: FINAL(forced answer)"])
    res = RLM(model=root, sub_model=root, max_iterations=2).completion("q", "abc")
    assert res.status == "max_iterations" and res.answer == "forced answer"
    assert "out of turns" in scripted.calls(root)[2][-1]["content"]


def test_a_reply_repeated_verbatim_twice_ends_the_run(scripted):
    root = scripted([repl("print(1)")])  # repeats its last reply forever
    res = RLM(model=root, sub_model=root).completion("q", "abc")
    assert res.status == "repeated" and len(res.trajectory.iterations) == 3


@pytest.mark.parametrize(
    "limit,kwargs,code",
    [
        ("max_subcalls", {"max_subcalls": 5}, "for i in range(10000):\n    llm_query('x')"),
        ("max_usd", {"max_usd": 0.0001}, "for i in range(100):\n    llm_query('x' * 4000)"),
        ("max_tokens", {"max_tokens": 3000}, "for i in range(100):\n    llm_query('x' * 4000)"),
    ],
)
def test_tree_wide_limits_stop_cleanly_with_the_partial_trajectory(scripted, limit, kwargs, code):
    sub = scripted(lambda m: "ok", usd_per_million_tokens=10.0)
    root = scripted([repl(code), "FINAL(never)"])
    res = RLM(model=root, sub_model=sub, **kwargs).completion("q", "abc")
    assert res.status == "limit" and limit in res.message and res.answer is None
    assert res.trajectory.iterations[0].cells and "SubcallError" in res.trajectory.iterations[0].cells[0].text
    assert any(e.kind == ev.LIMIT and e.data["limit"] == limit for e in res.trajectory.events)


def test_wall_time_limit(scripted):
    root = scripted([repl("import time\ntime.sleep(30)"), "FINAL(never)"])
    res = RLM(model=root, sub_model=root, max_seconds=2.0).completion("q", "abc")
    assert res.status == "limit" and "max_seconds" in res.message and res.wall_seconds < 15


def test_rate_limit_is_retried_then_succeeds(scripted):
    import litellm

    err = litellm.RateLimitError(message="slow down", llm_provider="openai", model="x")
    root = scripted([err, err, "FINAL(after retries)"])
    res = RLM(model=root, sub_model=root, retry_backoff=0.01).completion("q", "abc")
    assert res.answer == "after retries" and len(scripted.calls(root)) == 3


def test_provider_errors_end_the_run_with_a_clear_status(scripted):
    import litellm

    err = litellm.BadRequestError(message="invalid request", llm_provider="openai", model="x")
    root = scripted([err])
    res = RLM(model=root, sub_model=root, retry_backoff=0.01).completion("q", "abc")
    assert res.status == "error" and "invalid request" in res.message and len(scripted.calls(root)) == 1


def test_sub_call_provider_error_reaches_the_model_code(scripted):
    import litellm

    sub = scripted([litellm.BadRequestError(message="bad prompt", llm_provider="openai", model="x")])
    root = scripted([repl("try:\n    llm_query('x')\nexcept SubcallError as e:\n    print('caught', e)"), "FINAL(ok)"])
    res = RLM(model=root, sub_model=sub, retry_backoff=0.01).completion("q", "abc")
    assert "caught" in res.trajectory.iterations[0].cells[0].text and "bad prompt" in res.trajectory.iterations[0].cells[0].text
    assert res.trajectory.iterations[0].subcalls[0].error


def test_events_form_one_stream_with_node_ids(scripted):
    sub = scripted(lambda m: "s")
    root = scripted([repl("llm_query_batched(['a', 'b'])"), "FINAL(x)"])
    seen = []
    RLM(model=root, sub_model=sub).completion("q", "abc", on_event=seen.append)
    kinds = [e.kind for e in seen]
    assert kinds[0] == ev.RUN_STARTED and kinds[-1] == ev.RUN_FINISHED
    for k in (ev.ITERATION_STARTED, ev.ROOT_REPLY, ev.CODE_STARTED, ev.CODE_FINISHED, ev.SUBCALL_STARTED, ev.SUBCALL_FINISHED, ev.FINAL):
        assert k in kinds
    subs = [e for e in seen if e.kind == ev.SUBCALL_STARTED]
    assert {e.node_id for e in subs} == {"0.s1", "0.s2"} and all(e.parent_id == "0" for e in subs)


def test_acompletion_inside_a_running_event_loop(scripted):
    root = scripted(["FINAL(async ok)"])

    async def main():
        return await RLM(model=root, sub_model=root).acompletion("q", "abc")

    assert asyncio.run(main()).answer == "async ok"


def test_sync_completion_works_while_an_event_loop_runs_in_this_thread(scripted):
    root = scripted(["FINAL(nested ok)"])

    async def main():
        return RLM(model=root, sub_model=root).completion("q", "abc")

    assert asyncio.run(main()).answer == "nested ok"


def test_interrupt_stops_the_run_and_leaves_no_kernel(scripted):
    import _thread

    root = scripted([repl("import time\ntime.sleep(60)"), "FINAL(never)"])
    before = kernel_children()
    timer = threading.Timer(2.0, _thread.interrupt_main)
    timer.start()
    res = RLM(model=root, sub_model=root).completion("q", "abc")
    assert res.status == "stopped" and res.wall_seconds < 20
    assert res.trajectory.iterations and res.trajectory.iterations[0].cells
    assert not (kernel_children() - before)


def test_missing_context_path_and_bad_query_raise_before_any_kernel_starts(scripted, tmp_path):
    import pathlib

    root = scripted(["FINAL(x)"])
    with pytest.raises(FileNotFoundError):
        RLM(model=root).completion("q", pathlib.Path(tmp_path / "nope"))
    with pytest.raises(TypeError):
        RLM(model=root).completion(123, "abc")


def test_unpicklable_context_is_rejected_with_a_clear_error(scripted):
    from rlm_jupyter.core.context import ContextError

    root = scripted(["FINAL(x)"])
    with pytest.raises(ContextError, match="cannot be pickled"):
        RLM(model=root).completion("q", {"f": threading.Lock()})


def test_dataframe_context_is_usable_in_the_kernel(scripted):
    pd = pytest.importorskip("pandas")
    root = scripted([repl("print(context['b'].sum())"), "FINAL(x)"])
    res = RLM(model=root, sub_model=root).completion("q", pd.DataFrame({"a": [1, 2], "b": [10, 20]}))
    assert res.trajectory.iterations[0].cells[0].text.strip() == "30"


def test_kept_environment_can_be_explored_and_closes_when_idle(scripted):
    import time

    root = scripted([repl("found = context.upper()"), "FINAL_VAR(found)"])
    before = kernel_children()
    res = RLM(model=root, sub_model=root, keep_environment=True, environment_idle_seconds=1.5).completion("q", "abc")
    assert res.environment.execute("print(found, len(context))").text.strip() == "ABC 3"
    deadline = time.monotonic() + 15
    while res.environment.alive and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not res.environment.alive
    time.sleep(0.5)
    assert not (kernel_children() - before)


def test_environments_are_not_kept_by_default(scripted):
    root = scripted(["FINAL(x)"])
    assert RLM(model=root, sub_model=root).completion("q", "abc").environment is None


def test_a_sub_call_prompt_larger_than_the_sub_models_window_fails_clearly(scripted):
    from rlm_jupyter.lm._litellm import litellm_module

    sub = scripted(lambda m: "never called")
    litellm_module().register_model({sub: {"max_input_tokens": 1000, "litellm_provider": "scripted", "mode": "chat"}})
    root = scripted([repl("try:\n    llm_query('word ' * 5000)\nexcept SubcallError as e:\n    print(e)"), "FINAL(x)"])
    res = RLM(model=root, sub_model=sub).completion("q", "abc")
    text = res.trajectory.iterations[0].cells[0].text
    assert "takes at most 1,000" in text and "send a smaller slice" in text
    assert scripted.calls(sub) == []


@pytest.mark.parametrize("mode", ["on", "off"])
def test_sandbox_setting_reaches_the_environment_kernel(scripted, mode):
    import shutil

    import os

    if mode == "on" and not shutil.which("bwrap"):
        pytest.skip("bubblewrap not installed")
    root = scripted([repl("import os\nprint(os.getpid() < 10)"), "FINAL(x)"])
    res = RLM(model=root, sub_model=root, sandbox=mode).completion("q", "abc")
    if mode == "on" and os.environ.get("RLM_JUPYTER_SANDBOX_MODE", "").strip().lower() == "plain":
        assert res.status == "error" and not res.trajectory.iterations  # "on" cannot be met in forced plain mode
        return
    in_own_pid_namespace = res.trajectory.iterations[0].cells[0].text.strip() == "True"
    assert in_own_pid_namespace == (mode == "on")


def test_without_subcalls_the_prompt_omits_them_and_calls_fail(scripted):
    root = scripted([repl("try:\n    llm_query('x')\nexcept SubcallError as e:\n    print('refused:', e)"), "FINAL(x)"])
    res = RLM(model=root, sub_model=root, subcalls=False).completion("q", "abc")
    system = scripted.calls(root)[0][0]["content"]
    assert "llm_query_batched" not in system and "No sub-LM calls in this run" in system
    assert "refused: RuntimeError: sub-calls are disabled" in res.trajectory.iterations[0].cells[0].text
    assert res.trajectory.subcalls == {}


# -- issue 10: answer semantics, sub-calls, settings -------------------------------------------
SANDBOX_MODES = ["auto", "off"]  # "auto" = bubblewrap where it works


@pytest.mark.parametrize("mode", SANDBOX_MODES)
def test_final_in_a_block_that_raises_is_dropped_with_a_note_never_carried_over(scripted, mode):
    root = scripted([
        repl("FINAL('too early')\nraise ValueError('boom')"),
        repl("print('second block ran')"),
        "FINAL(after the fix)",
    ])
    res = RLM(model=root, sub_model=root, sandbox=mode).completion("q", "abc")
    assert res.status == "done" and res.answer == "after the fix" and len(res.trajectory.iterations) == 3
    fed = scripted.calls(root)[1][-1]["content"]
    assert "ValueError: boom" in fed and "the block raised" in fed and "call FINAL again" in fed


@pytest.mark.parametrize("mode", SANDBOX_MODES)
def test_final_var_in_a_block_that_times_out_is_dropped(scripted, mode):
    root = scripted([
        repl("x = 'partial'\nFINAL_VAR('x')\nimport time\ntime.sleep(60)"),
        repl("print('next')"),
        "FINAL(done)",
    ])
    res = RLM(model=root, sub_model=root, sandbox=mode, timeout=1.5).completion("q", "abc")
    assert res.answer == "done" and len(res.trajectory.iterations) == 3
    assert "call FINAL again" in scripted.calls(root)[1][-1]["content"]


@pytest.mark.parametrize("mode", SANDBOX_MODES)
def test_helpers_and_context_are_restored_after_a_failed_block(scripted, mode):
    root = scripted([
        repl("del llm_query\ndel context\n1 / 0"),
        repl("print(callable(llm_query), len(context))"),
        "FINAL(x)",
    ])
    res = RLM(model=root, sub_model=root, sandbox=mode).completion("q", "abc")
    assert res.trajectory.iterations[1].cells[0].text.strip() == "True 3"
    fed = scripted.calls(root)[1][-1]["content"]
    assert "llm_query" in fed and "restored" in fed and "deleted `context`" in fed


@pytest.mark.parametrize("mode", SANDBOX_MODES)
def test_an_interrupted_sub_call_is_cancelled_and_never_answers_a_later_one(scripted, mode):
    slow = scripted(lambda m: "SLOW:" + m[0]["content"], latency=30)
    fast = scripted(lambda m: "FAST:" + m[0]["content"])
    root = scripted([
        repl(f"llm_query('first', model={slow!r})"),
        repl("print(llm_query('second'))"),
        repl("print(llm_query('third'))"),
        "FINAL(x)",
    ])
    res = RLM(model=root, sub_model=fast, allowed_models=[slow], timeout=2.0, sandbox=mode).completion("q", "abc")
    cells = [c for it in res.trajectory.iterations for c in it.cells]
    assert cells[0].status == "timeout" and "KeyboardInterrupt" in cells[0].text
    assert cells[1].text.strip() == "FAST:second" and cells[2].text.strip() == "FAST:third"
    # the parent cancelled the interrupted LM call: the slow model never answered
    assert scripted.calls(slow) == []
    first = res.trajectory.iterations[0].subcalls[0]
    assert first.error == "stopped"
    # the model's traceback shows its own code, not the project's frames or the socket's
    for part in ("kernel_side", "socket.py", "rlm_jupyter"):
        assert part not in cells[0].text


@pytest.mark.parametrize("mode", SANDBOX_MODES)
def test_an_interrupted_rlm_query_cancels_the_child_rlm_and_its_kernel(scripted, mode):
    def root_or_child(msgs):
        first_user = next(m["content"] for m in msgs if m["role"] == "user")
        if "Query: child task" in first_user:
            return repl("import time\ntime.sleep(60)")
        turns = sum(1 for m in msgs if m["role"] == "assistant")
        return [repl("rlm_query('child task', context='abc')"), repl("print('parent goes on')"), "FINAL(parent done)"][min(turns, 2)]

    root = scripted(root_or_child)
    before = kernel_children()
    res = RLM(model=root, sub_model=root, max_depth=2, timeout=3.0, sandbox=mode).completion("q", "ignored")
    assert res.answer == "parent done" and res.wall_seconds < 40
    assert res.trajectory.nodes["0.c1"].status == "stopped"
    events = res.trajectory.events
    child_end = next(i for i, e in enumerate(events) if e.kind == ev.RUN_FINISHED and e.node_id == "0.c1")
    parent_next = next(i for i, e in enumerate(events) if e.kind == ev.CODE_STARTED and e.node_id == "0" and e.data["iteration"] == 2)
    assert child_end < parent_next, "the child RLM ran on after its rlm_query was interrupted"
    assert not (kernel_children() - before)


def test_a_failed_sub_call_traceback_hides_the_projects_frames(scripted):
    root = scripted([repl("llm_query('x')"), "FINAL(x)"])
    res = RLM(model=root, sub_model=root, subcalls=False).completion("q", "abc")
    text = res.trajectory.iterations[0].cells[0].text
    assert "SubcallError" in text and "sub-calls are disabled" in text
    assert "kernel_side" not in text and "rlm_jupyter" not in text and "----> 1 llm_query('x')" in text


def test_llm_query_model_is_limited_to_the_runs_models(scripted):
    sub = scripted(lambda m: "sub")
    extra = scripted(lambda m: "extra")
    root = scripted([
        repl(
            "for m in ['gpt-4o', 'anthropic/claude-3-opus', None, %r, %r]:\n"
            "    try:\n        print(m, llm_query('x', model=m))\n"
            "    except SubcallError as e:\n        print(m, 'refused:', e)\n"
            "try:\n    llm_query_batched(['a'], model='gpt-4o')\n"
            "except SubcallError as e:\n    print('batch refused:', e)" % (extra, sub)
        ),
        "FINAL(x)",
    ])
    res = RLM(model=root, sub_model=sub, allowed_models=[extra]).completion("q", "abc")
    lines = res.trajectory.iterations[0].cells[0].text.strip().splitlines()
    assert lines[0].startswith("gpt-4o refused:") and "not allowed" in lines[0] and "allowed_models" in lines[0]
    assert lines[1].startswith("anthropic/claude-3-opus refused:")
    assert lines[2:5] == ["None sub", f"{extra} extra", f"{sub} sub"]
    assert lines[5].startswith("batch refused:") and "not allowed" in lines[5]
    # no LM call was made for a refused model
    assert {s.model for s in res.trajectory.subcalls.values()} == {sub, extra}


@pytest.mark.parametrize(
    "trait,value",
    [
        ("max_iterations", 0), ("max_iterations", -3), ("max_depth", 0), ("concurrency", 0),
        ("timeout", 0.0), ("timeout", -1.0), ("timeout", float("nan")), ("lm_timeout", 0.0),
        ("max_subcalls", 0), ("max_tokens", -5), ("max_usd", 0.0), ("max_seconds", -1.0),
        ("max_output_chars", 0), ("num_retries", -1), ("retry_backoff", -0.5), ("cpu_seconds", 0),
        ("max_processes", 0), ("memory_limit_mb", -1), ("environment_idle_seconds", 0.0),
    ],
)
def test_bad_settings_are_rejected_where_they_enter(trait, value):
    from traitlets import TraitError

    with pytest.raises(TraitError, match=trait):
        RLM(**{trait: value})
    rlm = RLM()
    with pytest.raises(TraitError, match=trait):
        setattr(rlm, trait, value)


def test_good_edge_settings_are_accepted():
    rlm = RLM(max_iterations=1, max_depth=1, concurrency=1, timeout=0.5, max_subcalls=None, max_usd=None,
              memory_limit_mb=0, num_retries=0, retry_backoff=0.0, allowed_models=["gpt-4o"])
    assert rlm.max_iterations == 1 and rlm.memory_limit_mb == 0
