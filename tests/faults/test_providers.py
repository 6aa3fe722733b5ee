"""Providers that fail: rate limits, 5xx, time-outs, empty or malformed messages, models
that never write code or FINAL. Root and sub-calls; the partial trajectory is always kept."""

from __future__ import annotations

import time

import litellm
import pytest

from faults.faultkit import calls, model, prompt_of_turn, record, repl
from rlm_jupyter import RLM


def rate_limit():
    return litellm.RateLimitError(message="429 Too Many Requests", llm_provider="openai", model="x")


def server_error():
    return litellm.InternalServerError(message="500 upstream exploded", llm_provider="openai", model="x")


def timeout_error():
    return litellm.Timeout(message="Request timed out", model="x", llm_provider="openai")


def rlm(root, sub=None, **kw):
    kw = {"timeout": 30.0, "retry_backoff": 0.01, "num_retries": 3, "max_iterations": 6, **kw}
    return RLM(model=root, sub_model=sub or root, **kw)


def test_429_then_success_for_root_and_sub_calls():
    sub = model("sub", [rate_limit(), rate_limit(), "sub answer"])
    root = model("root", [rate_limit(), repl("print(llm_query('x'))"), rate_limit(), "FINAL(done)"])
    t0 = time.monotonic()
    res = rlm(root, sub).completion("q", "ctx")
    assert res.status == "done" and res.answer == "done"
    assert res.trajectory.iterations[0].cells[0].text.strip() == "sub answer"
    assert res.trajectory.iterations[0].subcalls[0].error is None
    record("provider 429 twice, then success", True, "retried with backoff (invisible to the model)", time.monotonic() - t0)


def test_persistent_500_ends_the_run_with_the_partial_trajectory():
    root = model("root", [repl("x = 1\nprint('turn one ran')"), server_error()])
    res = rlm(root).completion("q", "ctx")
    assert res.status == "error" and "InternalServerError" in res.message and "500 upstream exploded" in res.message
    assert "after 4 attempt(s)" in res.message
    its = res.trajectory.iterations
    assert its[0].cells[0].text.strip() == "turn one ran" and res.trajectory.root.status == "error"
    record("root provider 500 on every retry", True, res.message, res.wall_seconds)


def test_500_in_a_sub_call_reaches_the_model_code_and_the_run_goes_on():
    sub = model("sub", [server_error()])
    root = model("root", [repl("try:\n    llm_query('x')\nexcept SubcallError as e:\n    print('caught:', e)"), "FINAL(recovered)"])
    res = rlm(root, sub).completion("q", "ctx")
    text = res.trajectory.iterations[0].cells[0].text
    assert "caught:" in text and "500 upstream exploded" in text and res.answer == "recovered"
    assert "500 upstream exploded" in prompt_of_turn(root, 2)
    batched = model("root2", [repl("print(llm_query_batched(['a', 'b']))"), "FINAL(ok)"])
    res2 = rlm(batched, sub).completion("q", "ctx")
    assert "[sub-call error]" in res2.trajectory.iterations[0].cells[0].text
    record("sub-call provider 500", True, "SubcallError '...InternalServerError: 500 upstream exploded' in the model's code", res.wall_seconds)


def test_provider_time_outs_are_retried_then_reported():
    root = model("root", [timeout_error(), timeout_error(), "FINAL(late but fine)"])
    res = rlm(root).completion("q", "ctx")
    assert res.answer == "late but fine"
    root2 = model("root2", [repl("print('before')"), timeout_error()])
    res2 = rlm(root2).completion("q", "ctx")
    assert res2.status == "error" and "Timeout" in res2.message and res2.trajectory.iterations[0].cells
    record("provider time-out (litellm.Timeout)", True, res2.message, res2.wall_seconds)


@pytest.mark.timeout(60)
def test_a_provider_that_hangs_is_cut_off_by_lm_timeout():
    root = model("root", ["FINAL(too late)"], latency=12)
    t0 = time.monotonic()
    res = rlm(root, lm_timeout=1.0, num_retries=1).completion("q", "ctx")
    elapsed = time.monotonic() - t0
    record("provider hangs (no answer for 12 s, lm_timeout=1)", elapsed < 6, f"status {res.status} after {elapsed:.1f} s", elapsed)
    assert elapsed < 6 and res.status == "error" and "Timeout" in res.message


