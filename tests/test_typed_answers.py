"""Typed answers (issue 14): ``answer_schema`` (a pydantic model or a JSON schema dict) is told to
the root; a final answer that does not match is refused with what is wrong and the run goes on;
``result.answer`` is the validated object, ``result.answer_text`` the text. Scripted root models
drive a real environment kernel, with the sandbox (where it works here) and without; ``%%rlm
--schema`` in an in-process shell."""

import pytest
from pydantic import BaseModel
from traitlets import TraitError

from conftest import repl
from rlm_jupyter import RLM
from rlm_jupyter.answers import TypedRLMResult
from rlm_jupyter.core import events as ev

SANDBOX = ["auto", "off"]  # auto = bubblewrap where it works here (as in CI), off = a plain child process


class Person(BaseModel):
    name: str
    age: int
    languages: list[str] = []


COUNT_SCHEMA = {
    "type": "object",
    "properties": {"count": {"type": "integer"}, "unit": {"enum": ["lines", "words"]}},
    "required": ["count", "unit"],
    "additionalProperties": False,
}


def _user_messages(calls, i):
    return [m["content"] for m in calls[i] if m["role"] == "user"]


@pytest.mark.parametrize("sandbox", SANDBOX)
def test_pydantic_schema_refuses_a_mismatch_then_returns_the_validated_object(scripted, sandbox):
    root = scripted([
        'FINAL({"name": "Ada"})',  # age missing: refused, the run goes on
        repl("p = {'name': 'Ada', 'age': 'thirty-six'}\nFINAL_VAR('p')"),  # wrong type, set in the REPL: refused
        repl("p['age'] = 36\np['languages'] = ('English', 'French')\nprint(sorted(p))"),
        "FINAL_VAR(p)",  # the dict's repr: a Python literal, validated
    ])
    seen = []
    res = RLM(model=root, sub_model=root, sandbox=sandbox).completion("Who?", "ctx", on_event=seen.append, answer_schema=Person)
    assert isinstance(res, TypedRLMResult) and res.status == "done"
    assert res.answer == Person(name="Ada", age=36, languages=["English", "French"])
    assert res.answer_text == "{'name': 'Ada', 'age': 36, 'languages': ('English', 'French')}" and res.schema is Person
    calls = scripted.calls(root)
    assert len(calls) == 4
    system = calls[0][0]["content"]
    assert "JSON schema" in system and '"age"' in system and '"languages"' in system and "FINAL_VAR" in system
    told = _user_messages(calls, 1)[-1]
    assert "refused" in told and "- age: Field required" in told
    told = _user_messages(calls, 2)[-1]
    assert "Final answer set." in told and "- age: Input should be a valid integer" in told and "'thirty-six'" in told
    refusals = [e for e in seen if e.kind == ev.NOTICE and e.data["message"].startswith("answer refused")]
    finals = [e for e in seen if e.kind == ev.FINAL]
    assert len(refusals) == 2 and len(finals) == 1 and finals[0].data["source"] == "FINAL_VAR"
    assert "Person" in repr(res) and "Ada" in repr(res)


def test_json_schema_dict_gives_the_parsed_json(scripted):
    root = scripted([
        'FINAL({"count": "three", "unit": "lines", "extra": 1})',
        'FINAL(```json\n{"count": 3, "unit": "lines"}\n```)',
    ])
    res = RLM(model=root, sub_model=root, sandbox="off").completion("How many?", "a\nb\nc", answer_schema=COUNT_SCHEMA)
    assert res.status == "done" and res.answer == {"count": 3, "unit": "lines"}
    told = _user_messages(scripted.calls(root), 1)[-1]
    assert "- (the whole answer): Additional properties are not allowed ('extra' was unexpected)" in told
    assert "- count: 'three' is not of type 'integer'" in told
    assert '"additionalProperties": false' in scripted.calls(root)[0][0]["content"]


def test_a_forced_answer_that_does_not_match_leaves_no_answer(scripted):
    root = scripted(["FINAL(not json at all)", "FINAL(still not)"])
    res = RLM(model=root, sub_model=root, sandbox="off", max_iterations=1).completion("q", "ctx", answer_schema=COUNT_SCHEMA)
    assert res.status == "max_iterations" and res.answer is None and res.answer_text == "still not"
    assert "does not match the schema" in res.message


def test_plain_types_and_untyped_runs(scripted):
    root = scripted([repl("FINAL_VAR([3, 1, 2])")])
    res = RLM(model=root, sub_model=root, sandbox="off").completion("q", "ctx", answer_schema=list[int])
    assert res.answer == [3, 1, 2] and res.answer_text == "[3, 1, 2]"
    root = scripted([repl("FINAL_VAR((3, 1, 2))")])  # a tuple's repr: a JSON array for a dict schema
    res = RLM(model=root, sub_model=root, sandbox="off").completion(
        "q", "ctx", answer_schema={"type": "array", "items": {"type": "integer"}})
    assert res.status == "done" and res.answer == [3, 1, 2] and res.answer_text == "(3, 1, 2)"
    root = scripted(["FINAL(plain words)"])
    res = RLM(model=root, sub_model=root, sandbox="off").completion("q", "ctx")
    assert res.answer == "plain words" and not isinstance(res, TypedRLMResult)
    assert "JSON schema" not in scripted.calls(root)[0][0]["content"]


def test_bad_schemas_are_refused_before_any_run(scripted):
    root = scripted(["FINAL(never)"])
    with pytest.raises(TraitError, match="RLM.answer_schema is not usable"):
        RLM(answer_schema=Person(name="x", age=1))
    with pytest.raises(ValueError, match="not a valid JSON schema: at type"):
        RLM(model=root, sub_model=root, sandbox="off").completion("q", "ctx", answer_schema={"type": "objekt"})
    with pytest.raises(TypeError, match="answer_schema must be a pydantic model class"):
        RLM(model=root, sub_model=root, sandbox="off").completion("q", "ctx", answer_schema="Person")
    assert scripted.calls(root) == []


def test_magic_schema_option_validates_the_answer(ip, scripted, capsys):
    root = scripted(['FINAL({"name": "Grace", "age": "85"})'])
    ip.user_ns.update(docs="x", Person=Person)
    ip.run_cell_magic("rlm", f"docs --out typed -m {root} --sub-model {root} --schema Person -q", "Who?")
    typed = ip.user_ns["typed"]
    assert typed.answer == Person(name="Grace", age=85) and typed.answer_text == '{"name": "Grace", "age": "85"}'
    capsys.readouterr()
    ip.run_line_magic("rlm", "runs")  # lists the run by its answer's text
    assert '{"name": "Grace", "age": "85"}'[:60] in capsys.readouterr().out.replace("'{", "{")
    ip.run_line_magic("rlm", "close all")
