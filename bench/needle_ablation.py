"""Needle with distractors over War and Peace: does the embedded model follow the protocol?

Task (``../shared/LOCAL_MODEL.md``, second probe): one line "The passphrase of the
<adjective> <noun> is <7 digits>." hidden in a slice of *War and Peace*, plus ten lines of the
same shape for other adjective/noun pairs and ten "Ticket <7 digits> was sold at the ..."
lines; the question names the adjective and noun. Success = the gold number appears in the
answer (RULER's string match).

Ablation: the small-model prompt (worked example) and the llama.cpp grammar, each on/off.

    python -m bench.needle_ablation --seeds 5 --chars 400000
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import sys
import time

BOOK = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "books" / "pg2600_war_and_peace.txt"
ADJECTIVES = ["amber", "brave", "crimson", "dusty", "eager", "frosty", "gentle", "hollow", "ivory", "jolly", "keen", "lunar"]
NOUNS = ["falcon", "harbor", "lantern", "meadow", "orchid", "pebble", "quarry", "raven", "saddle", "tunnel", "violin", "willow"]
PLACES = ["market", "station", "theatre", "harbour gate", "old mill", "church fair"]


def make_task(seed: int, chars: int = 400_000, book: pathlib.Path = BOOK) -> dict:
    """A needle task: ``{"context": str, "question": str, "gold": str, "seed": int}``.

    Args:
        seed: fixes the slice, the needle, the distractors and their positions.
        chars: length of the haystack slice of the book (characters).
    """
    rng = random.Random(seed)
    text = book.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    start = rng.randrange(0, max(1, len(text) - chars))
    lines = text[start : start + chars].split("\n")
    pairs = rng.sample([(a, n) for a in ADJECTIVES for n in NOUNS], 11)
    (adj, noun), others = pairs[0], pairs[1:]
    gold = str(rng.randrange(1_000_000, 10_000_000))
    inserts = [f"The passphrase of the {adj} {noun} is {gold}."]
    inserts += [f"The passphrase of the {a} {n} is {rng.randrange(1_000_000, 10_000_000)}." for a, n in others]
    inserts += [f"Ticket {rng.randrange(1_000_000, 10_000_000)} was sold at the {rng.choice(PLACES)}." for _ in range(10)]
    for line in inserts:
        lines.insert(rng.randrange(len(lines)), line)
    return {
        "context": "\n".join(lines),
        "question": f"What is the passphrase of the {adj} {noun}?",
        "gold": gold,
        "seed": seed,
    }


def score(answer: str | None, gold: str) -> float:
    """1.0 if ``gold`` appears in ``answer`` (case-insensitive), else 0.0."""
    return float(gold.lower() in (answer or "").lower())


def run(seeds: int, chars: int, variants: list[tuple[str, str]], max_iterations: int = 5) -> list[dict]:
    """Run every (prompt_style, constrain_root) variant on ``seeds`` tasks; one dict per run."""
    from rlm_jupyter import RLM

    rows = []
    for style, constrain in variants:
        for seed in range(seeds):
            task = make_task(seed, chars)
            rlm = RLM(prompt_style=style, constrain_root=constrain, max_iterations=max_iterations)
            t0 = time.monotonic()
            res = rlm.completion(task["question"], task["context"])
            rows.append(
                {
                    "prompt_style": style,
                    "grammar": constrain,
                    "seed": seed,
                    "score": score(res.answer, task["gold"]),
                    "answer": res.answer,
                    "gold": task["gold"],
                    "status": res.status,
                    "iterations": len(res.trajectory.iterations),
                    "wall_seconds": round(time.monotonic() - t0, 2),
                    "lm_seconds": round(res.usage.seconds, 2),
                    "root_input_tokens": res.usage.input_tokens,
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--chars", type=int, default=400_000)
    ap.add_argument("--out", default="bench/results/needle_ablation.json")
    args = ap.parse_args(argv)
    variants = [("small", "on"), ("small", "off"), ("standard", "on"), ("standard", "off")]
    rows = run(args.seeds, args.chars, variants)
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(rows, indent=1))
    print(f"{'prompt':<10}{'grammar':<9}{'solved':>8}{'mean wall s':>13}")
    for style, constrain in variants:
        sel = [r for r in rows if r["prompt_style"] == style and r["grammar"] == constrain]
        solved = sum(r["score"] for r in sel)
        wall = sum(r["wall_seconds"] for r in sel) / max(1, len(sel))
        print(f"{style:<10}{constrain:<9}{f'{solved:.0f}/{len(sel)}':>8}{wall:>13.1f}")


if __name__ == "__main__":
    main()