def test_empty_replies_get_a_reminder_then_stop_as_repeated():
    root = model("root", [""])
    res = rlm(root).completion("q", "ctx")
    assert "no ```repl code block and no FINAL" in prompt_of_turn(root, 2)
    assert res.status == "repeated" and "same reply 3 times" in res.message and len(res.trajectory.iterations) == 3
    blank_root = model("blank", ["   \n\n  ", "\n", "FINAL(ok)"])
    res2 = rlm(blank_root).completion("q", "ctx")
    assert "no ```repl code block and no FINAL" in prompt_of_turn(blank_root, 3) and res2.answer == "ok"
    record("provider returns empty / blank messages", True, res.message, res.wall_seconds)


def test_malformed_replies_are_not_run_and_the_model_is_told():
    root = model("root", ["```repl\nprint(1", "```bash\nls /\n```", "\x00\ufffd garbage \x1b[31m", "```repl\nprint(2)\n```", "FINAL(ok)"])
    res = rlm(root).completion("q", "ctx")
    for turn in (2, 3, 4):
        assert "no ```repl code block and no FINAL" in prompt_of_turn(root, turn)
    assert res.status == "done" and res.answer == "ok"
    assert [len(it.cells) for it in res.trajectory.iterations] == [0, 0, 0, 1, 0]
    record("malformed replies (open fence, bash, garbage)", True, "not run; 'Your reply had no ```repl code block and no FINAL(...)'", res.wall_seconds)


def test_an_empty_final_is_not_taken_as_the_answer():
    root = model("root", ["FINAL(", "FINAL(real answer)"])
    res = rlm(root).completion("q", "ctx")
    record("truncated 'FINAL(' reply", res.answer == "real answer", f"status {res.status}, answer {res.answer!r}", res.wall_seconds)
    assert res.answer == "real answer"


def test_a_model_that_never_writes_code_or_final_is_forced_to_answer():
    root = model("root", lambda msgs: "I am still thinking about it (%d)." % len(msgs))
    res = rlm(root, max_iterations=3).completion("q", "ctx")
    assert res.status == "max_iterations" and "answer forced" in res.message
    last = calls(root)[-1][-1]["content"]
    assert "You are out of turns" in last and res.answer.startswith("I am still thinking")
    record("never a code block or FINAL", True, res.message, res.wall_seconds)


@pytest.mark.timeout(120)
def test_a_provider_without_its_key_fails_fast_with_one_line(monkeypatch):
    """Issue 10: ``gpt-4o-mini`` without OPENAI_API_KEY used to be retried as a server error
    for about 40 s (past the block timeout); now it fails before any request."""
    import os

    for name in list(os.environ):
        if name.startswith("OPENAI_"):
            monkeypatch.delenv(name)
    root = model("root", [repl(
        "import time\nt = time.monotonic()\ntry:\n    llm_query('x')\nexcept SubcallError as e:\n    print(e)\n"
        "print('fast' if time.monotonic() - t < 5 else 'slow')"
    ), "FINAL(done)"])
    slow_retries = {"retry_backoff": 1.0, "num_retries": 4}  # the defaults: retried for ~40 s before
    res = rlm(root, "gpt-4o-mini", timeout=20.0, **slow_retries).completion("q", "ctx")
    lines = res.trajectory.iterations[0].cells[0].text.strip().splitlines()
    assert lines == [lines[0], "fast"] and "OPENAI_API_KEY" in lines[0] and "no API key" in lines[0], lines
    t0 = time.monotonic()
    res2 = rlm("gpt-4o-mini", **slow_retries).completion("q", "ctx")
    elapsed = time.monotonic() - t0
    assert res2.status == "error" and "OPENAI_API_KEY" in res2.message and "\n" not in res2.message and elapsed < 15
    record("provider key missing (gpt-4o-mini, no OPENAI_API_KEY)", True, lines[0], elapsed)


def test_the_key_check_only_refuses_a_provider_whose_api_key_is_surely_missing(monkeypatch):
    from rlm_jupyter.lm.client import MissingCredentials, check_credentials

    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(MissingCredentials, match="set OPENAI_API_KEY"):
        check_credentials("gpt-4o-mini", {}, environ={})
    with pytest.raises(MissingCredentials, match="ANTHROPIC_API_KEY"):
        check_credentials("anthropic/claude-3-haiku-20240307", {}, environ={})
    check_credentials("gpt-4o-mini", {"api_key": "sk-x"}, environ={})  # a key in the call's arguments
    check_credentials("anthropic/claude-3-haiku-20240307", {}, environ={"ANTHROPIC_AUTH_TOKEN": "t"})  # another credential
    check_credentials("ollama/llama3", {}, environ={})  # no key needed (a local server)
    check_credentials("bedrock/anthropic.claude-v2", {}, environ={})  # cloud credentials come from elsewhere
    check_credentials("vertex_ai/gemini-pro", {}, environ={})
    check_credentials(model("any", ["x"]), {}, environ={})  # a custom provider
