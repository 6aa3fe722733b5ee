"""Prompts of the root LM.

Two styles:

* ``"standard"`` for capable models: describes the REPL environment, the sub-call functions
  and the final-answer protocol (paper arXiv 2512.24601 §2 and Appendix; wording ours).
* ``"small"`` for small local models (``../shared/LOCAL_MODEL.md``): a short, firm system
  prompt ("you cannot read context; search for the exact words of the question; answer only
  from printed output") plus ONE worked example given as prior chat turns. Without the
  example, the 1.5B embedded model solved 0 of 6 needle tasks; with it, 5 of 5.
"""

from __future__ import annotations

from .context import render_context_info
from .examples import SMALL_STEP, example_for, helpers_doc, task_shape, turn_text

SUBCALL_TOOLS = """\
- `llm_query(prompt: str, model: str | None = None) -> str`: ask a sub-LM a question about \
text you pass in the prompt. It sees nothing but that prompt, so put the relevant slice of \
`context` into it. It can take about {sub_window_chars:,} characters.
- `llm_query_batched(prompts: list[str], model: str | None = None) -> list[str]`: many \
sub-calls at once, run concurrently; much faster than a loop of `llm_query`.
- `rlm_query(prompt: str, context=None) -> str`: a recursive call to a fresh RLM with its own \
REPL{depth_note}.
{models_note}"""

SUBCALL_STRATEGY = (
    "split it into chunks of a few tens of thousands of characters and use `llm_query_batched` "
    "on the chunks; verify a candidate answer with a fresh sub-call; prefer a few large sub-calls "
    "over many tiny ones (sub-calls cost time and money); "
)

NO_SUBCALL_TOOLS = "- No sub-LM calls in this run: work with code alone.\n"

STANDARD_SYSTEM = """\
You answer a query about a context that is too large to read directly. The context lives in a \
Python REPL environment (a Jupyter kernel) as the variable `context`. You cannot see it: you \
see only what your code prints. Work step by step, one reply per turn.

In the REPL you have:
- `context`: the data (see its description below).
{subcall_tools}{helpers}- `FINAL_VAR(name)`: mark a REPL variable as the final answer; `SHOW_VARS()`: list variables.
- Any Python library installed in the kernel; variables persist between turns.

Write code in ```repl fenced blocks; they run in order and you see their printed output (and \
the value of a block's last expression), cut to {max_output_chars:,} characters per block. \
Good strategies: first print a small part and the structure of `context`; search it with \
string methods or `re`; {subcall_strategy}keep intermediate results in variables.

When you are done, and only from outputs you have actually seen, answer outside any code \
block with FINAL(your answer) or, for a long answer stored in a variable, FINAL_VAR(variable_name). \
Do not write FINAL in the same reply as code whose output you have not seen yet. FINAL or \
FINAL_VAR called inside a code block counts only if that block runs without an error."""

SMALL_SYSTEM = """\
You answer questions about a large text stored in the Python variable `context` ({info}). \
You cannot read `context` yourself. Each reply is exactly ONE of:
1. one ```repl code block that {step}, or
2. FINAL(answer) when the printed output contains the answer.
Answer only from printed REPL output. Never guess. Never change `context`.
{helpers}"""

SMALL_SUBCALLS = "`llm_query(prompt)` asks a helper model about a text you pass to it."

# One worked example, given as prior chat turns (user, assistant, user, assistant).
SMALL_EXAMPLE = [
    {
        "role": "user",
        "content": "Question: What is the passphrase of the silver fox?\nTurn 1/5: search `context` for the question's exact words.",
    },
    {
        "role": "assistant",
        "content": "```repl\nfor i, line in enumerate(context.splitlines()):\n"
        "    if 'silver fox' in line.lower():\n        print(f'<line {i}>', line)\n```",
    },
    {
        "role": "user",
        "content": "REPL output:\n```\n<line 1207> The passphrase of the silver fox is 4417093.\n"
        "<line 5530> She saw a silver fox near the river.\n```\nTurn 2/5: answer with FINAL(answer) if the output answers the question.",
    },
    {"role": "assistant", "content": "FINAL(4417093)"},
]


