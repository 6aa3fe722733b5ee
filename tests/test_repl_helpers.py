"""REPL task helpers (issue 15): grep, search (BM25), chunks, llm_map / llm_classify with
label-constrained sub-calls, llm_reduce / summarize; the echo of a block's last value and
"(no output)"; task-shaped worked examples. Scripted root and sub models (litellm custom
provider) drive a real environment kernel, with the sandbox (where it works) and without."""

import re

import pytest

from conftest import repl
from rlm_jupyter import RLM
from rlm_jupyter.core import labels as lb
from rlm_jupyter.core import examples
from rlm_jupyter.core.examples import count_kind, pairs_kind, task_shape
from rlm_jupyter.core.prompts import initial_messages, system_prompt, turn_message

RECORDS = "\n".join(
    f"Date: Jan {i % 28 + 1}, 2023 || User: {10000 + i % 4} || Instance: "
    + ("Who wrote Hamlet?" if i % 3 == 0 else "How far away is the moon?")
    for i in range(30)
)
SANDBOX = ["auto", "off"]  # auto = bubblewrap where it works here (as in CI), off = a plain child process


def _run(scripted, root_replies, sub=None, context=RECORDS, sandbox="off", **kw):
    root = scripted(root_replies)
    sub = sub or root
    res = RLM(model=root, sub_model=sub, sandbox=sandbox, **kw).completion("q", context)
    return res, root


def _cells(res):
    return [c.text for it in res.trajectory.iterations for c in it.cells]


@pytest.mark.parametrize("sandbox", SANDBOX)
def test_grep_search_and_chunks_in_the_kernel(scripted, sandbox):
    code = (
        "print(grep('user: 10001')[:2])\n"
        "print('--')\n"
        "print(grep('Hamlet', window=1)[:3])\n"
        "print('--')\n"
        "parts = chunks(context, 500, overlap=100)\n"
        "print(len(parts), max(len(p) for p in parts), all(p.endswith('\\n') for p in parts[:-1]))\n"
        "print(chunks(list(range(7)), 3))\n"
        "print('--')\n"
        "search('who wrote hamlet', 2)"
    )
    res, _ = _run(scripted, [repl(code), "FINAL(done)"], sandbox=sandbox)
    out = _cells(res)[0]
    g1, g2, ch, bm = out.split("--\n")
    assert g1.splitlines() == [
        "<line 1> Date: Jan 2, 2023 || User: 10001 || Instance: How far away is the moon?",
        "<line 5> Date: Jan 6, 2023 || User: 10001 || Instance: How far away is the moon?",
    ]
    assert [l.split(">")[0] for l in g2.splitlines()] == ["<line 0", "<line 1", "<line 2"]
    n, biggest, aligned = ch.splitlines()[0].split()
    assert int(biggest) <= 500 and aligned == "True"
    assert ch.splitlines()[1] == "[[0, 1, 2], [3, 4, 5], [6]]"
    rows = bm.strip().splitlines()  # the value of the last expression, echoed
    assert len(rows) == 2 and all("Who wrote Hamlet?" in r and r.startswith("<line ") for r in rows)


def test_grep_takes_an_invalid_regex_literally_and_says_when_nothing_matches(scripted):
    res, _ = _run(scripted, [repl("print(grep('moon?('))\nprint(grep('zebra'))\nprint(len(grep('moon')))"), "FINAL(x)"])
    lines = _cells(res)[0].splitlines()
    assert lines == ["(no matches)", "(no matches)", "20"]


@pytest.mark.parametrize("sandbox", SANDBOX)
def test_llm_classify_constrains_answers_to_labels_and_counts_in_code(scripted, sandbox):
    def sub(msgs):
        text = msgs[0]["content"]
        item = text.split("Text:\n", 1)[1]
        assert "Answer with exactly one of these labels: human being; numeric value; entity." in text
        if "Hamlet" in item:
            return "The label is Human Being."  # mapped to the label, case-insensitive
        return "numeric value"

    code = (
        "from collections import Counter\n"
        "texts = [l.split('Instance: ')[1] for l in context.splitlines()]\n"
        "found = llm_classify(texts, ['human being', 'numeric value', 'entity'], 'Which label?')\n"
        "Counter(found)"
    )
    res, _ = _run(scripted, [repl(code), "FINAL(done)"], sub=scripted(sub), sandbox=sandbox, concurrency=8)
    assert _cells(res)[0].strip() == "Counter({'numeric value': 20, 'human being': 10})"
    subs = res.trajectory.iterations[0].subcalls
    assert len(subs) == 30 and len({s.batch for s in subs}) == 1  # one concurrent batch


