from rlm_jupyter.core.parsing import find_final, parse_reply


def test_repl_and_python_blocks_run_in_order_other_languages_do_not():
    text = "Look:\n```repl\nx = 1\n```\nthen\n```python\nprint(x)\n```\n```text\nnot code\n```\n```bash\nls\n```"
    p = parse_reply(text)
    assert p.code_blocks == ["x = 1\n", "print(x)\n"]
    assert "not code" in p.prose and "Look:" in p.prose
    assert p.final is None


def test_blocks_indented_inside_a_markdown_list_are_dedented():
    text = "1. First:\n   ```repl\n   for i in range(2):\n       print(i)\n   ```\n"
    assert parse_reply(text).code_blocks == ["for i in range(2):\n    print(i)\n"]


def test_final_outside_fences_is_found_but_not_inside_code():
    p = parse_reply("```repl\nFINAL('inside code')\n```\n")
    assert p.final is None
    p = parse_reply("Done.\nFINAL(The answer is f(x) = (1 + 2))")
    assert p.final.kind == "FINAL" and p.final.value == "The answer is f(x) = (1 + 2)"


def test_final_var_quotes_case_and_markdown_decoration():
    assert find_final('FINAL_VAR("result")').value == "result"
    assert find_final("**FINAL_VAR(result)**").kind == "FINAL_VAR"
    assert find_final("Final('Paris')").value == "Paris"
    assert find_final("the word final(x) mid-sentence is not a marker") is None


def test_unbalanced_final_takes_text_to_the_last_parenthesis():
    assert find_final("FINAL(answer (with a note)").value == "answer (with a note"


def test_empty_fence_is_skipped():
    assert parse_reply("```repl\n\n```\nFINAL(x)").code_blocks == []


def test_upper_case_marker_inside_a_line_counts():
    assert find_final("Best guess: FINAL(42)").value == "42"
    assert find_final("call myFINAL(3) here") is None
