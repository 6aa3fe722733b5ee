"""%%rlm in an in-process IPython shell and in a real kernel driven by jupyter_client."""

import textwrap

import pytest
from IPython.core.error import UsageError
from jupyter_client.manager import start_new_kernel

from conftest import collect_iopub, repl


def test_cell_magic_runs_against_a_notebook_variable(ip, scripted):
    root = scripted([repl("print(context.count('needle'))"), "FINAL(two needles)"])
    ip.user_ns["docs"] = "hay needle hay needle hay"
    ip.run_cell_magic("rlm", f"docs --out result -m {root} --sub-model {root} --max-iterations 4", "How many needles?")
    result = ip.user_ns["result"]
    assert result.answer == "two needles" and ip.user_ns["_rlm"] is result
    assert result.trajectory.iterations[0].cells[0].text.strip() == "2"
    assert result.trajectory.root.context_info["total_chars"] == 25


def test_unknown_variable_is_a_one_line_usage_error_with_a_suggestion(ip):
    ip.user_ns["documents"] = "x"
    with pytest.raises(UsageError, match="no variable named 'document'.*Did you mean 'documents'"):
        ip.run_cell_magic("rlm", "document", "q")


def test_unknown_option_empty_query_and_unknown_model_are_usage_errors(ip):
    ip.user_ns["docs"] = "x"
    with pytest.raises(UsageError):
        ip.run_cell_magic("rlm", "docs --no-such-option", "q")
    with pytest.raises(UsageError, match="query\\) is empty"):
        ip.run_cell_magic("rlm", "docs", "   ")
    with pytest.raises(UsageError, match="unknown model id 'not-a-provider-model"):
        ip.run_cell_magic("rlm", "docs -m not-a-provider-model-xyz", "q")


def test_unpicklable_variable_is_a_usage_error_and_the_variable_survives(ip):
    import threading

    lock = threading.Lock()
    ip.user_ns["bad"] = lock
    with pytest.raises(UsageError, match="cannot be pickled"):
        ip.run_cell_magic("rlm", "bad -m scripted/whatever", "q")
    assert ip.user_ns["bad"] is lock


def test_config_sets_defaults_for_later_runs(ip, scripted):
    root = scripted([repl("print(1)"), repl("print(2)"), "FINAL(forced)"])
    ip.user_ns["docs"] = "x"
    ip.run_line_magic("config", f"RLM.model = '{root}'")
    ip.run_line_magic("config", "RLM.max_iterations = 1")
    try:
        ip.run_cell_magic("rlm", "docs --out r2", "q")
        r2 = ip.user_ns["r2"]
        assert r2.trajectory.root.model == root and r2.status == "max_iterations"
    finally:
        ip.run_line_magic("config", "RLM.model = ''")
        ip.run_line_magic("config", "RLM.max_iterations = 30")


def test_rlm_line_magic_lists_runs(ip, capsys):
    ip.run_line_magic("rlm", "runs")
    assert "two needles" in capsys.readouterr().out
    with pytest.raises(UsageError):
        ip.run_line_magic("rlm", "frobnicate")