def test_unmatched_answers_are_marked_and_bad_labels_fail_with_one_line(scripted):
    sub = scripted(lambda msgs: "I cannot tell.")
    code = (
        "print(llm_map(['a', 'b'], 'Label it.', labels=['x', 'y']))\n"
        "try:\n    llm_classify(['a'], ['x', 'X'])\nexcept SubcallError as e:\n    print('ERR', e)"
    )
    res, _ = _run(scripted, [repl(code), "FINAL(done)"], sub=sub)
    first, err = _cells(res)[0].strip().splitlines()
    assert first == "['[unlabelled] I cannot tell.', '[unlabelled] I cannot tell.']"
    assert err.startswith("ERR") and "distinct" in err


def test_llm_map_batches_items_and_parses_numbered_answers(scripted):
    def sub(msgs):
        items = re.findall(r"^(\d+)\. (.*)$", msgs[0]["content"], re.M)
        return "\n".join(f"{n}: {'NUM' if 'moon' in t else 'HUM'}" for n, t in items[:-1])  # the last one unanswered

    code = "texts = [l.split('Instance: ')[1] for l in context.splitlines()][:5]\nprint(llm_map(texts, 'Kind?', batch=3))"
    res, _ = _run(scripted, [repl(code), "FINAL(done)"], sub=scripted(sub))
    assert _cells(res)[0].strip() == "['HUM', 'NUM', '[unanswered]', 'HUM', '[unanswered]']"
    assert len(res.trajectory.iterations[0].subcalls) == 2


def test_llm_reduce_and_summarize_map_then_combine(scripted):
    def sub(msgs):
        p = msgs[0]["content"]
        if p.startswith("Combine"):
            return "combined:" + str(p.count("Partial answer"))
        return "nothing relevant" if "Hamlet" not in p else "Shakespeare"

    code = "print(llm_reduce(chunks(context, 300), 'Who wrote Hamlet?'))\nprint(summarize(context, size=600))"
    res, _ = _run(scripted, [repl(code), "FINAL(done)"], sub=scripted(sub))
    red, summ = _cells(res)[0].strip().splitlines()
    n_with = sum("Hamlet" in c for c in re.findall(r"(?s).{1,300}(?:\n|$)", RECORDS))
    assert red.startswith("combined:") and int(red.split(":")[1]) >= 2 and n_with >= 2
    assert summ.startswith("combined:")


def test_a_block_shows_its_last_value_and_says_when_it_printed_nothing(scripted):
    res, root = _run(scripted, [repl("x = 41"), repl("x + 1"), "FINAL(42)"])
    calls = scripted.calls(root)
    assert "REPL output:\n```\n(no output)\n```" in calls[1][-1]["content"]
    assert "REPL output:\n```\n42\n```" in calls[2][-1]["content"]
    assert res.answer == "42"


def test_labels_parser_grammar_and_checks():
    labs = ["human being", "numeric value", "entity"]
    assert lb.match_label(" Entity. ", labs) == "entity"
    assert lb.match_label("'numeric value'", labs) == "numeric value"
    assert lb.match_label("Probably a human being, or an entity", labs) == "human being"
    assert lb.match_label("nonentity", labs) == "[unlabelled] nonentity"
    assert lb.gbnf(['say "hi"', "a\\b"]) == 'root ::= "say \\"hi\\"" | "a\\\\b"\n'
    assert lb.lm_kwargs("local/qwen2.5-coder-1.5b", labs) == {"rlm_labels": labs}
    assert lb.lm_kwargs("gpt-5-mini", labs) == {}
    for bad in ([], "abc", ["a", ""], ["a", "A"], ["x" * 201], [str(i) for i in range(65)]):
        with pytest.raises(ValueError):
            lb.check_labels(bad)


@pytest.mark.parametrize(
    "query,shape",
    [
        ("How many data points should be classified as label 'entity'? Give a number.", "count"),
        ("Which of the labels is the most common in the data?", "count"),
        ("List all pairs of user IDs where both users have at least one instance with a location.", "pairs"),
        ("What is the special magic number for amber-anchor mentioned in the provided text?", "lookup"),
        ("What is the passphrase of the silver fox?", "lookup"),
        ("In which town was the author of the novel 'Dune' born?", "multihop"),
    ],
)
def test_task_shape_rules(query, shape):
    assert task_shape(query) == shape


@pytest.mark.parametrize(
    "query,kind,code",
    [
        ("How many data points should be classified as label 'entity'? Give a number.", "count", "how many are 'negative'"),
        ("Which of the labels is the most common in the data? Give the label only.", "most", "answer = max(labels"),
        ("Which of the labels is the least common in the data?", "least", "answer = min(labels"),
        ("How many data points from user 28245 should be classified as label 'entity'?", "filter", "mine = [line for line"),
        ("Is label 'entity' more common, less common, or the same frequency as label 'location'?", "compare",
         "'more common than' if a > b"),
        ("Each line is one record. How many of the questions ask about a location? Answer with one number.", "yesno",
         "labels = ['yes', 'no']"),
    ],
)
def test_counting_example_matches_the_aggregate_the_query_asks_for(query, kind, code):
    """A small root copies the example's last step: a "most common" question shown the "how
    many" example answered with a count (seen: "20"), so each aggregate has its own variant."""
    assert task_shape(query) == "count" and count_kind(query) == kind
    info = {"type": "str", "total_chars": 100, "parts": [100]}
    msgs = initial_messages("small", system_prompt("small", info, 4000, 30000, 1, 0, True, ["m"], query=query), query, info)
    example = "\n".join(m["content"] for m in msgs[1:-1])
    assert code in example and "llm_classify(texts, labels" in example
    others = [c for k, (_, c, _, _) in examples._COUNT_VARIANTS.items() if k != kind]
    assert all(code not in c for c in others)


