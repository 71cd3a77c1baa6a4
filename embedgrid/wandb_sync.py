"""``python -m embedgrid.wandb_sync SWEEP_DIR [--dry-run]``: upload every offline W&B run of a sweep.

Each cell logs offline into ``<cell>/wandb/offline-run-<time>-<id>/``; a requeued or resumed cell adds another
directory with the same run id, and ``wandb sync`` merges them into that one run. This finds them all (cells,
the sweep's analysis run, requeued segments) and hands them to W&B's own ``wandb sync`` in time order.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def offline_runs(sweep_dir: str | Path) -> list[Path]:
    """Every ``offline-run-*`` directory below ``sweep_dir``, oldest first (so resumed segments follow their run)."""
    runs = [p for p in Path(sweep_dir).rglob("offline-run-*") if p.is_dir() and any(p.glob("*.wandb"))]
    return sorted(runs, key=lambda p: (p.name.split("-")[2:3], str(p)))


def sync_command(runs: list[Path], dry_run: bool = False) -> list[str]:
    """W&B's own CLI; it syncs several directories of one run id (resumed segments) in order of start time."""
    return [sys.executable, "-m", "wandb", "sync", "--yes", *(["--dry-run"] if dry_run else []), *map(str, runs)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embedgrid.wandb_sync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="a sweep directory (multirun/<grid>) or a single cell directory")
    parser.add_argument("--dry-run", action="store_true", help="list the runs (wandb sync --dry-run), upload nothing")
    args = parser.parse_args(argv)
    runs = offline_runs(args.sweep_dir)
    if not runs:
        print(f"no offline W&B runs below {args.sweep_dir} (cells log offline with logger=wandb, the default)")
        return 1
    ids = sorted({run.name.rsplit("-", 1)[-1] for run in runs})
    print(f"{len(runs)} offline run directories, {len(ids)} W&B runs, below {args.sweep_dir}")
    command = sync_command(runs, dry_run=args.dry_run)
    print("+ " + " ".join(command))
    return subprocess.call(command)


if __name__ == "__main__":
    raise SystemExit(main())