def system_prompt(
    style: str,
    context_info: dict,
    max_output_chars: int,
    sub_window_chars: int,
    max_depth: int,
    depth: int,
    subcalls: bool = True,
    models: list[str] | None = None,
    query: str = "",
    tools: str = "",
    answer_format: str = "",
) -> str:
    """The root LM's system message.

    Args:
        style: ``"standard"`` or ``"small"``.
        context_info: from :func:`rlm_jupyter.core.context.describe_context`.
        max_output_chars: per-block cap on REPL output shown to the model (characters).
        sub_window_chars: approximate characters a sub-call prompt may hold.
        max_depth: the run's recursion limit; depth: this node's depth.
        subcalls: False for the paper's "no sub-calls" ablation (the prompt omits them).
        models: the model ids ``llm_query(model=...)`` accepts (the first is the default);
            listed in the prompt when there is more than one.
        query: the query (small style: picks the task shape, see :mod:`.examples`).
        tools: lines describing the run's host tools (:func:`.tools.prompt_lines`), listed with
            the REPL's helpers; answer_format: a paragraph on the answer's required form (typed
            answers, :func:`answer_format_text`), appended.

    Raises:
        ValueError: unknown style.
    """
    extra = f"\n\n{answer_format.strip()}" if answer_format.strip() else ""
    if style == "small":
        return SMALL_SYSTEM.format(
            info=render_context_info(context_info).rstrip(".").replace("Your context is ", ""),
            step=SMALL_STEP[small_shape(query, subcalls)],
            helpers=helpers_doc("small", subcalls) + (f"\n{tools}" if tools else ""),
        ) + extra
    if style != "standard":
        raise ValueError(f"unknown prompt style {style!r}; use 'standard' or 'small'")
    depth_note = (
        " (it can write code and call sub-LMs itself)"
        if depth + 1 < max_depth
        else " (at this depth it behaves like llm_query)"
    )
    models_note = ""
    if models and len(models) > 1:
        models_note = f"  `model` may be one of {', '.join(repr(m) for m in models)} (default the first); no other.\n"
    subcall_tools = (
        SUBCALL_TOOLS.format(sub_window_chars=sub_window_chars, depth_note=depth_note, models_note=models_note)
        if subcalls
        else NO_SUBCALL_TOOLS
    )
    return STANDARD_SYSTEM.format(
        subcall_tools=subcall_tools,
        helpers=helpers_doc("standard", subcalls) + tools,
        max_output_chars=max_output_chars,
        subcall_strategy=SUBCALL_STRATEGY if subcalls else "",
    ) + extra


def small_shape(query: str, subcalls: bool = True) -> str:
    """The task shape of ``query`` for the small style (:func:`.examples.task_shape`); without
    sub-calls, counting and pairs fall back to the look-up example (they need ``llm_classify``)."""
    shape = task_shape(query)
    return "lookup" if not subcalls and shape in ("count", "pairs") else shape


def initial_messages(style: str, system: str, query: str, context_info: dict, subcalls: bool = True) -> list[dict]:
    """System message, the worked example for the query's task shape (small style), and the
    first user message."""
    msgs: list[dict] = [{"role": "system", "content": system}]
    if style == "small":
        msgs.extend(example_for(small_shape(query, subcalls), SMALL_EXAMPLE, query))
        msgs.append({"role": "user", "content": f"Question: {query}"})
    else:
        msgs.append(
            {
                "role": "user",
                "content": f"{render_context_info(context_info)}\n\nQuery: {query}",
            }
        )
    return msgs


def turn_message(style: str, iteration: int, max_iterations: int, query: str = "", subcalls: bool = True) -> str:
    """The "Turn i/N" line that ends each user message (paper's per-turn prompt); small style:
    worded for the task shape of ``query`` (:func:`.examples.turn_text`: counting and pairs
    repeat the question)."""
    if style == "small":
        return turn_text(small_shape(query, subcalls), iteration, max_iterations, query)
    if iteration == 1:
        return (
            f"Turn {iteration}/{max_iterations}: you have not looked at `context` yet. "
            "Look at it in the REPL before answering. Your next action:"
        )
    return f"Turn {iteration}/{max_iterations}. Your next action:"


def feedback_message(outputs: list[str], notes: list[str]) -> str:
    """The user message carrying each block's (already truncated) REPL output."""
    parts = []
    for i, text in enumerate(outputs, 1):
        label = "REPL output" if len(outputs) == 1 else f"REPL output of block {i}"
        parts.append(f"{label}:\n```\n{text.rstrip() or '(no output)'}\n```")
    parts.extend(notes)
    return "\n\n".join(parts)


ANSWER_FORMAT = """\
Answer format: the final answer must be JSON matching this JSON schema:
```json
{schema}
```
Build it in the REPL as a dict (or list) of plain values (str, int, float, bool, None, list, \
dict) and answer with FINAL_VAR(variable_name), or write the JSON itself in FINAL(...). An \
answer that does not match is refused: you are told what is wrong and can fix it."""


def answer_format_text(schema_json: str) -> str:
    """The system prompt's paragraph on a typed answer: ``schema_json`` is the JSON schema's text."""
    return ANSWER_FORMAT.format(schema=schema_json)


NO_CODE_MESSAGE = (
    "Your reply had no ```repl code block and no FINAL(...). Write code in a ```repl block, "
    "or answer with FINAL(answer)."
)

FORCED_FINAL_MESSAGE = (
    "You are out of turns. From what you have seen so far, give your best final answer now as "
    "FINAL(answer), with no code."
)
