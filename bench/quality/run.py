"""``python -m bench quality``: generate tasks, run each method, score, print, save JSON + PNG.

The same command works for any litellm model id (``--model gpt-5-mini``,
``--model anthropic/claude-haiku-4-5``, ...); by default the embedded offline model.
Results are written after every task, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

from rlm_jupyter.lm import local
from rlm_jupyter.lm.client import context_window_tokens

from ..common import RESULTS_DIR, machine_info, write_json
from . import methods, oolong, pairs, report, sniah
from .tasks import Task

DEFAULT_LENGTHS = [8192, 16384, 32768]
SMOKE_LENGTHS = [1024]


def make_tasks(kinds: list[str], lengths: list[int], seeds: int, pairs_tasks: list[int] | None,
               first_seed: int = 0) -> list[Task]:
    """Tasks for every kind × length × seed (seeds ``first_seed`` .. ``first_seed + seeds - 1``;
    Pairs: one per task id, seeds cycling), ordered seed by seed so that an interrupted run
    already covers every length."""
    out = []
    for seed in range(first_seed, first_seed + seeds):
        for kind in kinds:
            for length in lengths:
                if kind == "pairs":
                    ids = list(pairs_tasks or range(1, 21))
                    out.extend(pairs.make(seed, length, tid) for i, tid in enumerate(ids) if i % seeds == seed - first_seed)
                elif kind == "sniah":
                    out.append(sniah.make(seed, length, "books"))
                elif kind == "sniah_code":
                    out.append(sniah.make(seed, length, "code"))
                else:
                    out.append(oolong.make(seed, length))
    return out


def score(task: Task, answer: str | None) -> float:
    """The paper's score for the task's kind (0..1)."""
    if task.kind.startswith("sniah"):
        return sniah.score(answer, task.gold)
    if task.kind == "oolong":
        return oolong.score(answer, task.gold)
    return pairs.score(answer, task.gold)


def run(a: argparse.Namespace) -> dict:
    """Run the quality benchmark for the options of ``python -m bench quality``."""
    if a.smoke:
        from .smoke_model import smoke_model

        model = sub_model = smoke_model()
        lengths = a.lengths or SMOKE_LENGTHS
        seeds, ptasks = 1, a.pairs_tasks or [1]
    else:
        model = a.model or local.MODEL_ID
        sub_model = a.sub_model or model
        lengths = a.lengths or DEFAULT_LENGTHS
        seeds, ptasks = a.seeds, a.pairs_tasks
    methods.prepare_model(model)
    window = a.window or context_window_tokens(model) or 128_000
    t_gen = time.perf_counter()
    tasks = make_tasks(a.tasks, lengths, seeds, ptasks, 0 if a.smoke else a.first_seed)
    result = {
        "benchmark": "quality", "smoke": a.smoke, "model": model, "sub_model": sub_model,
        "base_window": window, "methods": a.methods, "lengths": lengths, "seeds": seeds,
        "max_iterations": a.max_iterations, "machine": machine_info(),
        "generation_seconds": time.perf_counter() - t_gen, "rows": [], "summary": [],
    }
    out = a.out or str(RESULTS_DIR / f"quality-{'smoke-' if a.smoke else ''}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json")
    print(f"{len(tasks)} tasks x {len(a.methods)} methods, model {model}; results -> {out}", file=sys.stderr, flush=True)
    for i, task in enumerate(tasks, 1):
        for method in a.methods:
            if method == "base":
                o = methods.run_base(task, model, window)
            elif method == "summary":
                o = methods.run_summary(task, model, window)
            elif method == "codeact":
                o = methods.run_codeact(task, model, window, max_iterations=a.max_iterations, max_seconds=a.max_seconds)
            else:
                o = methods.run_rlm(task, model, sub_model, subcalls=method == "rlm",
                                    max_iterations=a.max_iterations, max_seconds=a.max_seconds)
            row = {"task": task.header(), "method": method, "score": score(task, o.answer), **dataclasses.asdict(o)}
            row["answer"] = (o.answer or "")[:2000] if o.answer is not None else None
            result["rows"].append(row)
            print(f"[{i}/{len(tasks)}] {task.kind} {task.length} seed {task.seed} {task.meta.get('qtype') or task.meta.get('task_id') or ''} "
                  f"{method}: score {row['score']:.2f} status {o.status} wall {o.wall_seconds:.1f}s "
                  f"answer {str(o.answer)[:60]!r} gold {str(task.gold)[:40]}", file=sys.stderr, flush=True)
            result["summary"] = report.aggregate(result["rows"])
            write_json(result, "quality", out)
    print(report.render(result))
    if not a.no_plot:
        print(report.plot(result, pathlib.Path(out).with_suffix(".png")))
    print(f"JSON: {out}")
    result["json_path"] = out
    return result
