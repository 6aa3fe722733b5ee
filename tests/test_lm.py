"""litellm client: retries, usage, cost, offline import; the embedded model's files."""

import asyncio
import os
import subprocess
import sys

import pytest

from rlm_jupyter.lm import local
from rlm_jupyter.lm.client import LMClient, LMError
from rlm_jupyter.rlm import default_models


def test_usage_and_cost_come_from_litellm(scripted):
    m = scripted(["hello world"], usd_per_million_tokens=1_000_000.0)  # $1 per token
    r = asyncio.run(LMClient().acomplete(m, [{"role": "user", "content": "x" * 40}]))
    assert r.text == "hello world" and r.usage.input_tokens == 10 and r.usage.output_tokens == 2
    assert r.usage.usd == pytest.approx(12.0) and r.usage.cost_known and r.usage.calls == 1


def test_retryable_errors_back_off_then_give_up(scripted):
    import litellm

    errs = [litellm.InternalServerError(message="boom", llm_provider="openai", model="x")] * 5
    m = scripted(errs + ["late"])
    with pytest.raises(LMError, match="after 3 attempt"):
        asyncio.run(LMClient(num_retries=2, backoff_seconds=0.01).acomplete(m, [{"role": "user", "content": "x"}]))


def test_timeouts_are_retried(scripted):
    import litellm

    m = scripted([litellm.Timeout(message="slow", model="x", llm_provider="openai"), "ok"])
    r = asyncio.run(LMClient(backoff_seconds=0.01).acomplete(m, [{"role": "user", "content": "x"}]))
    assert r.text == "ok"


def test_empty_provider_message_is_an_empty_reply(scripted):
    m = scripted([""])
    assert asyncio.run(LMClient().acomplete(m, [{"role": "user", "content": "x"}])).text == ""


def test_import_is_offline_and_fast_enough_to_not_hang():
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    code = "import rlm_jupyter.lm._litellm as l, os; l.litellm_module(); print(os.environ['LITELLM_LOCAL_MODEL_COST_MAP'])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "True"


def test_default_models_follow_provider_keys():
    assert default_models({}) == (local.MODEL_ID, local.MODEL_ID)
    assert default_models({"OPENAI_API_KEY": "k"}) == ("gpt-5", "gpt-5-mini")
    assert default_models({"ANTHROPIC_API_KEY": "k"})[0].startswith("anthropic/")


def test_local_model_path_refuses_a_corrupt_join(tmp_path, monkeypatch):
    parts = []
    for i in range(local.N_PARTS):
        p = tmp_path / f"p{i}.bin"
        p.write_bytes(b"x")
        parts.append(p)
    monkeypatch.setenv("RLM_JUPYTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(local, "part_paths", lambda: parts)
    with pytest.raises(local.LocalModelUnavailable, match="does not match"):
        local.model_path()
    assert not list((tmp_path / "cache").glob("*.gguf"))