def test_cell_magic_in_a_real_kernel_shows_live_progress_and_the_answer():
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        setup = textwrap.dedent(
            """
            %load_ext rlm_jupyter
            from rlm_jupyter.lm.scripted import script
            sub = script("kernel-sub", lambda m: "yes", latency=0.3)
            root = script("kernel-root", [
                "```repl\\nr = [llm_query('is it ' + w) for w in context.split()[:3]]\\nprint(r)\\n```",
                "FINAL(three yes)",
            ])
            docs = "alpha beta gamma delta"
            """
        )
        reply = kc.execute_interactive(setup, timeout=120)
        assert reply["content"]["status"] == "ok"
        msg_id = kc.execute("%%rlm docs --out result -m scripted/kernel-root --sub-model scripted/kernel-sub\nWhat?")
        msgs = collect_iopub(kc, msg_id)
        kinds = [m["msg_type"] for m in msgs]
        assert "display_data" in kinds and kinds.count("update_display_data") >= 1
        final = [m for m in msgs if m["msg_type"] in ("display_data", "update_display_data")][-1]
        assert "three yes" in final["content"]["data"]["text/plain"]
        assert "RLM done" in final["content"]["data"]["text/plain"]
        assert "<div class=\"rlm-answer\"" in final["content"]["data"]["text/html"]
        errors = [m for m in msgs if m["msg_type"] == "error"]
        assert not errors
        check = kc.execute_interactive("print(result.answer, len(result.trajectory.subcalls))", timeout=30)
        assert check["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_model_killing_its_kernel_leaves_the_notebook_kernel_and_variables_intact():
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        setup = textwrap.dedent(
            """
            %load_ext rlm_jupyter
            from rlm_jupyter.lm.scripted import script
            root = script("killer", ["```repl\\nimport os, signal\\nos.kill(os.getpid(), signal.SIGKILL)\\n```", "FINAL(survived)"])
            precious = [1, 2, 3]
            """
        )
        assert kc.execute_interactive(setup, timeout=120)["content"]["status"] == "ok"
        msg_id = kc.execute("%%rlm precious --out r -m scripted/killer --sub-model scripted/killer\nq")
        collect_iopub(kc, msg_id)
        out = []
        kc.execute_interactive("print(precious, r.answer)", output_hook=lambda m: out.append(m), timeout=30)
        text = "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")
        assert text.strip() == "[1, 2, 3] survived"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_rlm_step_runs_code_in_the_runs_environment_not_in_this_kernel(ip, scripted, capsys):
    root = scripted([repl("secret = len(context) * 2\nprint(secret)"), "FINAL(done)"])
    ip.user_ns["docs"] = "abcd"
    ip.run_cell_magic("rlm", f"docs --out stepped -m {root} --sub-model {root}", "q")
    run = ip.user_ns["stepped"]
    assert run.environment is not None and run.environment.alive
    capsys.readouterr()
    ip.run_cell_magic("rlm_step", run.run_id, "print(secret + 1, context)")
    assert capsys.readouterr().out.strip() == "9 abcd"
    assert "secret" not in ip.user_ns
    ip.run_line_magic("rlm", f"close {run.run_id}")
    assert not run.environment.alive
    with pytest.raises(UsageError, match="is closed"):
        ip.run_cell_magic("rlm_step", run.run_id, "print(1)")


def test_only_the_newest_environments_are_kept(ip, scripted):
    from rlm_jupyter.jupyter.magics import KEPT_ENVIRONMENTS

    ip.user_ns["docs"] = "x"
    results = []
    for i in range(KEPT_ENVIRONMENTS + 1):
        root = scripted(["FINAL(r)"])
        ip.run_cell_magic("rlm", f"docs --out kept -m {root} --sub-model {root} -q", "q")
        results.append(ip.user_ns["kept"])
    assert not results[0].environment.alive and all(r.environment.alive for r in results[1:])
    ip.run_line_magic("rlm", "close all")
    assert not any(r.environment.alive for r in results)


@pytest.mark.parametrize(
    "options,name",
    [("--max-iterations -3", "max-iterations"), ("--max-iterations 0", "max-iterations"), ("--max-depth 0", "max-depth"),
     ("--timeout 0", "timeout"), ("--timeout -2.5", "timeout"), ("--budget -1", "budget"), ("--budget 0", "budget")],
)
def test_non_positive_options_are_one_line_usage_errors_before_any_run(ip, scripted, options, name):
    root = scripted(["FINAL(should not run)"])
    ip.user_ns["docs"] = "x"
    before = len(ip.magics_manager.registry["RLMMagics"].runs)
    with pytest.raises(UsageError, match=f"--{name}") as exc:
        ip.run_cell_magic("rlm", f"docs -m {root} {options}", "q")
    assert "\n" not in str(exc.value) and "must be" in str(exc.value)
    assert scripted.calls(root) == [] and len(ip.magics_manager.registry["RLMMagics"].runs) == before


