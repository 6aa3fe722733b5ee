"""Record the runs the teaching notebooks replay: the embedded model, once per task.

    .venv/bin/python scripts/record_demos.py            # every recording missing from notebooks/recordings/
    .venv/bin/python scripts/record_demos.py --force 02_aggregation   # re-record one

Each task runs the embedded offline model (``local/qwen2.5-coder-1.5b``, llama.cpp on the CPU;
no API key) exactly once, with the LM cache off so the timings are real, and writes:

- ``notebooks/recordings/<name>.jsonl`` — the run's event stream (``RLMResult.to_jsonl``); the
  notebooks replay it with the ``replay/<path>`` model, which re-executes the recorded code in a
  fresh kernel;
- ``notebooks/recordings/<name>.meta.json`` — the query, the true answer where known, whether the
  model got it right, wall seconds and the machine's load while recording.

The tasks are the notebooks' own (their texts come from ``notebooks/demo_data.py``). A task the
model gets wrong is recorded as it happened: the notebooks say so. CPU heavy (minutes per task
on 2 cores): run it once, not in a loop.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "notebooks" / "recordings"
sys.path.insert(0, str(ROOT / "notebooks"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# The embedded model's window while recording: 8,192 tokens, as on Binder (binder/start).
os.environ.setdefault("RLM_JUPYTER_LOCAL_N_CTX", "8192")

import demo_data  # noqa: E402

MODEL = "local/qwen2.5-coder-1.5b"

DOCS_QUERY = "In a generator function, what exception does the return statement cause to be raised?"
DOCS_TRUTH = "StopIteration"
AGG_LABEL = "location"
AGG_QUERY = (
    "Each line of the context is one record; its 'Instance' is a question. How many of the questions "
    "ask about a location (a place such as a city, a country, a mountain or a river)? "
    "Answer with one number."
)


def _meta(name: str, **fields) -> None:
    fields.setdefault("root_model", MODEL)
    fields.update(
        recorded=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    )
    (OUT / f"{name}.meta.json").write_text(json.dumps(fields, indent=1) + "\n", encoding="utf-8")


def _run(name: str, query: str, context, truth: str, **rlm_kwargs) -> None:
    from rlm_jupyter import RLM

    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    kwargs = {"model": MODEL, "cache": False, **rlm_kwargs}
    res = RLM(**kwargs).completion(query, context)
    wall = time.monotonic() - t0
    res.to_jsonl(OUT / f"{name}.jsonl")
    correct = res.answer is not None and truth.lower() in str(res.answer).lower()
    _meta(
        name, query=query, truth=truth, answer=res.answer, status=res.status, correct=correct,
        iterations=len(res.trajectory.iterations), subcalls=len(res.trajectory.subcalls),
        wall_seconds=round(wall, 1), lm_seconds=round(res.usage.seconds, 1),
        input_tokens=res.usage.input_tokens, output_tokens=res.usage.output_tokens,
        context_chars=len(context), load_average=[round(load0, 2), round(os.getloadavg()[0], 2)],
        settings={k: v for k, v in rlm_kwargs.items() if k not in ("model", "sub_model")},
        root_model=kwargs["model"], sub_model=kwargs.get("sub_model") or kwargs["model"],
    )
    print(f"{name}: {res.status}, answer {res.answer!r} (truth {truth!r}), {wall:.0f} s", file=sys.stderr)


def record_docs() -> None:
    """01: a look-up question over the Python docs the root never reads."""
    _run("01_docs", DOCS_QUERY, demo_data.python_docs(), DOCS_TRUTH, max_iterations=6)


def record_stuffed() -> None:
    """01: the same question with the docs stuffed into the same model's prompt, cut to its window."""
    from rlm_jupyter.lm import local
    from rlm_jupyter.lm.client import LMClient
    from rlm_jupyter.rlm import run_sync

    local.register()
    docs = demo_data.python_docs()
    window = local.n_ctx()
    budget = window - 600  # room for the question and a short reply
    chars = int(budget * 3.2)  # these docs run about 3.5-3.9 characters per token: this cut fits
    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    kept = docs[:chars]
    messages = [{"role": "user", "content": f"{kept}\n\nQuestion about the text above: {DOCS_QUERY}\nAnswer briefly."}]
    # One call; prompt processing alone takes minutes on 2 busy cores, hence the long timeout.
    reply = run_sync(LMClient(num_retries=0, timeout_seconds=3600).acomplete(MODEL, messages, temperature=0.0, max_tokens=200))
    wall = time.monotonic() - t0
    at = docs.find(DOCS_TRUTH)
    _meta(
        "01_stuffed", query=DOCS_QUERY, truth=DOCS_TRUTH, answer=reply.text,
        correct=DOCS_TRUTH.lower() in reply.text.lower(), window_tokens=window,
        context_chars=len(docs), kept_chars=len(kept), kept_fraction=round(len(kept) / len(docs), 4),
        truth_first_at_char=at, truth_in_kept_text=0 <= at < len(kept),
        input_tokens=reply.usage.input_tokens, output_tokens=reply.usage.output_tokens,
        wall_seconds=round(wall, 1), load_average=[round(load0, 2), round(os.getloadavg()[0], 2)],
    )
    print(f"01_stuffed: {reply.text!r}, {wall:.0f} s", file=sys.stderr)


