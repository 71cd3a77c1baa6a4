"""`python -m embedgrid.slurm start|stop|status|env [--state-dir DIR] [--port N] [--gpus N]`.

`start` prints the line to paste into your shell (`export SLURM_CONF=... PATH=...`): every SLURM client needs
SLURM_CONF, and submitit the `sacct` shim that PATH puts first (embedgrid.slurm.sacct).
"""
from __future__ import annotations

import argparse
import sys

from embedgrid.slurm.cluster import DEFAULT_STATE_DIR, LocalCluster
from embedgrid.errors import SlurmError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embedgrid.slurm", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status", "env"])
    parser.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR),
                        help="config, state, logs and fake GPU devices (default: %(default)s)")
    parser.add_argument("--port", type=int, default=6817, help="slurmctld port; slurmd uses port+1")
    parser.add_argument("--gpus", type=int, default=2, help="fake GPUs on the node (gres gpu)")
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.state_dir, port=args.port, gpus=args.gpus)
    try:
        if args.command == "start":
            cluster.start()
            print(f"local SLURM cluster up (partition debug, {args.gpus} fake GPUs); in your shell run:",
                  file=sys.stderr)
            print(f"export SLURM_CONF={cluster.conf} PATH={cluster.bin_dir}:$PATH")
        elif args.command == "stop":
            cluster.stop()
            print(f"local SLURM cluster in {cluster.state_dir} stopped", file=sys.stderr)
        elif args.command == "env":
            print(f"export SLURM_CONF={cluster.conf} PATH={cluster.bin_dir}:$PATH")
        else:
            print(cluster.status())
    except SlurmError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