def test_a_bad_config_default_is_refused_and_later_runs_are_unaffected(ip, scripted):
    root = scripted([repl("print(1)"), "FINAL(fine)"])
    ip.user_ns["docs"] = "x"
    magics = ip.magics_manager.registry["RLMMagics"]
    try:
        ip.run_line_magic("config", "RLM.concurrency = 0")  # IPython logs the one-line TraitError
        assert magics.defaults.concurrency == 16
        ip.run_cell_magic("rlm", f"docs --out r3 -m {root} --sub-model {root}", "q")
        assert ip.user_ns["r3"].answer == "fine"
    finally:
        ip.config.RLM.pop("concurrency", None)


def test_the_projects_own_model_ids_pass_the_model_check_before_their_provider_is_set_up():
    """`%%rlm VAR -m local/...` (or replay/..., scripted/...) in a fresh kernel was refused as an
    "unknown model id": the check asked litellm before the project's provider was registered."""
    from rlm_jupyter.jupyter.magics import _check_model

    for model in ("local/qwen2.5-coder-1.5b", "replay/run.jsonl", "scripted/anything"):
        _check_model(model, "--model")  # no UsageError
    with pytest.raises(UsageError, match="unknown model id 'nosuchprovider-xyz/m'"):
        _check_model("nosuchprovider-xyz/m", "--model")


def test_no_cache_option_bypasses_the_lm_cache_for_one_run(ip, scripted, tmp_path, monkeypatch):
    from rlm_jupyter.lm import cache as cache_mod

    monkeypatch.setattr(cache_mod, "UNCACHED_PROVIDERS", ())  # let this test cache its scripted model
    root = scripted(lambda msgs: "FINAL(ok)")
    ip.user_ns["docs"] = "abc"
    ip.run_line_magic("config", f"RLM.cache = {str(tmp_path / 'lm-cache')!r}")
    ip.run_line_magic("config", "RLM.completion_kwargs = {'temperature': 0}")
    try:
        line = f"docs --out r -m {root} --sub-model {root}"
        ip.run_cell_magic("rlm", line, "q")  # stores the reply
        n = len(scripted.calls(root))
        ip.run_cell_magic("rlm", line + " --no-cache", "q")
        assert len(scripted.calls(root)) == n + 1 and ip.user_ns["r"].usage.cache_hits == 0
        ip.run_cell_magic("rlm", line, "q")
        assert len(scripted.calls(root)) == n + 1 and ip.user_ns["r"].usage.cache_hits == 1
    finally:
        ip.run_line_magic("config", "RLM.cache = True")
        ip.run_line_magic("config", "RLM.completion_kwargs = {}")


@pytest.mark.parametrize("option, missing, missing_msg, bad_msg", [
    ("--tools", "lookup,lookupp", "--tools: no function named 'lookupp'",
     "--tools is not usable: tool 'not_callable' is not callable"),
    ("--schema", "Persn", "--schema: no variable named 'Persn'", "--schema is not usable: answer_schema must be"),
])
def test_magic_unknown_or_unusable_option_value_is_a_one_line_usage_error(ip, scripted, option, missing, missing_msg, bad_msg):
    """``--tools`` and ``--schema`` name notebook variables: a missing name or an unusable value
    is one line, and the model is never called."""
    root = scripted(["FINAL(never)"])
    ip.user_ns.update(docs="x", lookup=lambda query: [query], not_callable=42)
    with pytest.raises(UsageError, match=missing_msg) as exc:
        ip.run_cell_magic("rlm", f"docs -m {root} {option} {missing}", "q")
    assert "\n" not in str(exc.value)
    with pytest.raises(UsageError, match=bad_msg) as exc:
        ip.run_cell_magic("rlm", f"docs -m {root} {option} not_callable", "q")
    assert "\n" not in str(exc.value) and scripted.calls(root) == []
