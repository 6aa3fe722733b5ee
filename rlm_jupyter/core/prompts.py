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

SUBCALL_TOOLS = """\
- `llm_query(prompt: str, model: str | None = None) -> str`: ask a sub-LM a question about \
text you pass in the prompt. It sees nothing but that prompt, so put the relevant slice of \
`context` into it. It can take about {sub_window_chars:,} characters.
- `llm_query_batched(prompts: list[str], model: str | None = None) -> list[str]`: many \
sub-calls at once, run concurrently; much faster than a loop of `llm_query`.
- `rlm_query(prompt: str, context=None) -> str`: a recursive call to a fresh RLM with its own \
REPL{depth_note}.
"""

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
{subcall_tools}- `FINAL_VAR(name)`: mark a REPL variable as the final answer; `SHOW_VARS()`: list variables.
- Any Python library installed in the kernel; variables persist between turns.

Write code in ```repl fenced blocks; they run in order and you see their printed output (and \
the value of a block's last expression), cut to {max_output_chars:,} characters per block. \
Good strategies: first print a small part and the structure of `context`; search it with \
string methods or `re`; {subcall_strategy}keep intermediate results in variables.

When you are done, and only from outputs you have actually seen, answer outside any code \
block with FINAL(your answer) or, for a long answer stored in a variable, FINAL_VAR(variable_name). \
Do not write FINAL in the same reply as code whose output you have not seen yet."""

SMALL_SYSTEM = """\
You answer questions about a large text stored in the Python variable `context` ({info}). \
You cannot read `context` yourself. Each reply is exactly ONE of:
1. one ```repl code block that searches `context` for the exact words of the question and \
prints the lines it finds, or
2. FINAL(answer) when the printed output contains the answer.
Answer only from printed REPL output. Never guess. Never change `context`. \
{subcalls}"""

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
) -> str:
    """The root LM's system message.

    Args:
        style: ``"standard"`` or ``"small"``.
        context_info: from :func:`rlm_jupyter.core.context.describe_context`.
        max_output_chars: per-block cap on REPL output shown to the model (characters).
        sub_window_chars: approximate characters a sub-call prompt may hold.
        max_depth: the run's recursion limit; depth: this node's depth.
        subcalls: False for the paper's "no sub-calls" ablation (the prompt omits them).

    Raises:
        ValueError: unknown style.
    """
    if style == "small":
        return SMALL_SYSTEM.format(
            info=render_context_info(context_info).rstrip(".").replace("Your context is ", ""),
            subcalls=SMALL_SUBCALLS if subcalls else "",
        )
    if style != "standard":
        raise ValueError(f"unknown prompt style {style!r}; use 'standard' or 'small'")
    depth_note = (
        " (it can write code and call sub-LMs itself)"
        if depth + 1 < max_depth
        else " (at this depth it behaves like llm_query)"
    )
    tools = SUBCALL_TOOLS.format(sub_window_chars=sub_window_chars, depth_note=depth_note) if subcalls else NO_SUBCALL_TOOLS
    return STANDARD_SYSTEM.format(
        subcall_tools=tools,
        max_output_chars=max_output_chars,
        subcall_strategy=SUBCALL_STRATEGY if subcalls else "",
    )


def initial_messages(style: str, system: str, query: str, context_info: dict) -> list[dict]:
    """System message, the worked example (small style), and the first user message."""
    msgs: list[dict] = [{"role": "system", "content": system}]
    if style == "small":
        msgs.extend(SMALL_EXAMPLE)
        msgs.append({"role": "user", "content": f"Question: {query}"})
    else:
        msgs.append(
            {
                "role": "user",
                "content": f"{render_context_info(context_info)}\n\nQuery: {query}",
            }
        )
    return msgs


def turn_message(style: str, iteration: int, max_iterations: int) -> str:
    """The "Turn i/N" line that ends each user message (paper's per-turn prompt)."""
    if style == "small":
        if iteration == 1:
            return f"Turn {iteration}/{max_iterations}: search `context` for the question's exact words."
        return f"Turn {iteration}/{max_iterations}: answer with FINAL(answer) if the output answers the question, else search again."
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


NO_CODE_MESSAGE = (
    "Your reply had no ```repl code block and no FINAL(...). Write code in a ```repl block, "
    "or answer with FINAL(answer)."
)

FORCED_FINAL_MESSAGE = (
    "You are out of turns. From what you have seen so far, give your best final answer now as "
    "FINAL(answer), with no code."
)
