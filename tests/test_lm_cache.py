"""The persistent LM cache (diskcache): hits and misses, the greedy-only policy, eviction,
two processes at once, recovery from a corrupted cache file, and a whole RLM run re-done
from the cache (real kernel)."""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from conftest import repl
from rlm_jupyter import RLM
from rlm_jupyter.rlm import run_sync
from rlm_jupyter.core.limits import Budget, Limits
from rlm_jupyter.lm import cache as cache_mod
from rlm_jupyter.lm.cache import CacheWarning, LMCache, cache_for, default_directory
from rlm_jupyter.lm.client import LMClient

MSG = [{"role": "user", "content": "What is 2+2?"}]


def call(client, model, messages=MSG, **kw):
    return run_sync(client.acomplete(model, messages, **kw))


def test_greedy_call_is_a_hit_the_second_time_and_costs_nothing(tmp_path, scripted):
    m = scripted(["four", "FOUR"], usd_per_million_tokens=1_000_000.0)
    client = LMClient(cache=LMCache(tmp_path / "c", cache_scripted=True))
    first = call(client, m, temperature=0)
    again = call(client, m, temperature=0)
    assert first.text == again.text == "four" and len(scripted.calls(m)) == 1
    assert not first.cached and first.usage.usd > 0 and first.usage.cache_hits == 0
    assert again.cached and again.usage.usd == 0 and again.usage.cache_hits == 1 and again.usage.calls == 1
    assert again.usage.seconds == 0 and again.usage.cached_seconds > 0
    assert (again.usage.input_tokens, again.usage.output_tokens) == (first.usage.input_tokens, first.usage.output_tokens)
    # other messages, other parameters: misses
    assert call(client, m, [{"role": "user", "content": "What is 3+3?"}], temperature=0).text == "FOUR"
    call(client, m, temperature=0, max_tokens=5)
    assert len(scripted.calls(m)) == 3


def test_hits_survive_the_process_object_and_add_up_in_usage(tmp_path, scripted):
    m = scripted(["a"])
    call(LMClient(cache=LMCache(tmp_path, cache_scripted=True)), m, temperature=0.0)
    hit = call(LMClient(cache=LMCache(tmp_path, cache_scripted=True)), m, temperature=0.0)
    assert hit.cached and len(scripted.calls(m)) == 1
    budget = Budget(Limits())
    budget.record(hit.usage)
    budget.record(hit.usage)
    assert budget.usage.cache_hits == 2 and budget.usage.usd == 0 and budget.usage.calls == 2


def test_sampling_calls_are_never_cached(tmp_path, scripted):
    m = scripted(["x", "y", "z"])
    c = LMCache(tmp_path, cache_scripted=True)
    client = LMClient(cache=c)
    assert [call(client, m, temperature=0.7).text, call(client, m, temperature=0.7).text] == ["x", "y"]
    assert call(client, m).text == "z"  # no temperature given: the provider's default, not greedy
    assert c.key(m, MSG, {"temperature": 1}) is None and c.key(m, MSG, {}) is None and c.stores == 0


def test_scripted_and_replay_models_are_not_cached_by_default(tmp_path, scripted):
    m = scripted(["1", "2"])
    c = LMCache(tmp_path)
    assert c.key(m, MSG, {"temperature": 0}) is None and c.key("replay//x.jsonl", MSG, {"temperature": 0}) is None
    assert c.key("gpt-5", MSG, {"temperature": 0}) is not None
    client = LMClient(cache=c)
    assert [call(client, m, temperature=0).text, call(client, m, temperature=0).text] == ["1", "2"]


def test_key_ignores_transport_settings_but_not_sampling_ones():
    c = LMCache("/nonexistent-not-opened")
    k = c.key("gpt-5", MSG, {"temperature": 0, "timeout": 5, "api_key": "a"})
    assert k == c.key("gpt-5", MSG, {"temperature": 0.0, "timeout": 600, "api_key": "b"})
    assert k != c.key("gpt-5", MSG, {"temperature": 0, "max_tokens": 10}) != c.key("gpt-4o", MSG, {"temperature": 0})


def test_size_limit_evicts_least_recently_used(tmp_path):
    c = LMCache(tmp_path, size_limit=400_000, cache_scripted=True)
    big = "x" * 50_000
    c.set("k0", {"text": big})
    for i in range(1, 40):
        c.set(f"k{i}", {"text": big})
        if i < 5:
            assert c.get("k0") is not None  # recently used: kept while others go
    assert c.get("k1") is None and c.get("k39") is not None
    assert len(c) < 40 and c.volume() < 400_000 + 20 * 50_000


WRITER = textwrap.dedent(
    """
    import sys
    from rlm_jupyter.lm.cache import LMCache
    c = LMCache(sys.argv[1], cache_scripted=True)
    me, other = sys.argv[2], sys.argv[3]
    seen = 0
    for i in range(150):
        c.set(f"{me}-{i}", {"text": f"{me} {i}"})
        c.set("shared", {"text": f"{me} {i}"})
        seen += c.get(f"{other}-{i // 2}") is not None
        assert c.get("shared")["text"].split()[0] in ("A", "B")
    print(seen)
    """
)


