"""The benchmarks' smoke mode runs and writes sane JSON (figures are not checked: benchmarks
print figures, tests only check behaviour). Runs ``python -m bench ... --smoke`` in a
subprocess, as a user would."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def _bench(tmp_path, *args: str) -> dict:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--smoke", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.exists(), proc.stdout[-2000:]
    return json.loads(out.read_text())


def test_overhead_smoke_writes_json_with_sane_fields(tmp_path):
    res = _bench(tmp_path, "overhead", "--official", "no")
    assert res["benchmark"] == "overhead" and res["smoke"] is True
    s = res["summary"]
    assert 0 < s["per_iteration_ms"] < 1000 and 0 < s["cell_ms"] < 1000
    assert 0 < s["roundtrip_channel_ms"] < 100
    ideal = s["batched_ideal_s"]
    assert ideal <= s["batched_s"] < ideal * 5  # concurrent: far below the sequential 8 x 0.2 s
    assert all(x["ok"] for x in res["ours"]["load"])
    assert 0 < s["root_reads_percent"] < 100
    assert res["official_error"]  # skipped on request, and said so


@pytest.mark.skipif(not (DATA / "books").is_dir(), reason="needs ../shared/data")
def test_quality_smoke_writes_json_with_sane_fields(tmp_path):
    res = _bench(tmp_path, "quality", "--no-plot")
    kinds = {r["task"]["kind"] for r in res["rows"]}
    assert kinds == {"sniah", "oolong", "pairs"}
    assert {r["method"] for r in res["rows"]} == {"base", "rlm", "rlm_nosub"}
    for r in res["rows"]:
        assert 0.0 <= r["score"] <= 1.0 and r["status"] != "error", r
        assert r["wall_seconds"] > 0 and r["input_tokens"] > 0
    # the scripted root greps the needle: the RLM finds it, the scripted base model does not
    sniah = {r["method"]: r["score"] for r in res["rows"] if r["task"]["kind"] == "sniah"}
    assert sniah == {"base": 0.0, "rlm": 1.0, "rlm_nosub": 1.0}
    assert len(res["summary"]) == 9
    for r in res["rows"]:  # RLM rows: LM time without overlap, the root's trace
        if r["method"].startswith("rlm"):
            assert 0 < r["lm_busy_seconds"] <= r["wall_seconds"] and r["trace"][-1].get("final") is not None, r
            assert r["lm_busy_seconds"] <= r["lm_seconds"] + 1e-6


def test_lm_busy_seconds_is_the_union_of_call_intervals():
    from bench.quality.methods import lm_busy_seconds
    from rlm_jupyter.core.events import Event

    def e(kind, t, secs):
        return Event(kind, "0", None, 0, t, {"usage": {"seconds": secs}})

    events = [e("root_reply", 2.0, 2.0), e("subcall_finished", 5.0, 2.0), e("subcall_finished", 5.5, 2.0),
              e("code_finished", 6.0, 9.0), e("root_reply", 9.0, 1.0)]
    assert lm_busy_seconds(events) == pytest.approx(2.0 + 2.5 + 1.0)  # [0,2] + [3,5.5] + [8,9]


def test_interpreter_smoke_writes_json_with_sane_fields(tmp_path):
    res = _bench(tmp_path, "interpreter")
    assert res["benchmark"] == "interpreter" and res["smoke"] is True
    kinds = res["results"]
    assert set(kinds) == {"jupyter", "jupyter_nosandbox", "plain_kernel", "exec"}
    for name, r in kinds.items():
        assert "error" not in r, (name, r)
        assert r["warm_ms"] > 0 and r["tool_ms"] > 0 and r["var_1mb_ms"] > 0, (name, r)
    for name in ("jupyter", "jupyter_nosandbox", "plain_kernel"):
        assert kinds[name]["start_ms"] > kinds[name]["warm_ms"] and kinds[name]["interpreter_rss_mb"] > 10
    assert set(res["summary"]) >= {"warm_ratio", "warm_met", "tool_met", "var_met"}


def test_helpers_used_counts_calls_of_the_repl_helpers_not_methods_of_the_same_name():
    from bench.quality.methods import helpers_used
    from rlm_jupyter.core.events import Event

    code = "m = re.search(r'User: (\\d+)', line)\nfound = llm_classify(texts, labels)\nhits = search ('x')"
    assert helpers_used([Event("code_started", "0", None, 0, 1.0, {"code": code})]) == {"llm_classify": 1, "search": 1}
