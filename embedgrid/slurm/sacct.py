"""``sacct`` for the local cluster, which has no accounting database (slurmdbd).

submitit learns job states by polling ``sacct -o JobID,State,NodeList --parsable2 -j ID ...``. Without slurmdbd
that call fails, so every poll logs "Bypassing sacct error" (and sacct's stderr), and a job cancelled with
``scancel`` is never seen to finish: the sweep waits for it forever. ``LocalCluster`` puts this shim first on
the clients' PATH (``<state>/bin/sacct``). It answers that one query from what the cluster does keep: squeue for
jobs the controller still knows (queued, running, or ended less than ``MinJobAge`` ago) and the job-completion
log (jobcomp/filetxt) for the rest; a live squeue state wins over an older completion line, so a requeued job
reads as pending again. ``sacct -c`` cannot do this: it reports an array task by its raw job id. Any other use
of sacct goes to the real one.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

FIELDS = ("JobID", "State", "NodeList")
ENTRY = re.compile(r"(\w+)=(.*?)(?= \w+=|\s*$)")


def completion_states(log: Path) -> dict[str, tuple[str, str]]:
    """{job id as submitit names it ("12" or "12_3"): (state, nodes)} from a jobcomp/filetxt log, last line wins."""
    states: dict[str, tuple[str, str]] = {}
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return states
    for line in lines:
        entry = dict(ENTRY.findall(line))
        if "JobId" not in entry or "JobState" not in entry:
            continue
        array, task = entry.get("ArrayJobId", ""), entry.get("ArrayTaskId", "")
        job = f"{array}_{task}" if array and task.isdigit() else entry["JobId"]
        states[job] = (entry["JobState"], entry.get("NodeList", ""))
    return states


def queue_states(squeue_output: str) -> dict[str, tuple[str, str]]:
    """{job id: (state, nodes)} from ``squeue -h -r -t all -o %i|%T|%N`` (array tasks one per line)."""
    states = {}
    for line in squeue_output.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0]:
            states[parts[0]] = (parts[1], parts[2])
    return states


def answer(jobs: list[str], fields: list[str], completed: dict, queued: dict) -> str:
    """sacct's --parsable2 table for ``jobs`` (main ids: every array task of one is listed)."""
    wanted = {j.split("_")[0] for j in jobs}
    merged = {**completed, **queued}
    rows = ["|".join(fields)]
    for job, (state, nodes) in sorted(merged.items()):
        if job.split("_")[0] in wanted:
            values = {"JobID": job, "State": state, "NodeList": nodes}
            rows.append("|".join(values[f] for f in fields))
    return "\n".join(rows) + "\n"


def parse(argv: list[str]):
    """(jobs, fields) of a query this shim answers, or None for anything else."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-o", "--format")
    parser.add_argument("-j", "--jobs", action="append", default=[])
    parser.add_argument("--parsable2", "-P", action="store_true")
    try:
        args, rest = parser.parse_known_args(argv)
    except SystemExit:
        return None
    fields = (args.format or "").split(",")
    if rest or not args.parsable2 or not args.jobs or not fields or any(f not in FIELDS for f in fields):
        return None
    return [j for group in args.jobs for j in group.split(",") if j], fields


def main(argv: list[str] | None = None) -> int:
    shim = argparse.ArgumentParser(prog="embedgrid.slurm.sacct")
    shim.add_argument("--jobcomp", required=True, help="the cluster's JobCompLoc")
    shim.add_argument("--real-sacct", required=True, help="sacct to run for any other query")
    shim.add_argument("args", nargs=argparse.REMAINDER)
    options = shim.parse_args(argv)
    query_args = options.args[1:] if options.args[:1] == ["--"] else options.args
    query = parse(query_args)
    if query is None:
        os.execv(options.real_sacct, [options.real_sacct, *query_args])
    jobs, fields = query
    squeue = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%N"], capture_output=True, text=True)
    if squeue.returncode:  # the controller is down: say so as sacct would, with its error
        sys.stderr.write(squeue.stderr)
        return squeue.returncode
    sys.stdout.write(answer(jobs, fields, completion_states(Path(options.jobcomp)), queue_states(squeue.stdout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
