"""``python -m embedgrid.wandb_sync SWEEP_DIR [--dry-run] [--timeout S]``: upload every offline W&B run of a sweep.

Each cell logs offline into ``<cell>/wandb/offline-run-<time>-<id>/``; a requeued or resumed cell adds another
directory with the same run id, and ``wandb sync`` merges them into that one run. This finds them all (cells,
the sweep's analysis run, requeued segments) and hands each W&B run (its segments in time order) to W&B's own
``wandb sync``, one run at a time with a time limit, so a server that stops answering costs one run's limit, not
the whole sweep. Before any upload the server is tried (a TCP connection to its host, bounded): when it cannot be
reached, nothing is started and the message says which server, why, and that the runs stay on disk.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_TIMEOUT_S = 300
CONNECT_TIMEOUT_S = 10


def offline_runs(sweep_dir: str | Path) -> list[Path]:
    """Every ``offline-run-*`` directory below ``sweep_dir``, oldest first (so resumed segments follow their run)."""
    runs = [p for p in Path(sweep_dir).rglob("offline-run-*") if p.is_dir() and any(p.glob("*.wandb"))]
    return sorted(runs, key=lambda p: (p.name.split("-")[2:3], str(p)))


def runs_by_id(runs: list[Path]) -> dict[str, list[Path]]:
    """W&B run id -> its segment directories, in the order of ``runs`` (time order)."""
    grouped: dict[str, list[Path]] = {}
    for run in runs:
        grouped.setdefault(run.name.rsplit("-", 1)[-1], []).append(run)
    return grouped


def sync_command(runs: list[Path], dry_run: bool = False) -> list[str]:
    """W&B's own CLI; it syncs several directories of one run id (resumed segments) in order of start time."""
    return [sys.executable, "-m", "wandb", "sync", "--yes", *(["--dry-run"] if dry_run else []), *map(str, runs)]


def base_url() -> str:
    """The W&B server the upload goes to (``WANDB_BASE_URL``, else W&B's own settings)."""
    if os.environ.get("WANDB_BASE_URL"):
        return os.environ["WANDB_BASE_URL"]
    import wandb

    return str(wandb.Settings().base_url)


def unreachable(url: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why the server at ``url`` cannot be reached (name lookup and TCP connect, bounded by ``timeout``), or None."""
    parsed = urlparse(url)
    if not parsed.hostname:
        return f"{url!r} is not a URL (set WANDB_BASE_URL=https://host)"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    outcome: list[str | None] = []

    def attempt():
        try:
            socket.create_connection((parsed.hostname, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"{type(error).__name__}: {error}")

    worker = threading.Thread(target=attempt, daemon=True)  # name lookup has no timeout of its own
    worker.start()
    worker.join(timeout + 1)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


def run_bounded(command: list[str], timeout: float) -> int | None:
    """Run ``command`` in its own process group; its exit status, or None after killing the group at ``timeout``."""
    process = subprocess.Popen(command, start_new_session=True)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # wandb sync starts a service process: end the whole group
        process.wait()
        return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embedgrid.wandb_sync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="a sweep directory (multirun/<grid>) or a single cell directory")
    parser.add_argument("--dry-run", action="store_true", help="list the runs (wandb sync --dry-run), upload nothing")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds one run's upload may take before it is stopped (default {DEFAULT_TIMEOUT_S})")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout={args.timeout:g} must be > 0 seconds")
    runs = offline_runs(args.sweep_dir)
    if not runs:
        print(f"no offline W&B runs below {args.sweep_dir} (cells log offline with logger=wandb, the default)")
        return 1
    grouped = runs_by_id(runs)
    print(f"{len(runs)} offline run directories, {len(grouped)} W&B runs, below {args.sweep_dir}")
    if not args.dry_run:
        url = base_url()
        why = unreachable(url)
        if why:
            print(f"cannot reach the W&B server at {url} ({why}); nothing was uploaded and the runs stay offline "
                  f"below {args.sweep_dir}. Check the network or WANDB_BASE_URL, then run this command again.",
                  file=sys.stderr)
            return 2
    failed = []
    for run_id, segments in grouped.items():
        command = sync_command(segments, dry_run=args.dry_run)
        print("+ " + " ".join(command), flush=True)
        status = run_bounded(command, args.timeout)
        if status is None:
            print(f"run {run_id}: stopped after {args.timeout:g} s (--timeout); the next run follows", file=sys.stderr)
        elif status:
            print(f"run {run_id}: wandb sync exited {status}", file=sys.stderr)
        if status != 0:
            failed.append(run_id)
    if failed:
        print(f"{len(failed)} of {len(grouped)} W&B runs not synced ({', '.join(failed)}); run this command again "
              "to retry them", file=sys.stderr)
        return 1
    print(f"{len(grouped)} W&B runs synced")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
