"""How close the cost plan comes to a real grid's wall time (goal: within 2x on this machine).

A one-cell tiny pilot is run, `python -m analysis plan` prices a two-cell grid of the same recipe from it, the
grid is run, and the estimate is compared with the measured wall time (launch to exit). The baseline is the
measured run itself; the machine is shared, so the ratio is reported with the machine's load average.

    python benchmarks/cost_plan.py            # ~3-6 min on 2 cores

Prints a table and writes benchmarks/results/cost_plan.json.
"""
from __future__ import annotations

import json
import os
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
CELL = ["model=tiny", "train.max_steps=3", "train.batch_size=4", "train.checkpoint_every=2", "threads=1",
        "train.progress_bar=false", "logger=none", "eval=offline_small", "eval.tasks=[LeeDocumentSTS]",
        "pooling=mean", "analyze=false"]


def launch(args: list[str]) -> None:
    subprocess.run([sys.executable, str(ROOT / "launch.py"), "-m", *CELL, *args], cwd=ROOT, env=ENV, check=True,
                   capture_output=True, text=True)


def main() -> int:
    from analysis.cost_plan import ESTIMATE_FILE

    with tempfile.TemporaryDirectory() as tmp:
        pilot, grid = Path(tmp) / "pilot", Path(tmp) / "grid"
        launch(["seed=0", f"hydra.sweep.dir={pilot}"])
        subprocess.run([sys.executable, "-m", "analysis", "plan", "--no-power", "--grid", "pooling=mean",
                        "attention=causal", "--seeds", "2", "--cost-from", str(pilot), "--out", str(grid)],
                       cwd=ROOT, env=ENV, check=True, capture_output=True)
        estimate = json.loads((grid / ESTIMATE_FILE).read_text())["wall_s"]
        started = time.perf_counter()
        launch(["seed=1,2", f"hydra.sweep.dir={grid}"])
        actual = time.perf_counter() - started
    ratio = estimate / actual
    result = {"when": datetime.now().isoformat(timespec="seconds"), "estimate_s": round(estimate, 1),
              "actual_s": round(actual, 1), "estimate_over_actual": round(ratio, 3), "goal": "0.5 <= ratio <= 2",
              "met": 0.5 <= ratio <= 2.0, "load_average": os.getloadavg()}
    print(f"{'grid':<28}{'estimate s':>12}{'actual s':>10}{'ratio':>8}  goal 0.5-2")
    print(f"{'2 tiny cells, 1-cell pilot':<28}{estimate:>12.1f}{actual:>10.1f}{ratio:>8.2f}  "
          f"{'met' if result['met'] else 'NOT met'}")
    save(result, None, "cost_plan.json", quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
