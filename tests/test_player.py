"""The player over recorded runs (issue 11): every step of a real depth-2 run (scripted models,
real environment kernels) rendered in the widget and in the static export, recordings of every
kind opened (this project's .jsonl and .ipynb, the official ``rlms`` JSONL log), and hostile
content of a recording kept inert in both renderings."""

from __future__ import annotations

import html
import html.parser
import json
import pathlib
import re

import pytest
from test_safe_html import IDS, TEXTS, assert_inert, hostile_events

import rlm_jupyter
from conftest import repl
from rlm_jupyter import RLM
from rlm_jupyter.jupyter import player_html as P
from rlm_jupyter.jupyter.player import Player, load_run, show
from rlm_jupyter.lm.scripted import get_script, script

LOG = pathlib.Path(__file__).parent / "data" / "official_rlms_0.1.3.jsonl"
MARKER = "ZEBRA-7731-NEVER-PRINTED"
CONTEXT = "one two three four five six seven " * 20 + MARKER


def _root_or_child(msgs):
    first_user = next(m["content"] for m in msgs if m["role"] == "user")
    turns = sum(1 for m in msgs if m["role"] == "assistant")
    if "Query: count the words" in first_user:  # the child RLM (depth 1), with its own sub-call (depth 2)
        return [repl("n = len(context.split())\ns = llm_query('check ' + str(n))\nprint(n, s)"), "FINAL_VAR(n)"][min(turns, 1)]
    return [
        "First, the size.\n" + repl("print(len(context))"),
        "Now a sub-call and a child RLM.\n" + repl(
            "a = llm_query('Summarise: ' + context[:20])\nr = rlm_query('count the words', context='a b c d')\nprint(a, r)"
        ),
        repl("b = llm_query_batched(['p1', 'p2'])\nprint(b)"),
        "FINAL_VAR(r)",
    ][min(turns, 3)]


@pytest.fixture(scope="module")
def run():
    root = script("player-root", _root_or_child, usd_per_million_tokens=3.0)
    sub = script("player-sub", lambda msgs: "ok:" + msgs[0]["content"][:12], usd_per_million_tokens=1.0)
    res = RLM(model=root, sub_model=sub, max_depth=2).completion("How long is it?", CONTEXT)
    assert res.status == "done" and res.answer == "4"
    res.root_calls = [c for c in get_script(root).calls if "Query: How long is it?" in next(m["content"] for m in c if m["role"] == "user")]
    return res


