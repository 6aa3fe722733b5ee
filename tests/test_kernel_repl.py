"""The REPL environment is a real ipykernel driven by jupyter_client."""

import asyncio

import pytest

from rlm_jupyter.core.context import ContextError
from rlm_jupyter.environment.kernel import KernelREPL, kernel_env

PNG_1x1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


async def _echo(op, payload):
    if op == "llm_query":
        return "echo:" + payload["prompt"]
    if op == "llm_query_batched":
        return [p.upper() for p in payload["prompts"]]
    raise ValueError(op)


def run(coro):
    return asyncio.run(coro)


def with_env(body, **kw):
    async def main():
        env = KernelREPL(**kw)
        await env.start(_echo)
        try:
            return await body(env)
        finally:
            await env.shutdown()

    return run(main())


def test_outputs_are_real_jupyter_messages_as_nbformat_dicts():
    async def body(env):
        await env.load_context("hello")
        code = (
            "import IPython.display as d\n"
            "print('out'); import sys; print('err', file=sys.stderr)\n"
            f"d.display({{'image/png': '{PNG_1x1}', 'text/plain': '<img>'}}, raw=True)\n"
            "len(context)"
        )
        return await env.execute(code)

    r = with_env(body)
    kinds = [(o["output_type"], o.get("name")) for o in r.outputs]
    assert kinds == [("stream", "stdout"), ("stream", "stderr"), ("display_data", None), ("execute_result", None)]
    assert r.outputs[2]["data"]["image/png"].startswith("iVBOR")
    assert r.outputs[3]["data"]["text/plain"] == "5" and r.execution_count == 1
    assert "[image/png output shown to the user]" in r.text and r.status == "ok"


def test_errors_come_back_as_tracebacks_without_ansi_codes():
    r = with_env(lambda env: env.execute("def f():\n    return 1/0\nf()"))
    assert r.status == "error" and r.outputs[0]["output_type"] == "error"
    assert "ZeroDivisionError" in r.text and "\x1b[" not in r.text


def test_contexts_of_each_kind_load_through_a_private_file(tmp_path):
    async def body(env):
        out = {}
        for value in ["text ünïcode", b"\x00\x01raw", ["a", "bb"], {"k": [1, 2]}]:
            await env.load_context(value)
            r = await env.execute("print(type(context).__name__, repr(context))")
            out[type(value).__name__] = r.text.strip()
        return out

    out = with_env(body)
    assert out == {
        "str": "str 'text ünïcode'",
        "bytes": "bytes b'\\x00\\x01raw'",
        "list": "list ['a', 'bb']",
        "dict": "dict {'k': [1, 2]}",
    }


def test_unpicklable_context_is_a_clear_error():
    with pytest.raises(ContextError, match="cannot be pickled"):
        with_env(lambda env: env.load_context(lambda: 1))


def test_sub_calls_travel_over_the_parent_channel_from_many_threads():
    code = (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "with ThreadPoolExecutor(8) as ex:\n"
        "    res = list(ex.map(lambda i: llm_query(f'p{i}'), range(32)))\n"
        "print(res == [f'echo:p{i}' for i in range(32)], llm_query_batched(['a', 'b']))"
    )
    r = with_env(lambda env: env.execute(code))
    assert r.text.strip() == "True ['A', 'B']"


def test_timeout_interrupts_and_the_kernel_keeps_its_variables():
    async def body(env):
        await env.execute("x = 41")
        r = await env.execute("while True: pass", timeout=1.5)
        after = await env.execute("print(x + 1)")
        return r, after

    r, after = with_env(body)
    assert r.status == "timeout" and "interrupted" in r.notice
    assert after.text.strip() == "42"


def test_a_dead_kernel_is_restarted_with_context_reloaded():
    async def body(env):
        await env.load_context("abc")
        r = await env.execute("import os; os._exit(3)")
        after = await env.execute("print(len(context), 'llm_query' in dir())")
        return r, after, env.restarts

    r, after, restarts = with_env(body)
    assert r.status == "died" and "restarted" in r.notice and restarts == 1
    assert after.text.strip() == "3 True"


