"""Training-data memory: peak RSS of reading a large JSONL file lazily (``data=jsonl`` / mixture sources).

Writes JSONL files of two sizes (default 100 MB and 1 GB; rows of about 1 KB built from WordNet glosses), then,
each in a fresh process: imports (baseline RSS), builds ``JsonlRows`` (one validating pass, byte offsets kept),
and reads ``--steps`` training batches through ``train.batches.batch_rows``, the loop's own path. The named
baseline in the same run is the eager alternative, every row held as a ``Row`` in a list, on the small file.
Peak RSS is the kernel's VmHWM watermark.

    python benchmarks/data_memory.py                          # 100 MB and 1 GB under /tmp/embedgrid-data-bench
    python benchmarks/data_memory.py --sizes-mb 20 200 --dir /scratch/bench

Prints a table and writes benchmarks/results/data_memory.json. Goal: the lazy reader's peak grows by less than
5 % of the file-size growth (memory independent of file size, up to 16 bytes of index per row).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.report import host, save, table  # noqa: E402

MODES = ("lazy", "eager")


def write_file(path: Path, megabytes: int, seed: int = 0) -> int:
    """A JSONL file of about ``megabytes`` MB; returns its row count (rows are distinct by their number)."""
    from embedgrid.data.wordnet import load_synsets

    if path.exists() and path.stat().st_size >= megabytes * 1_000_000:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    glosses = sorted({s.definition for s in load_synsets().values() if s.definition})
    rng = random.Random(seed)
    target, rows, written = megabytes * 1_000_000, 0, 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        while written < target:
            record = {"query": f"{rows}: " + rng.choice(glosses),
                      "positive": " ".join(rng.choices(glosses, k=6)),
                      "negatives": [" ".join(rng.choices(glosses, k=6))]}
            line = json.dumps(record) + "\n"
            f.write(line)
            written += len(line.encode())
            rows += 1
    tmp.rename(path)
    return rows


def status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status (Linux only)")


def worker(mode: str, path: str, steps: int, batch_size: int) -> dict:
    from embedgrid.data.jsonl import JsonlRows
    from embedgrid.train.batches import batch_rows

    baseline = status_mib("VmRSS")
    started = time.perf_counter()
    rows = JsonlRows(path)
    if mode == "eager":
        rows = list(rows)
    load_s = time.perf_counter() - started
    after_load = status_mib("VmHWM")
    started = time.perf_counter()
    seen = 0
    for step in range(steps):
        seen += len(batch_rows(rows, batch_size, step, seed=0))
    return {"mode": mode, "file": path, "file_mb": round(os.path.getsize(path) / 1e6, 1), "rows": len(rows),
            "baseline_rss_mib": round(baseline, 1), "peak_after_load_mib": round(after_load, 1),
            "peak_rss_mib": round(status_mib("VmHWM"), 1), "load_s": round(load_s, 1),
            "batches_s": round(time.perf_counter() - started, 2), "rows_read": seen}


def measure(mode: str, path: Path, steps: int, batch_size: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", mode, "--file", str(path), "--steps", str(steps),
                          "--batch-size", str(batch_size)], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"{mode} on {path} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs=2, default=[100, 1000])
    parser.add_argument("--dir", default="/tmp/embedgrid-data-bench", help="where the JSONL files are written")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/data_memory.json)")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.file, args.steps, args.batch_size)))
        return {}

    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    small_mb, large_mb = args.sizes_mb
    files = {}
    for mb in args.sizes_mb:
        files[mb] = directory / f"rows_{mb}mb.jsonl"
        started = time.perf_counter()
        write_file(files[mb], mb)
        print(f"  {files[mb]} ({files[mb].stat().st_size / 1e6:.0f} MB) ready in {time.perf_counter() - started:.0f} s",
              flush=True)
    runs = [measure("eager", files[small_mb], args.steps, args.batch_size)]  # the named baseline
    for mb in args.sizes_mb:
        runs.append(measure("lazy", files[mb], args.steps, args.batch_size))
    for r in runs:
        print(f"  {r['mode']:<5} {r['file_mb']:>7.0f} MB: peak {r['peak_rss_mib']:.0f} MiB", flush=True)
    eager, small, large = runs
    growth = large["peak_rss_mib"] - small["peak_rss_mib"]
    file_growth_mib = (large["file_mb"] - small["file_mb"]) * 1e6 / 2**20
    table(("reader", "file MB", "rows", "RSS after imports MiB", "peak after load MiB",
           f"peak after {args.steps} batches MiB", "load s", "batches s"),
          ((r["mode"], f"{r['file_mb']:.0f}", f"{r['rows']:,}", f"{r['baseline_rss_mib']:.0f}",
            f"{r['peak_after_load_mib']:.0f}", f"{r['peak_rss_mib']:.0f}", r["load_s"], r["batches_s"]) for r in runs),
          lead="\n")
    print(f"\nlazy peak growth {small['file_mb']:.0f} -> {large['file_mb']:.0f} MB: {growth:.1f} MiB for "
          f"{file_growth_mib:.0f} MiB more file ({growth / file_growth_mib:.2%}; goal < 5 %)")
    print(f"eager list of rows on the {small['file_mb']:.0f} MB file: peak {eager['peak_rss_mib']:.0f} MiB "
          f"(lazy: {small['peak_rss_mib']:.0f} MiB)")
    result = {"benchmark": "data_memory", "steps": args.steps, "batch_size": args.batch_size, "runs": runs,
              "lazy_growth_mib": round(growth, 1), "file_growth_mib": round(file_growth_mib, 1),
              "growth_fraction": round(growth / file_growth_mib, 5), "goal_met": growth / file_growth_mib < 0.05,
              "machine": host()}
    save(result, args.out, "data_memory.json")
    if not args.keep:
        for path in files.values():
            path.unlink()
    return result


if __name__ == "__main__":
    main()
