"""Write a JSONL log with the OFFICIAL ``rlms`` package (run in the bench venv, never imported
by the project): ``<rlms venv python> official_log_writer.py OUT_DIR``.

A scripted client stands in for the provider (as ``bench/overhead/official_worker.py`` does):
the root writes code that calls ``llm_query`` and ``rlm_query`` (max_depth=2, so a child RLM
with its own logged trajectory), then sets ``answer``. Prints the log file's path.
"""

import sys

import rlm.core.rlm as rlm_core
from rlm.clients.base_lm import BaseLM
from rlm.core.types import ModelUsageSummary, UsageSummary
from rlm.logger import RLMLogger

ROOT = [
    "Let me look.\n```repl\nprint(len(context))\nfirst = context.split()[0]\nprint(first)\n```",
    "```repl\nsub = llm_query('Say the word: ' + first)\nkid = rlm_query('What is 6*7?')\nprint(sub, kid)\n```",
    "```repl\nanswer['content'] = sub + ' ' + kid\nanswer['ready'] = True\n```",
]
CHILD = ["```repl\nanswer['content'] = str(6*7)\nanswer['ready'] = True\n```"]


class Scripted(BaseLM):
    def __init__(self):
        super().__init__(model_name="scripted-root")
        self.root_i = 0
        self.calls = 0

    def completion(self, prompt, model=None):
        self.calls += 1
        if isinstance(prompt, str):
            return "HELLO"
        text = str(prompt)
        if "What is the first word" not in text:  # the child RLM (its question is its context)
            return CHILD[0]
        r = ROOT[min(self.root_i, len(ROOT) - 1)]
        self.root_i += 1
        return r

    async def acompletion(self, prompt, model=None):
        return self.completion(prompt, model)

    def get_usage_summary(self):
        return UsageSummary(model_usage_summaries={self.model_name: self.get_last_usage()})

    def get_last_usage(self):
        return ModelUsageSummary(total_calls=self.calls, total_input_tokens=10 * self.calls, total_output_tokens=5 * self.calls, total_cost=0.001 * self.calls)


client = Scripted()
rlm_core.get_client = lambda backend, kwargs: client
logger = RLMLogger(log_dir=sys.argv[1])
r = rlm_core.RLM(backend="openai", backend_kwargs={"model_name": "scripted-root"}, environment="local",
                 max_depth=2, max_iterations=5, logger=logger)
res = r.completion("alpha beta gamma", root_prompt="What is the first word, shouted?")
print(res.response, file=sys.stderr)
print(logger.log_file_path)