def test_two_processes_share_one_cache(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), me, other], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for me, other in (("A", "B"), ("B", "A"))
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-800:] for o in outs]
    c = LMCache(tmp_path, cache_scripted=True)
    assert all(c.get(f"{w}-{i}") == {"text": f"{w} {i}"} for w in "AB" for i in range(150))
    assert c.get("shared")["text"] in ("A 149", "B 149")


def test_a_corrupted_cache_file_is_moved_aside_with_a_warning(tmp_path, scripted):
    d = tmp_path / "lm-cache"
    c = LMCache(d, cache_scripted=True)
    c.set("k", {"text": "old"})
    c.close()
    garbage = b"this is not an SQLite database" * 100
    (d / "cache.db").write_bytes(garbage)
    m = scripted(["fresh"])
    client = LMClient(cache=LMCache(d, cache_scripted=True))
    with pytest.warns(CacheWarning, match="damaged"):
        r = call(client, m, temperature=0)
    assert r.text == "fresh" and not r.cached  # the run goes on
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("lm-cache.corrupt-")]
    assert len(aside) == 1 and (aside[0] / "cache.db").read_bytes() == garbage  # kept, not deleted
    assert call(client, m, temperature=0).cached  # the new cache works


def test_an_unreadable_entry_is_dropped_with_a_warning(tmp_path):
    c = LMCache(tmp_path, cache_scripted=True)
    c._cache().set("k", "{not json")
    with pytest.warns(CacheWarning, match="unreadable"):
        assert c.get("k") is None
    assert "k" not in c._cache()


def test_settings_and_default_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("RLM_JUPYTER_LM_CACHE", raising=False)
    monkeypatch.setenv("RLM_JUPYTER_CACHE", str(tmp_path))
    assert default_directory() == tmp_path / "lm-cache"
    assert cache_for(True).directory == tmp_path / "lm-cache" and cache_for("on") is cache_for(True)
    assert cache_for(False) is None and cache_for("off") is None and cache_for("") is None
    assert cache_for(str(tmp_path / "mine")).directory == tmp_path / "mine"
    monkeypatch.delenv("RLM_JUPYTER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_directory() == tmp_path / "xdg" / "rlm_jupyter" / "lm-cache"
    assert RLM().cache is True and RLM(cache=False).cache is False and RLM(cache="/x").cache == "/x"
    monkeypatch.setenv("RLM_JUPYTER_LM_CACHE", str(tmp_path / "own"))
    assert cache_for(True).directory == tmp_path / "own"
    monkeypatch.setenv("RLM_JUPYTER_LM_CACHE", "off")  # as the test suite runs
    assert cache_for(True) is None and cache_for(str(tmp_path / "mine")).directory == tmp_path / "mine"


def test_cli_no_cache_flag_turns_the_cache_off(tmp_path, monkeypatch):
    from rlm_jupyter import cli

    seen = {}

    def fake_completion(self, query, context, on_event=None, on_tick=None):
        seen["cache"] = self.cache
        raise TypeError("stop here")

    monkeypatch.setattr(RLM, "completion", fake_completion)
    ctx = tmp_path / "c.txt"
    ctx.write_text("hello")
    for flags, want in (([], True), (["--no-cache"], False)):
        assert cli.main(["run", "--context", str(ctx), "--query", "q", "--model", "gpt-5", *flags]) == 2
        assert seen["cache"] is want


def test_a_whole_run_is_redone_from_the_cache(tmp_path, scripted, monkeypatch):
    monkeypatch.setattr(cache_mod, "UNCACHED_PROVIDERS", ())  # let this test cache its scripted models
    sub = scripted(lambda msgs: "SUB:" + msgs[0]["content"][:5], usd_per_million_tokens=1.0)
    root = scripted([repl("x = llm_query(context[:20])\nprint(x)"), "FINAL_VAR(x)"], usd_per_million_tokens=1.0)
    rlm = RLM(model=root, sub_model=sub, cache=str(tmp_path), completion_kwargs={"temperature": 0})
    first = rlm.completion("q", "hello world, this is the context")
    n_root, n_sub = len(scripted.calls(root)), len(scripted.calls(sub))
    again = rlm.completion("q", "hello world, this is the context")
    assert again.answer == first.answer == "SUB:hello"
    assert (len(scripted.calls(root)), len(scripted.calls(sub))) == (n_root, n_sub)  # no model called
    assert first.usage.cache_hits == 0 and first.usage.usd > 0
    assert again.usage.cache_hits == again.usage.calls == 3 and again.usage.usd == 0
    assert again.trajectory.iterations[0].subcalls[0].cached
    assert again.trajectory.iterations[0].usage.cache_hits == 1
    assert again.trajectory.iterations[0].cells[0].text == first.trajectory.iterations[0].cells[0].text


def test_scripted_runs_leave_the_default_cache_alone(tmp_path, scripted, monkeypatch):
    monkeypatch.delenv("RLM_JUPYTER_LM_CACHE", raising=False)
    monkeypatch.setenv("RLM_JUPYTER_CACHE", str(tmp_path))
    root = scripted(["FINAL(ok)"])
    res = RLM(model=root, completion_kwargs={"temperature": 0}).completion("q", "c")
    assert res.answer == "ok" and not (tmp_path / "lm-cache").exists()
