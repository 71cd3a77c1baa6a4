"""Evaluation on several ranks: wall time of one evaluation with 1 process against 2 gloo processes (1 thread
each), the same encoder and tasks, and whether the scores agree.

Every rank evaluates: each mteb encode call's texts are split over the ranks, balanced by token count, and the
vectors gathered (embedgrid/evaluate/model.py); mteb scores on every rank. Baseline: the same evaluation in one
process, run in the same invocation. Goal: wall ratio (2 processes / 1) <= 0.6 with equal scores (1e-5).

    python benchmarks/eval_ranks.py --model tiny --max-samples 100

Prints a table and writes benchmarks/results/eval_ranks_<model>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import benchmarks.offline  # noqa: E402,F401  (offline settings, before the heavy imports)

TASKS = ["FoodSearchRetrieval", "FoodConceptSearchRetrieval", "RottenTomatoesPlotRetrieval", "ChatterbotQARetrieval",
         "WordNetReverseDictionaryRetrieval", "LeeDocumentSTS"]
GOAL = 0.6


def evaluate(model: str, max_samples, cell_dir: str, world) -> tuple[dict, float]:
    import torch

    from benchmarks.encode import build_ours
    from embedgrid.evaluate.run import evaluate_encoder

    torch.manual_seed(0)
    encoder = build_ours(model, 128, "sdpa")
    start = time.perf_counter()
    scores, _ = evaluate_encoder(encoder, {"tasks": TASKS, "max_samples": max_samples, "progress_bar": False,
                                           "compile": False},
                                 cell_dir, name="embedgrid/eval-ranks", revision="r0", world=world)
    return {t: e["main_score"] for t, e in scores.items()}, time.perf_counter() - start


def _worker(rank: int, size: int, init_file: str, model: str, max_samples, cell_dir: str, out: str) -> None:
    import torch
    import torch.distributed as dist

    from embedgrid.train.distributed import current_world

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        evaluate(model, 8, f"{cell_dir}-warm", current_world())  # the same in-process warm-up as the 1-process run
        scores, seconds = evaluate(model, max_samples, cell_dir, current_world())
        if rank == 0:
            Path(out).write_text(json.dumps({"scores": scores, "seconds": seconds}))
    finally:
        dist.destroy_process_group()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "smollm2_135m"], default="tiny")
    parser.add_argument("--max-samples", type=int, default=100, help="per task (queries); 0: whole tasks")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import torch
    import torch.multiprocessing as mp

    from embedgrid.io import write_json
    from embedgrid.train.distributed import World

    torch.set_num_threads(1)
    max_samples = args.max_samples or None
    with tempfile.TemporaryDirectory() as tmp:
        evaluate(args.model, 8, f"{tmp}/warm", World())  # warm caches (package data, tokenizer) for both
        one, one_s = evaluate(args.model, max_samples, f"{tmp}/one", World())
        start = time.perf_counter()
        mp.spawn(_worker, args=(2, f"{tmp}/init", args.model, max_samples, f"{tmp}/two", f"{tmp}/two.json"),
                 nprocs=2, join=True)
        spawn_s = time.perf_counter() - start
        two = json.loads(Path(f"{tmp}/two.json").read_text())
    diff = max(abs(one[t] - two["scores"][t]) for t in TASKS)
    ratio = two["seconds"] / one_s
    result = {"benchmark": "eval_ranks", "model": args.model, "tasks": TASKS, "max_samples": max_samples,
              "threads_per_process": 1, "seconds_1_process": round(one_s, 2),
              "seconds_2_processes": round(two["seconds"], 2), "seconds_2_processes_with_spawn": round(spawn_s, 2),
              "wall_ratio": round(ratio, 3), "goal": GOAL, "meets_goal": ratio <= GOAL and diff <= 1e-5,
              "max_score_diff": diff, "scores_1_process": one, "scores_2_processes": two["scores"],
              "baseline": "the same evaluation in one process, same invocation",
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "load_average": os.getloadavg()}}
    print(f"evaluation on ranks, model={args.model}, {len(TASKS)} tasks (max_samples {max_samples}), 1 thread each")
    print("| processes | seconds | ratio |\n|---|---|---|")
    print(f"| 1 | {one_s:.1f} | 1.000 |")
    print(f"| 2 | {two['seconds']:.1f} | {ratio:.3f} (goal <= {GOAL}) |")
    print(f"max |score difference| = {diff:.2e}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"eval_ranks_{args.model}.json"
    write_json(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
