"""The break-even of compiled encoding: after how many texts ``encode(compile=True)`` (its compilation included)
overtakes eager ``encode`` on this device, for ``eval.compile=auto`` (embedgrid/evaluate/compile.py).

Per model: eager seconds per text (best of ``--repeats`` after a warm-up), the compiled first call (compilation
included) and compiled seconds per text (best of ``--repeats``); break-even texts = compilation overhead / (eager -
compiled seconds per text), or none when compiled is not faster per text. Baseline: eager ``encode`` at the same
batch size, dtype (float32, evaluation's default) and threads, in the same process.

    python benchmarks/compile_break_even.py --model smollm2_135m --texts 256

Prints a table and writes benchmarks/results/compile_break_even_<model>.json.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import benchmarks.offline  # noqa: E402,F401  (offline settings, before the heavy imports)
from benchmarks.encode import build_ours, corpus  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "smollm2_135m"], default="tiny")
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import torch

    from embedgrid.io import write_json

    torch.set_num_threads(args.threads)
    texts = corpus(args.texts)
    encoder = build_ours(args.model, args.max_length, "sdpa")
    encoder.encode(texts[:64], batch_size=args.batch_size)  # warm-up (kernels, allocator)
    eager = min(timed(lambda: encoder.encode(texts, batch_size=args.batch_size)) for _ in range(args.repeats))
    first = timed(lambda: encoder.encode(texts, batch_size=args.batch_size, compile=True))
    compiled = min(timed(lambda: encoder.encode(texts, batch_size=args.batch_size, compile=True))
                   for _ in range(args.repeats))
    per_text_eager, per_text_compiled = eager / args.texts, compiled / args.texts
    overhead = first - compiled
    saving = per_text_eager - per_text_compiled
    break_even = round(overhead / saving) if saving > 0 else None
    result = {
        "benchmark": "compile_break_even", "model": args.model, "texts": args.texts, "batch_size": args.batch_size,
        "max_length": args.max_length, "threads": args.threads, "repeats": args.repeats, "dtype": "float32",
        "baseline": "eager Encoder.encode, same texts, batch size, dtype and threads",
        "eager_s": round(eager, 3), "compiled_first_call_s": round(first, 3), "compiled_s": round(compiled, 3),
        "compile_overhead_s": round(overhead, 2), "speedup_per_text": round(eager / compiled, 3),
        "break_even_texts": break_even,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average": os.getloadavg()},
        "torch": torch.__version__,
    }
    print(f"compiled encoding break-even, model={args.model}, {args.texts} texts, batch {args.batch_size}, "
          f"{args.threads} thread(s), float32")
    print("| eager s | compiled first call s | compiled s | speed-up per text | compile overhead s "
          "| break-even texts |")
    print("|---|---|---|---|---|---|")
    print(f"| {eager:.2f} | {first:.2f} | {compiled:.2f} | {eager / compiled:.3f} | {overhead:.1f} | "
          f"{break_even if break_even is not None else 'never (compiled is not faster)'} |")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"compile_break_even_{args.model}.json"
    write_json(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
