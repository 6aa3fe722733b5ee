"""A scripted stand-in model for the quality smoke run (CI): no LM, but every code path of the
runner runs (litellm provider, kernel, scoring). As the RLM root it greps the context the way a
good model would; as the base model or a sub-model it answers ``Answer: 0``."""

from __future__ import annotations

import re

from rlm_jupyter.lm.scripted import script


def _reply(messages: list[dict]) -> str:
    system = str(messages[0].get("content") or "") if messages else ""
    if "REPL" not in system:  # base model or sub-call
        return "Answer: 0"
    turns = sum(1 for m in messages if m["role"] == "assistant")
    query = next((str(m["content"]) for m in messages if m["role"] == "user" and "special magic number" in str(m["content"])), "")
    key = re.search(r"magic number for ([\w-]+)", query)
    if turns == 0:
        if key:
            return f"```repl\nimport re\nprint(re.findall(r'magic numbers for {key.group(1)} is: (\\d+)', context))\n```"
        return "```repl\nprint(len(context.splitlines()))\nprint(context[:200])\n```"
    last = str(messages[-1]["content"])
    nums = re.findall(r"\d+", last.split("Turn")[0])
    return f"FINAL({nums[0] if nums else 0})"


def smoke_model() -> str:
    """Register and return the model id ``scripted/bench-smoke``."""
    return script("bench-smoke", _reply)