def record_aggregation() -> None:
    """02: counting over every line (OOLONG-style)."""
    text, counts = demo_data.labelled_questions(40, seed=0)
    _run("02_aggregation", AGG_QUERY, text, str(counts[AGG_LABEL]), max_iterations=6)


# The strategy the paper describes for dense tasks (one sub-call per record, then count), written
# by hand: a SCRIPTED root (labelled as such in notebook 02), with the embedded model answering
# every sub-call for real.
STRATEGY_SCRIPT = [
    "I look at the records first.\n```repl\nlines = context.splitlines()\nprint(len(lines), 'records; the first:', lines[0])\n```",
    "Every line matters, so I ask a sub-model about each question, all in one batch, and count.\n```repl\n"
    "questions = [line.split('Instance: ', 1)[1] for line in lines]\n"
    "prompts = ['Does this question ask for a location (a place such as a city, a country, a mountain or a river)? '\n"
    "           'Answer only yes or no.\\nQuestion: ' + q for q in questions]\n"
    "answers = llm_query_batched(prompts)\n"
    "votes = [a.strip().lower().startswith('yes') for a in answers]\n"
    "for q, a in list(zip(questions, answers))[:10]:\n"
    "    print(repr(a[:12]), '<-', q)\n"
    "count = sum(votes)\n"
    "print('yes:', count, 'of', len(votes))\n```",
    "FINAL_VAR(count)",
]


def record_strategy() -> None:
    """02: the per-record strategy, scripted root + the embedded model as sub-model."""
    from rlm_jupyter.lm.scripted import script

    text, counts = demo_data.labelled_questions(40, seed=0)
    root = script("record-demos-strategy", list(STRATEGY_SCRIPT))
    # The embedded model answers one call at a time: 40 queued sub-calls need far more than the
    # default 120-s block timeout on 2 busy cores.
    _run("02_strategy", AGG_QUERY, text, str(counts[AGG_LABEL]), model=root, sub_model=MODEL, max_iterations=4, timeout=1800)


TASKS = {
    "01_docs": record_docs,
    "02_aggregation": record_aggregation,
    "02_strategy": record_strategy,
    "01_stuffed": record_stuffed,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help=f"tasks to record (default: every missing one of {', '.join(TASKS)})")
    ap.add_argument("--force", action="store_true", help="re-record even if the recording exists")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in TASKS]
    if unknown:
        ap.error(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
    from rlm_jupyter.lm import local

    if not local.is_available():
        print("error: the embedded model is not installed (run scripts/install.sh)", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.names or list(TASKS):
        if (OUT / f"{name}.meta.json").exists() and not args.force:
            print(f"{name}: recorded already (--force to redo)", file=sys.stderr)
            continue
        TASKS[name]()
    for p in sorted(OUT.iterdir()):
        print(f"{p.stat().st_size:>9,} bytes  {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