def text_of(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def test_every_step_of_a_depth_two_run_has_its_code_outputs_and_sub_calls(run):
    traj = run.trajectory
    player = show(run)
    assert player.steps == 4 == len(traj.iterations)
    tokens, usd = [], []
    for k, it in enumerate(traj.iterations, 1):
        markup = player.html(k)
        text = text_of(markup)
        assert f'data-step="{k}"' in markup and f"Step {k} of 4" in text
        for cell in it.cells:
            assert cell.code.strip() in text and cell.text.strip() in text
        for sc in it.subcalls:
            assert f'data-node="{sc.node_id}"' in markup
        tokens.append(int(re.search(r'data-tokens="(\d+)"', markup).group(1)))
        usd.append(float(re.search(r'data-usd="([\d.]+)"', markup).group(1)))
        assert MARKER not in markup, "the context must appear only as its description"
    assert tokens == sorted(tokens) and len(set(tokens)) == 4 and usd == sorted(usd)
    assert tokens[-1] == traj.usage().total_tokens and usd[-1] == pytest.approx(traj.usage().usd, abs=1e-6)
    # step 2: the child RLM with its own sub-call (depth 2) in the tree; step 3 adds the batch
    two, three = player.html(2), player.html(3)
    assert 'data-node="0.c1"' in two and 'data-node="0.c1.s1"' in two and "check 4" in text_of(two)
    assert "llm_query_batched" not in text_of(P.subcall_tree_html(traj, 2)) and "llm_query_batched" in text_of(P.subcall_tree_html(traj, 3))
    # the tree grows step by step and marks the current step
    assert 'data-iteration="3"' not in P.subcall_tree_html(traj, 2) and "rlm-player-current" in P.subcall_tree_html(traj, 2)
    last = player.html(4)
    assert 'class="rlm-final"' in last and "rlm-final" not in player.html(3)


def test_what_the_root_model_saw_is_the_messages_it_received(run):
    traj = run.trajectory
    assert len(run.root_calls) == 4
    for k in range(1, 5):
        assert P.saw(traj, k) == run.root_calls[k - 1], f"step {k}"
    markup = show(run).html(3)
    assert markup.count('class="rlm-message"') == len(run.root_calls[2])
    assert 'data-role="system"' in markup and "Turn 3/" in text_of(markup)
    assert run.root_calls[2][0]["content"] in text_of(markup)  # the system prompt, whole
    assert f"{len(CONTEXT):,} total characters" in text_of(markup)  # the context's description, not the context


def test_the_forced_final_turn_is_a_step_with_the_messages_of_that_call(scripted):
    root = scripted([repl("print(1)"), repl("print(2)"), "FINAL(forced)"])
    res = RLM(model=root, sub_model=root, max_iterations=2).completion("q", "ctx")
    assert res.status == "max_iterations" and [it.index for it in res.trajectory.iterations] == [1, 2, 3]
    calls = scripted.calls(root)
    assert [P.saw(res.trajectory, k) for k in (1, 2, 3)] == calls
    player = show(res)
    assert player.steps == 3 and "out of turns" in text_of(player.html(3)) and "forced" in text_of(player.html(3))


def test_a_run_without_iterations_shows_an_empty_player():
    from rlm_jupyter.core import events as ev
    from rlm_jupyter.core.trajectory import Trajectory

    traj = Trajectory.from_events([
        ev.Event(ev.RUN_STARTED, "0", None, 0, 0.0, {"query": "q", "model": "m", "context_info": {}}, "r1"),
        ev.Event(ev.RUN_FINISHED, "0", None, 0, 0.1, {"status": "error", "answer": None, "message": "no kernel"}, "r1"),
    ])  # fmt: skip
    player = show(traj)
    assert player.steps == 0 and player.step == 0 and player.next() == 0
    assert "no root iterations" in player.html() and "no root iterations" in player.widget.children[2].value
    assert "no root iterations" in player.document() and 'type="radio"' not in player.document()


def test_a_block_edited_in_step_mode_shows_the_models_version(run):
    import dataclasses

    from rlm_jupyter.core import events as ev
    from rlm_jupyter.core.trajectory import Trajectory

    events = [
        dataclasses.replace(e, data={**e.data, "code": "print('edited')", "original_code": "print('the model wrote this')"})
        if e.kind == ev.CODE_STARTED and e.node_id == "0" and e.data.get("iteration") == 1 else e
        for e in run.trajectory.events
    ]
    one = show(Trajectory.from_events(events)).html(1)
    assert 'class="rlm-player-edited"' in one and "print('the model wrote this')" in text_of(one)
    assert "rlm-player-edited" not in show(run).html(1)


def test_the_widget_steps_with_buttons_and_slider(run):
    player = Player(run.trajectory)
    box = player.widget
    assert "rlm-player" in box._dom_classes and player.view_html == player.html(1)
    assert player._prev.disabled and not player._next.disabled
    player._next.click()
    assert player.step == 2 and player.view_html == player.html(2) and player._slider.value == 2
    player._slider.value = 4  # the slider (arrow keys in the browser) drives the view
    assert player.step == 4 and player.view_html == player.html(4) and player._next.disabled
    player._prev.click()
    assert player.step == 3 and player.view_html == player.html(3)
    assert player.go(99) == 4 and player.go(-3) == 1 and player.view_html == player.html(1)
    bundle = player._repr_mimebundle_()
    assert "<RLM player" in bundle["text/plain"]
    player.close()


def test_jsonl_and_notebook_recordings_open_as_the_same_steps(run, tmp_path):
    player = Player(run.trajectory)
    for path in (run.to_jsonl(tmp_path / "run.jsonl"), run.to_notebook(tmp_path / "run.ipynb")):
        loaded = rlm_jupyter.show(str(path))
        assert loaded.steps == 4
        assert [loaded.html(k) for k in range(1, 5)] == [player.html(k) for k in range(1, 5)], path.suffix


def test_the_static_export_holds_every_step_and_no_script(run, tmp_path):
    player = show(run)
    path = player.save_html(tmp_path / "out" / "run.html")
    doc = path.read_text(encoding="utf-8")
    assert doc.startswith("<!DOCTYPE html>") and "<script" not in doc.lower()
    assert f'content="{P.CSP}"' in doc and "script-src" not in P.CSP and "default-src 'none'" in P.CSP
    for k in range(1, 5):
        assert f'<section class="rlm-player-step" id="rlm-step-{k}" data-step="{k}">' in doc and player.html(k) in doc
        assert f'id="rlm-s{k}"' in doc and f"#rlm-s{k}:checked~.rlm-player-steps #rlm-step-{k}{{display:block}}" in doc
    assert re.findall(r"(?:src|href)=\"(?!data:)[^\"]*\"", doc) == []  # nothing to load
    assert player.to_html(tmp_path / "again.html").read_text(encoding="utf-8") == doc


def test_an_official_rlms_log_opens_with_its_recorded_messages():
    player = show(LOG)
    traj = player.trajectory
    assert traj.run_id.startswith("rlms-") and player.steps == 3
    first = player.html(1)
    recorded = P.recorded_messages(traj)[1]
    assert first.count('class="rlm-message"') == len(recorded) and 'data-role="system"' in first
    assert "print(len(context))" in text_of(first) and "16\nalpha" in text_of(first)
    two = player.html(2)
    assert 'data-node="0.c1"' in two and 'data-node="0.s1"' in two and "Say the word: alpha" in text_of(two)
    assert "HELLO 42" in text_of(player.html(3))
    with pytest.raises(ValueError, match="holds 1 run"):
        show(LOG, run=3)


def test_bad_sources_fail_with_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        show(tmp_path / "missing.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="use a .jsonl or .ipynb"):
        show(tmp_path / "x.txt")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="holds no RLM run"):
        show(tmp_path / "empty.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"kind": "nope"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_run(tmp_path / "bad.jsonl")
    with pytest.raises(TypeError, match="not int"):
        show(42)


def test_rlm_show_path_opens_the_player_and_run_numbers_still_work(run, ip, tmp_path):
    from IPython.core.error import UsageError
    from IPython.utils.capture import capture_output

    path = run.to_jsonl(tmp_path / "my run.jsonl")
    with capture_output() as cap:
        ip.run_line_magic("rlm", f'show "{path}"')
    shown = cap.outputs[0].data
    assert "<RLM player" in shown["text/plain"] and 'data-step="1"' in shown["text/html"]
    with pytest.raises(UsageError, match="no recorded run"):
        ip.run_line_magic("rlm", f"show {tmp_path}/gone.jsonl")
    with pytest.raises(UsageError, match="no run '100007'"):  # (other tests' runs share the shell)
        ip.run_line_magic("rlm", "show 100007")


# -- hostile recordings ---------------------------------------------------------------------------
class _Document(html.parser.HTMLParser):
    """Splits the static export: our fixed head and radio inputs are checked apart; the rest is
    fed to the inspector of tests/test_safe_html.py."""

    def __init__(self):
        super().__init__(convert_charrefs=False)
        self.head_tags, self.inputs, self.body, self.in_body = [], [], [], False

    def handle_starttag(self, tag, attrs):
        if tag == "body":
            self.in_body = True
        elif not self.in_body:
            self.head_tags.append((tag, dict(attrs)))
        elif tag == "input":
            self.inputs.append(dict(attrs))
        else:
            self.body.append(self.get_starttag_text())

    def handle_endtag(self, tag):
        if self.in_body:
            self.body.append(f"</{tag}>")

    def handle_data(self, data):
        if self.in_body:
            self.body.append(data)

    def handle_entityref(self, name):
        self.body.append(f"&{name};")

    def handle_charref(self, name):
        self.body.append(f"&#{name};")


def assert_export_inert(doc: str, steps: int) -> None:
    d = _Document()
    d.feed(doc)
    assert [t for t, _ in d.head_tags] == ["html", "head", "meta", "meta", "title", "style"]
    assert d.head_tags[3][1] == {"http-equiv": "Content-Security-Policy", "content": P.CSP}
    assert [set(a) - {"checked", "autofocus"} for a in d.inputs] == [{"type", "class", "name", "id", "aria-label"}] * steps
    assert all(a["type"] == "radio" and re.fullmatch(r"rlm-s\d+", a["id"]) for a in d.inputs)
    style = doc.split("<style>", 1)[1].split("</style>", 1)[0]
    assert "url(" not in style and "@import" not in style
    assert_inert("".join(d.body), "static export body")


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_hostile_recordings_stay_inert_in_the_widget_and_the_export(text, tmp_path):
    import dataclasses

    from rlm_jupyter.core import events as ev
    from rlm_jupyter.core.trajectory import Trajectory

    events = [  # also a block the user edited in step mode, and a message from the user
        dataclasses.replace(e, data={**e.data, "original_code": text}) if e.kind == ev.CODE_STARTED else e
        for e in hostile_events(text)
    ]
    events.insert(2, ev.Event(ev.USER_MESSAGE, "0", None, 0, 0.1, {"iteration": 1, "text": text}, events[0].run_id))
    player = Player(Trajectory.from_events(events))
    assert "rlm-player-edited" in player.html(1)
    assert player.steps == 1
    player.widget
    assert_inert(player.view_html, "player widget view")
    assert_inert(player._box.children[0].value, "player widget header")
    assert_inert(player._repr_mimebundle_().get("text/html", ""), "player fallback")
    doc = player.to_html(tmp_path / "hostile.html").read_text(encoding="utf-8")
    assert_export_inert(doc, 1)


def _official_log(path, text):
    """An rlms-format log (metadata + iterations) with ``text`` in every field the player shows."""
    meta = {"type": "metadata", "timestamp": "2026-01-01T00:00:00", "root_model": text, "max_depth": 2, "max_iterations": 3,
            "backend": "openai", "backend_kwargs": {"api_key": "sk-secret"}, "other_backends": [text]}
    call = {"root_model": text, "prompt": text, "response": text, "usage_summary": {}, "execution_time": 0.1}
    child = {"root_model": text, "prompt": text, "response": text, "execution_time": 0.1,
             "metadata": {"run_metadata": meta, "iterations": [{"type": "iteration", "iteration": 1, "prompt": [{"role": text, "content": text}],
                                                              "response": text, "code_blocks": [], "final_answer": text}]}}
    it = {"type": "iteration", "iteration": 1, "timestamp": "2026-01-01T00:00:01",
          "prompt": [{"role": "system", "content": text}, {"role": text, "content": text}, {"role": "user", "content": [{"type": "text", "text": text}]}],
          "response": f"{text}\n```repl\n{text}\n```",
          "code_blocks": [{"code": text, "result": {"stdout": text, "stderr": text, "rlm_calls": [call, child], "execution_time": 0.2}}],
          "final_answer": text}
    path.write_text(json.dumps(meta) + "\n" + json.dumps(it) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_hostile_official_logs_stay_inert(text, tmp_path):
    player = show(_official_log(tmp_path / "rlms.jsonl", text))
    assert player.steps == 1 and player.trajectory.iterations[0].children
    markup = player.html(1)
    assert markup.count('class="rlm-message"') == 3
    assert_inert(markup, "official log step")
    assert "sk-secret" not in player.document()
    assert_export_inert(player.document(), 1)