def test_provider_credentials_never_reach_the_kernel(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "t")
    assert "OPENAI_API_KEY" not in kernel_env()
    # (plain mode passes the rest of the parent's environment, e.g. litellm's TIKTOKEN_CACHE_DIR)
    r = with_env(lambda env: env.execute(
        "import os; print(sorted(k for k in os.environ if k.endswith(('_KEY', '_TOKEN')) or k.startswith('AWS')))"
    ))
    assert r.text.strip() == "[]"


def test_deleted_helpers_are_restored_and_the_model_is_told():
    async def body(env):
        r = await env.execute("del llm_query\nFINAL_VAR = None")
        after = await env.execute("print(llm_query('x'))")
        return r, after

    r, after = with_env(body)
    assert "llm_query" in r.notice and "FINAL_VAR" in r.notice
    assert after.text.strip() == "echo:x"


def test_in_repl_final_answers_are_reported_once():
    async def body(env):
        a = await env.execute("result = 6 * 7\nFINAL_VAR('result')")
        b = await env.execute("print('again')")
        c = await env.execute("FINAL_VAR('missing')")
        return a, b, c

    a, b, c = with_env(body)
    assert a.answer == "42" and b.answer is None
    assert c.answer is None and "no variable named 'missing'" in c.text


def test_variable_text_looks_up_names_without_evaluating():
    async def body(env):
        await env.execute("v = [1, 2]")
        return await env.variable_text("v"), await env.variable_text("nope")

    assert with_env(body) == ("[1, 2]", None)


def test_shutdown_leaves_no_kernel_process_behind():
    from conftest import kernel_children

    before = kernel_children()

    async def body(env):
        assert kernel_children() - before
        return True

    with_env(body)
    assert not (kernel_children() - before)


def test_code_that_ignores_interrupts_gets_its_kernel_restarted():
    async def body(env):
        await env.load_context("ctx")
        await env.execute("y = 1")
        code = "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n    except KeyboardInterrupt:\n        pass"
        r = await env.execute(code, timeout=1.0)
        after = await env.execute("print(context, 'y' in dir())")
        return r, after, env.restarts

    r, after, restarts = with_env(body)
    assert r.status == "timeout" and "restarted" in r.notice and restarts == 1
    assert after.text.strip() == "ctx False"


def test_show_vars_lists_the_models_variables():
    async def body(env):
        await env.load_context(["a", "b"])
        return await env.execute("total = 3\nSHOW_VARS()")

    text = with_env(body).text
    assert "context: list, len 2" in text and "total: int" in text and "llm_query" not in text


def test_sandbox_mode_is_reported_and_the_kernel_is_not_our_child():
    import os

    async def body(env):
        r = await env.execute("import os; print(os.getppid())")
        return env.sandbox_mode, env.sandboxed, int(r.text.strip())

    mode, sandboxed, ppid = with_env(body)
    assert mode in ("bwrap", "unshare", "plain") and sandboxed == (mode != "plain")
    assert ppid != os.getpid()


def test_start_sandbox_mode_and_restarts_with_their_reason_are_logged(caplog):
    caplog.set_level("INFO", logger="rlm_jupyter.environment")

    async def body(env):
        await env.execute("import os; os._exit(3)")
        return env.sandbox_mode

    mode = with_env(body, sandbox=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "rlm_jupyter.environment"]
    assert f"sandbox mode {mode} (sandbox disabled)" in lines
    assert any(line.startswith("REPL environment kernel started (env ") for line in lines)
    assert any("restarting the REPL environment kernel (the kernel died: " in line and "restart 1" in line for line in lines)


def test_stale_work_dirs_are_swept_and_logged(caplog, tmp_path, monkeypatch):
    import json
    import tempfile

    caplog.set_level("INFO", logger="rlm_jupyter.environment")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = tmp_path / "rlm-env-stale"
    stale.mkdir()
    (stale / "owner.json").write_text(json.dumps({"pid": 2**22 + 7, "env_id": ""}))  # above pid_max: dead
    env = KernelREPL()
    run(env.shutdown())
    assert not stale.exists()
    assert "removed 1 stale REPL environment work dir(s) of dead processes" in [r.getMessage() for r in caplog.records]
