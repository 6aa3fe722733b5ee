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


def test_labels_grammar_and_separate_states_for_root_and_sub_calls():
    """A labelled sub-call answers exactly one label (llama.cpp grammar); a sub-call between
    two root turns does not evict the root conversation (two llama.cpp states), so the second
    root turn processes only its new tokens."""
    import asyncio

    from rlm_jupyter.lm.client import LMClient

    local.register()
    client = LMClient()
    labels = ["human being", "numeric value", "location"]
    r = asyncio.run(client.acomplete(local.MODEL_ID, [{"role": "user", "content": "Label the question 'Who wrote Hamlet?'"}],
                                     temperature=0.0, max_tokens=10, rlm_labels=labels))
    assert r.text in labels
    root = [{"role": "system", "content": "You write Python. " * 60}, {"role": "user", "content": "Print hello."}]
    first = asyncio.run(client.acomplete(local.MODEL_ID, root, temperature=0.0, max_tokens=20))
    asyncio.run(client.acomplete(local.MODEL_ID, [{"role": "user", "content": "Say yes. " * 40}], temperature=0.0, max_tokens=3))
    local.reset_stats()
    root += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "Now print bye."}]
    asyncio.run(client.acomplete(local.MODEL_ID, root, temperature=0.0, max_tokens=5))
    st = local.stats()
    assert st["calls"] == 1 and st["prompt_tokens"] > 150
    assert st["evaluated_tokens"] < 60 and st["one_state_tokens"] > 200, st  # only the new turn, not the conversation


def test_dense_counting_task_uses_the_classify_helper():
    """An OOLONG-style counting task (TREC questions, about 40 records): the embedded root
    labels every record with a sub-call helper and counts in code (the score is measured in
    bench/quality, not asserted here)."""
    sys.path.insert(0, str(REPO))
    from bench.quality import oolong

    task = oolong.make(1, 1200)
    events = []
    res = RLM(model=local.MODEL_ID, max_iterations=6, cache=False, timeout=900).completion(task.query, task.context, on_event=events.append)
    code = "\n".join(e.data.get("code") or "" for e in events if e.kind == "code_started")
    assert "llm_classify(" in code or "llm_map(" in code, code
    assert sum(1 for e in events if e.kind == "subcall_started") >= task.meta["lines"]
    assert res.answer is not None