@pytest.mark.parametrize(
    "query,kind,code",
    [
        ("List all pairs of user IDs where both users have at least one instance with an entity or location.", "both",
         "good = sorted((u for u, got in labels_of.items()"),
        ("List all pairs of user IDs such that one user has exactly one instance with entity, and the other user has "
         "at least two instances with location.", "one_other", "for a in first for b in second if a != b"),
    ],
)
def test_pairs_example_matches_the_pair_condition(query, kind, code):
    """Shown only the symmetric example, the small root applied both users' conditions to every
    user of an asymmetric question (0 pairs): "one user ..., the other ..." has its own variant."""
    assert task_shape(query) == "pairs" and pairs_kind(query) == kind
    info = {"type": "str", "total_chars": 100, "parts": [100]}
    msgs = initial_messages("small", system_prompt("small", info, 4000, 30000, 1, 0, True, ["m"], query=query), query, info)
    example = "\n".join(m["content"] for m in msgs[1:-1])
    assert code in example and "FINAL_VAR(result)" in example
    assert all(code not in c for k, (_, c, _) in examples._PAIRS_VARIANTS.items() if k != kind)


def test_small_prompt_shows_the_worked_example_of_the_query_shape():
    info = {"type": "str", "total_chars": 100, "parts": [100]}
    q = "How many data points should be classified as label 'entity'?"
    system = system_prompt("small", info, 4000, 30000, 1, 0, True, ["m"], query=q)
    assert "llm_classify" in system and "labels EVERY record" in system
    msgs = initial_messages("small", system, q, info)
    example = "\n".join(m["content"] for m in msgs[1:-1])
    assert "llm_classify(texts, labels" in example and "Counter(found)" in example and "<line" not in example
    assert "look at a few lines" in turn_message("small", 1, 8, q)
    # the example gives the sub-LM the question's sentences about the labels (the whole question
    # biased it to the label the question names) and computes the answer
    # in code; later turns repeat the question (counting and pairs shapes only)
    assert "about + ' Which label" in example and "answer = counts[" in example
    assert turn_message("small", 3, 8, q).startswith(f"The question was: {q}\nTurn 3/8")
    assert "The question was" not in turn_message("small", 1, 8, q)
    assert "The question was" not in turn_message("small", 3, 8, "What is the passphrase of the red fox?")
    # without sub-calls: the look-up example, no sub-call helpers offered
    system = system_prompt("small", info, 4000, 30000, 1, 0, False, ["m"], query=q)
    assert "llm_classify" not in system and "grep(" in system
    assert "llm_classify" not in "\n".join(m["content"] for m in initial_messages("small", system, q, info, subcalls=False))
    # the standard style documents the helpers too
    std = system_prompt("standard", info, 4000, 30000, 1, 0, True, ["m"])
    assert all(f"`{h}(" in std for h in ("grep", "search", "chunks", "llm_map", "llm_classify", "llm_reduce", "summarize"))


def test_counter_and_defaultdict_are_pre_imported(scripted):
    """The embedded root dropped the example's `from collections import Counter` line and sent
    the same block (NameError) until the run stopped with status "repeated"."""
    code = "c = Counter(['a', 'a', 'b'])\nd = defaultdict(list)\nd['x'].append(1)\nprint(c['a'], dict(d))"
    res, _ = _run(scripted, [repl(code), "FINAL(done)"])
    assert _cells(res)[0].strip() == "2 {'x': [1]}"


def test_a_task_helper_name_rebound_by_the_model_keeps_its_value(scripted):
    """`parts = chunks(...)` is fine, and so is `chunks = chunks(...)`: a rebound task helper is
    the model's variable (only deleting it brings the helper back); protocol helpers such as
    llm_query are restored either way."""
    code = "chunks = chunks(context, 500)\nllm_query = None"
    res, _ = _run(scripted, [repl(code), repl("print(type(chunks).__name__, len(chunks) > 1, callable(llm_query))\ndel chunks"),
                             repl("print(callable(chunks))"), "FINAL(done)"])
    first, second, third = _cells(res)[:3]
    notices = [n for it in res.trajectory.iterations for n in it.notices]
    assert second.split() == ["list", "True", "True"]
    assert any("llm_query" in n for n in notices) and not any("chunks" in n and "restored" in n for n in notices[:1])
    assert third.strip() == "True"
