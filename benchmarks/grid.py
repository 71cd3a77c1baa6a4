"""Per-cell fixed overhead of the grid runner, against named baselines measured in the same run.

  * ``import embedgrid`` in a fresh interpreter vs bare ``python -c pass`` (goal: < 2 s).
  * process start -> first training step of a ``model=tiny`` cell through the real CLI (``launch.py``), vs the
    floor every cell pays: a fresh interpreter importing torch + transformers + peft + mteb (goal: <= 10 s).
    The first step is detected by its checkpoint (``train.checkpoint_every=1``); the process is then stopped.
  * on the local SLURM cluster (root + slurm-wlm only): submit -> job start of a one-cell
    ``hydra/launcher=local_slurm`` sweep (the job's submitit log line "Starting"), and submit -> first training
    step, vs a plain submitit no-op job's submit -> start and submit -> result.

    python benchmarks/grid.py                 # all of it (~2-4 min on 2 busy cores)
    python benchmarks/grid.py --no-slurm

Prints a table and writes benchmarks/results/grid.json.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.offline import child_env  # noqa: E402
from benchmarks.report import save  # noqa: E402
ENV = child_env(ROOT)
CELL = ["model=tiny", "train.max_steps=50", "train.batch_size=4", "train.checkpoint_every=1", "threads=1",
        "train.progress_bar=false", "logger=none", "eval.tasks=[LeeDocumentSTS]"]


def python_seconds(code: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=ENV, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def first_step_seconds(args: list[str], cell_glob: str, timeout: float = 600) -> float:
    """Spawn launch.py, return seconds until checkpoints/last says step >= 1, then stop the process."""
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), *args], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while time.time() - t0 < timeout:
            for meta in Path("/").glob(cell_glob.lstrip("/") + "/checkpoints/last/meta.json"):
                return meta.stat().st_mtime - t0
            if proc.poll() is not None:
                raise RuntimeError(f"launch.py exited ({proc.returncode}) before a step: {proc.stderr.read()[-2000:]}")
            time.sleep(0.05)
        raise TimeoutError("no training step")
    finally:
        if "SLURM_CONF" in ENV:  # the cell's job would run on after its sweep process is gone
            subprocess.run(["scancel", "--quiet", "--user", str(os.getuid())], env=ENV, capture_output=True)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


def local_rows(work: Path, repeats: int) -> list[dict]:
    rows = []
    bare = python_seconds("pass", repeats)
    imp = python_seconds("import embedgrid", repeats)
    rows.append({"measure": "import embedgrid (fresh interpreter)", "seconds": round(imp, 3),
                 "baseline": "python -c pass", "baseline_s": round(bare, 3), "ratio": round(imp / bare, 2),
                 "goal": "< 2 s", "met": imp < 2.0})
    floor = python_seconds("import torch, transformers, peft, mteb", 1)
    for label, extra in (("default WordNet rows", []), ("data.loader.limit=512", ["data.loader.limit=512"])):
        run_dir = work / f"single-{len(rows)}"
        seconds = first_step_seconds([*CELL, *extra, f"hydra.run.dir={run_dir}"], str(run_dir))
        rows.append({"measure": f"process start -> first training step, tiny ({label})",
                     "seconds": round(seconds, 2), "baseline": "python -c 'import torch, transformers, peft, mteb'",
                     "baseline_s": round(floor, 2), "ratio": round(seconds / floor, 2), "goal": "<= 10 s",
                     "met": seconds <= 10.0})
    return rows


def submitit_noop(folder: Path) -> tuple[float, float]:
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(timeout_min=5, slurm_partition="debug", cpus_per_task=1, mem_gb=1)
    t0 = time.time()
    job = executor.submit(time.time)
    started = job.result()
    return started - t0, time.time() - t0


def job_start_time(sweep: Path, timeout: float = 300) -> float:
    pattern = re.compile(r"submitit INFO \((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\) - Starting")
    deadline = time.time() + timeout
    while time.time() < deadline:
        for log in sweep.glob(".submitit/*/*_log.out"):
            match = pattern.search(log.read_text(errors="ignore"))
            if match:
                return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        time.sleep(0.1)
    raise TimeoutError("job never started")


def slurm_rows(work: Path) -> list[dict]:
    from embedgrid.slurm import LocalCluster

    cluster = LocalCluster(work / "slurm", port=26817, gpus=2)
    cluster.start()
    ENV.update(cluster.env)
    os.environ.update(cluster.env)
    try:
        noop_start, noop_result = submitit_noop(work / "noop")
        sweep = work / "slurm-sweep"
        t0 = time.time()
        step = first_step_seconds(["-m", *CELL, "data.loader.limit=512", "pooling=mean", "analyze=false",
                                   "hydra/launcher=local_slurm", f"hydra.sweep.dir={sweep}"], f"{sweep}/tiny-*")
        start = job_start_time(sweep) - t0
    finally:
        cluster.stop()
    return [
        {"measure": "local SLURM: launch.py -m -> job start (1 cell)", "seconds": round(start, 2),
         "baseline": "submitit no-op: submit -> job start", "baseline_s": round(noop_start, 2),
         "ratio": round(start / noop_start, 2), "goal": "", "met": None},
        {"measure": "local SLURM: launch.py -m -> first training step", "seconds": round(step, 2),
         "baseline": "submitit no-op: submit -> result", "baseline_s": round(noop_result, 2),
         "ratio": round(step / noop_result, 2), "goal": "<= 10 s", "met": step <= 10.0},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-slurm", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="embedgrid-bench-") as tmp:
        work = Path(tmp)
        rows = local_rows(work, args.repeats)
        can_slurm = os.geteuid() == 0 and Path("/usr/sbin/slurmctld").exists()
        if not args.no_slurm and can_slurm:
            rows += slurm_rows(work)
        elif not args.no_slurm:
            print("local SLURM part skipped: needs root and Debian slurm-wlm", file=sys.stderr)
    width = max(len(r["measure"]) for r in rows)
    print(f"\n{'measure':<{width}}  {'seconds':>8}  {'baseline':>9}  {'ratio':>6}  goal      baseline")
    for r in rows:
        met = "" if r["met"] is None else (" ok" if r["met"] else " MISSED")
        print(f"{r['measure']:<{width}}  {r['seconds']:>8.2f}  {r['baseline_s']:>9.2f}  {r['ratio']:>6.2f}  "
              f"{(r['goal'] + met):<9} {r['baseline']}")
    result = {"benchmark": "grid", "rows": rows, "load_average": os.getloadavg(), "cpus": os.cpu_count(),
              "python": platform.python_version(), "machine": platform.machine(), "time": time.time()}
    out = save(result, None, "grid.json", quiet=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; wrote {out}")


if __name__ == "__main__":
    main()
