"""Evaluation wall time: embedgrid's MTEB path against mteb evaluating a sentence-transformers model of the
same weights and pooling, task by task, on the offline suite, in one process.

Both sides embed the same token ids into the same vectors: the same checkpoint (LoRA off, as a zero-shot cell's
LoRA is a no-op), mean pooling, causal attention, L2-normalised output (sentence-transformers gets a Normalize
module), no EOS appended (embedgrid with ``append_eos=False``, as mteb hands texts to sentence-transformers),
the same max length, batch size, thread count and tasks (the eval config's subsets), no instructions, and
mteb's own evaluators with no result cache (every task runs). Per task the two run back to back, so load drift
hits both alike; the table shows both main scores, which should agree.

    python benchmarks/eval.py --model smollm2_135m                # eval=offline subsets
    python benchmarks/eval.py --model tiny --eval offline_small    # seconds

Prints a table and writes benchmarks/results/eval_<model>.json. Goal: ratio (sentence-transformers seconds /
embedgrid seconds over the suite) >= 1.0, i.e. ours no slower.
"""
from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import benchmarks.offline  # noqa: E402,F401  (offline settings, before the heavy imports)
from benchmarks.report import cpu, save, table  # noqa: E402

MAX_LENGTH = {"tiny": 64, "smollm2_135m": 64}  # conf/model/<model>.yaml max_length


def eval_settings(name: str, overrides: list[str]) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import embedgrid  # noqa: F401  (resolvers)
    import embedgrid.grid.schema  # noqa: F401  (config schema)

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"eval={name}", *overrides])
    return OmegaConf.to_container(cfg.eval, resolve=True)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(MAX_LENGTH), default="smollm2_135m")
    parser.add_argument("--eval", default="offline", help="conf/eval/<name>.yaml (default: offline)")
    parser.add_argument("--override", action="append", default=[], help="extra Hydra override, e.g. "
                        "eval.max_samples=100 (repeatable)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/eval_<model>.json)")
    args = parser.parse_args(argv)

    import mteb
    import torch
    from sentence_transformers.sentence_transformer.modules import Normalize

    from benchmarks.encode import CHECKPOINTS, build_ours, build_sentence_transformers
    from embedgrid.model.backbone import resolve_checkpoint
    from embedgrid.evaluate.model import MtebEncoder
    from embedgrid.evaluate.run import resolve_tasks

    logging.getLogger("mteb").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    settings = eval_settings(args.eval, args.override)
    max_length = MAX_LENGTH[args.model]
    ours = build_ours(args.model, max_length, "sdpa", append_eos=False)
    path = resolve_checkpoint(CHECKPOINTS[args.model])
    theirs = build_sentence_transformers(path, ours.dim, max_length, "sdpa")
    theirs.append(Normalize())  # mteb's classifiers are fit on the vectors as given: unit length on both sides

    def tasks():
        return resolve_tasks(settings["tasks"], max_samples=settings.get("max_samples"),
                             task_samples=settings.get("task_samples"), sample_seed=settings.get("sample_seed", 0))

    def timed(model, task) -> tuple[float, float]:
        start = time.perf_counter()
        result = mteb.evaluate(model, task, cache=None, encode_kwargs={"batch_size": args.batch_size},
                               show_progress_bar=False)
        return time.perf_counter() - start, float(result.task_results[0].get_score())

    for task in tasks():  # warm-up: file parsing and WordNet indexes are cached per process; both sides reuse them
        task.load_data()
    ours.encode(["warm-up text"] * args.batch_size, batch_size=args.batch_size)
    theirs.encode(["warm-up text"] * args.batch_size, batch_size=args.batch_size, show_progress_bar=False)
    rows = []
    for ours_task, their_task in zip(tasks(), tasks()):
        wrapper = MtebEncoder(ours, name=f"embedgrid/bench-{args.model}", revision="bench", batch_size=args.batch_size,
                              show_progress_bar=False)
        ours_s, ours_score = timed(wrapper, ours_task)
        their_s, their_score = timed(theirs, their_task)
        rows.append({"task": ours_task.metadata.name, "category": ours_task.metadata.type,
                     "embedgrid_s": round(ours_s, 2), "sentence_transformers_s": round(their_s, 2),
                     "ratio": round(their_s / ours_s, 3), "embedgrid_score": round(ours_score, 4),
                     "sentence_transformers_score": round(their_score, 4), "texts_encoded": wrapper.texts_encoded})
        print(f"{rows[-1]['task']}: embedgrid {ours_s:.1f} s, sentence-transformers {their_s:.1f} s", flush=True)
    total_ours = sum(r["embedgrid_s"] for r in rows)
    total_theirs = sum(r["sentence_transformers_s"] for r in rows)
    ratio = total_theirs / total_ours
    score_gap = max(abs(r["embedgrid_score"] - r["sentence_transformers_score"]) for r in rows)

    import sentence_transformers
    import transformers

    result = {
        "benchmark": "eval", "model": args.model, "checkpoint": path, "eval": args.eval, "overrides": args.override,
        "max_samples": settings.get("max_samples"), "batch_size": args.batch_size, "max_length": max_length,
        "threads": args.threads, "tasks": rows,
        "total_s": {"embedgrid": round(total_ours, 2), "sentence_transformers": round(total_theirs, 2)},
        "ratio": round(ratio, 3), "goal_ratio": 1.0, "meets_goal": ratio >= 1.0,
        "max_score_difference": round(score_gap, 4),
        "baseline": f"mteb {mteb.__version__} evaluating sentence-transformers {sentence_transformers.__version__} "
                    "(models.Transformer(checkpoint) + Pooling(mean) + Normalize) on the same task objects, no cache",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "mteb": mteb.__version__,
                     "sentence_transformers": sentence_transformers.__version__, "python": platform.python_version()},
        "machine": cpu(load=False),
    }
    print(f"\nevaluation wall time, model={args.model} zero-shot mean pooling, eval={args.eval} "
          f"(max_samples {settings.get('max_samples')}), batch {args.batch_size}, max_length {max_length}, "
          f"{args.threads} thread(s), one run")
    table(("task", "category", "embedgrid s", "sentence-transformers s", "ratio", "embedgrid score", "ST score"),
          ((r["task"], r["category"], f"{r['embedgrid_s']:.1f}", f"{r['sentence_transformers_s']:.1f}",
            f"{r['ratio']:.2f}", f"{r['embedgrid_score']:.4f}", f"{r['sentence_transformers_score']:.4f}")
           for r in rows))
    print(f"| **total** | | **{total_ours:.1f}** | **{total_theirs:.1f}** | **{ratio:.2f}** (goal >= 1.0) | | |")
    print(f"largest main-score difference between the two: {score_gap:.4f} (same vectors: should be ~0)")
    save(result, args.out, f"eval_{args.model}.json")
    return result


if __name__ == "__main__":
    main()
