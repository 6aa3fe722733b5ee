"""%%rlm and %rlm in an in-process IPython shell: what the view displays, %rlm show/models,
one-line usage errors and %config defaults."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output



def repl(code: str) -> str:
    """A root reply holding one ```repl block (as conftest.repl; not imported: tests/faults has a conftest too)."""
    return f"```repl\n{code.strip()}\n```"


def _magics(ip):
    return ip.magics_manager.registry["RLMMagics"]


def test_cell_shows_the_static_rendering_with_a_text_fallback(ip, scripted):
    root = scripted([repl("print(llm_query('hi'))"), "FINAL(shown)"])
    sub = scripted(lambda m: "hello back")
    ip.user_ns["docs"] = "abc"
    with capture_output() as cap:
        ip.run_cell_magic("rlm", f"docs --out shown -m {root} --sub-model {sub}", "q")
    last = cap.outputs[-1].data
    assert 'class="rlm-run"' in last["text/html"] and 'data-node="0.s1"' in last["text/html"]
    assert last["text/plain"].startswith("RLM done") and last["text/plain"].endswith("Answer:\nshown")
    assert ip.user_ns["shown"].answer == "shown"


def test_quiet_shows_only_the_answer(ip, scripted):
    root = scripted([repl("print(1)"), "FINAL(just this)"])
    ip.user_ns["docs"] = "abc"
    with capture_output() as cap:
        ip.run_cell_magic("rlm", f"docs -q -m {root} --sub-model {root}", "q")
    assert len(cap.outputs) == 1 and cap.outputs[0].data["text/plain"] == "just this"
    assert "rlm-iteration" not in cap.outputs[0].data["text/html"]


def test_rlm_show_redisplays_a_run_by_number_or_id(ip, scripted):
    root = scripted([repl("print(2)"), "FINAL(again)"])
    ip.user_ns["docs"] = "abc"
    ip.run_cell_magic("rlm", f"docs -q -m {root} --sub-model {root}", "q")
    runs = _magics(ip).runs
    n = len(runs) - 1
    for key in (str(n), runs[n].run_id):
        with capture_output() as cap:
            ip.run_line_magic("rlm", f"show {key}")
        html = cap.outputs[0].data["text/html"]
        assert 'class="rlm-iteration" data-node="0" data-iteration="1"' in html and "again" in html
    with pytest.raises(UsageError, match="no run '999'"):
        ip.run_line_magic("rlm", "show 999")
    with pytest.raises(UsageError, match="which run"):
        ip.run_line_magic("rlm", "show")


def test_rlm_models_reports_configured_models_without_calling_them(ip, scripted, monkeypatch):
    root = scripted(["FINAL(x)"])
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    ip.run_line_magic("config", f"RLM.model = '{root}'")
    ip.run_line_magic("config", "RLM.sub_model = 'gpt-5-mini'")
    try:
        with capture_output() as cap:
            ip.run_line_magic("rlm", "models")
    finally:
        ip.run_line_magic("config", "RLM.model = ''")
        ip.run_line_magic("config", "RLM.sub_model = ''")
    out = cap.stdout
    assert f"root model: {root}  (scripted model: registered)" in out
    assert "sub model:  gpt-5-mini  (provider openai" in out and "NOT usable, set OPENAI_API_KEY" in out


def test_user_mistakes_are_one_line_usage_errors(ip):
    ip.user_ns["docs"] = "x"
    for line, pattern in (
        ("docs --max-iterations many", "invalid int value"),
        ("docs --frobnicate", "unrecognized arguments"),
        ("doc", "Did you mean 'docs'"),
        ("docs --sub-model no-such-model-xyz", "unknown model id 'no-such-model-xyz' for --sub-model"),
    ):
        with pytest.raises(UsageError, match=pattern) as exc:
            ip.run_cell_magic("rlm", line, "q")
        assert "\n" not in str(exc.value)
    with pytest.raises(UsageError, match="'runs', 'show N', 'models', 'config', 'stop' or 'close'"):
        ip.run_line_magic("rlm", "nope")


def test_an_internal_failure_closes_the_view_and_shows_full_detail(ip, scripted, monkeypatch):
    from rlm_jupyter import rlm as rlm_mod

    def broken(self, *a, **kw):
        raise RuntimeError("internal kaboom")

    monkeypatch.setattr(rlm_mod.RLM, "completion", broken)
    ip.user_ns["docs"] = "x"
    root = scripted(["FINAL(x)"])
    with capture_output() as cap, pytest.raises(RuntimeError, match="internal kaboom"):
        ip.run_cell_magic("rlm", f"docs -m {root}", "q")
    assert "RLM error" in cap.outputs[-1].data["text/plain"] and "RuntimeError: internal kaboom" in cap.outputs[-1].data["text/plain"]
