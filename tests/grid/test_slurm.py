"""Grids on a real one-node SLURM cluster (started by the session fixture): sweep, skip, requeue + resume."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.helpers import launch, wait_for
from tests.helpers.grid import GRID, PAPER_DESIGNS, cell_records, dry_run_states

SLURM = ["hydra/launcher=local_slurm"]
pytestmark = pytest.mark.slurm


def submitted_jobs(sweep: Path) -> set[str]:
    """Array task folders (<array id>_<task>) that submitit created."""
    return {p.name for p in (sweep / ".submitit").glob("*_*") if p.is_dir()}


@pytest.mark.slow
def test_paper_grid_then_2x2_on_slurm(tmp_path, slurm_env):
    sweep = tmp_path / "grid"
    paper = ["-m", "experiment=paper_grid", *GRID, *SLURM, f"hydra.sweep.dir={sweep}", "analyze=false"]
    proc = launch(paper, slurm_env)
    assert "5 done, 0 skipped" in proc.stdout
    records = cell_records(sweep)
    assert {(r["design"]["pooling"], r["design"]["attention"]) for r in records.values()} == PAPER_DESIGNS
    assert all(r["status"] == "done" for r in records.values())
    assert len(submitted_jobs(sweep)) == 5, "one array task per cell"

    jobs_before = submitted_jobs(sweep)
    again = launch(paper, slurm_env)
    assert "0 done, 5 skipped" in again.stdout
    assert submitted_jobs(sweep) == jobs_before, "finished cells must not be submitted again"
    assert dry_run_states(launch([*paper, "dry_run=true"], slurm_env).stdout) == ["done"] * 5

    # A 2 x 2 sweep into the same directory: eos_last x causal is paper design 1, already done.
    square = ["-m", *GRID, *SLURM, "pooling=mean,eos_last", "attention=causal,bidirectional",
              f"hydra.sweep.dir={sweep}", "analyze=false"]
    proc = launch(square, slurm_env)
    assert "3 done, 1 skipped" in proc.stdout
    by_design = {(r["design"]["pooling"], r["design"]["attention"]): name for name, r in cell_records(sweep).items()}
    for pooling in ("mean", "eos_last"):
        for attention in ("causal", "bidirectional"):
            name = by_design[(pooling, attention)]
            assert cell_records(sweep)[name]["status"] == "done"
            scores = json.loads((sweep / name / "scores.json").read_text())
            assert -1 <= scores["LeeDocumentSTS"]["main_score"] <= 1


@pytest.mark.slow
def test_a_cell_on_two_slurm_tasks_trains_data_parallel(tmp_path, slurm_env):
    """tasks_per_node=2: submitit starts the cell on both tasks; they join one gloo group from SLURM's variables,
    train on halves of each global batch, and rank 0 alone records the cell."""
    sweep = tmp_path / "tasks"
    proc = launch(["-m", *GRID, *SLURM, "train.batch_size=8", "hydra.launcher.tasks_per_node=2",
                   f"hydra.sweep.dir={sweep}", "analyze=false"], slurm_env)
    assert "1 done, 0 skipped" in proc.stdout
    (record,) = cell_records(sweep).values()
    assert record["status"] == "done" and record["attempts"] == 1
    assert record["train"]["world_size"] == 2
    meta = json.loads(next(sweep.glob("*/checkpoints/last/meta.json")).read_text())
    assert meta["world_size"] == 2 and meta["step"] == record["train"]["steps"]


def _checkpoint_step(cell: Path) -> int:
    meta = cell / "checkpoints" / "last" / "meta.json"
    try:
        return int(json.loads(meta.read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_requeued_cell_resumes_from_checkpoint_in_the_same_wandb_run(tmp_path, slurm_env):
    sweep = tmp_path / "requeue"
    steps = 150
    args = ["-m", *GRID, *SLURM, f"train.max_steps={steps}", "train.checkpoint_every=5", "logger=wandb",
            "pooling=mean", f"hydra.sweep.dir={sweep}", "analyze=false"]
    sweeping = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), *args], cwd=ROOT, env=slurm_env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        cell = Path(wait_for(lambda: next(iter(sweep.glob("tiny-*/cell.json")), None), 180, "the cell to start")).parent
        at_requeue = wait_for(lambda: _checkpoint_step(cell) >= 5 and _checkpoint_step(cell), 180, "a checkpoint")
        assert at_requeue < steps, "training finished before the requeue: raise max_steps"
        [job] = wait_for(lambda: subprocess.run(["squeue", "-h", "-o", "%i"], env=slurm_env, capture_output=True,
                                             text=True).stdout.split(), 30, "the job id")
        subprocess.run(["scontrol", "requeue", job], env=slurm_env, check=True)
        out, _ = sweeping.communicate(timeout=300)
    finally:
        if sweeping.poll() is None:
            sweeping.kill()
    assert sweeping.returncode == 0, out[-4000:]
    assert "1 done, 0 skipped" in out
    record = json.loads((cell / "cell.json").read_text())
    assert record["status"] == "done" and record["attempts"] == 2
    assert record["train"]["start_step"] >= at_requeue > 0, "the requeued cell must resume, not restart"
    assert record["train"]["steps"] == steps
    runs = sorted(p.name for p in (cell / "wandb").glob("offline-run-*"))
    assert len(runs) == 2, runs
    assert len({name.rsplit("-", 1)[1] for name in runs}) == 1, f"one W&B run id across attempts: {runs}"


def test_unreachable_controller_fails_fast(tmp_path, launch_env):
    from embedgrid.slurm import LocalCluster

    cluster = LocalCluster(tmp_path / "down", port=1, gpus=0)  # port 1: nothing listens there
    env = dict(launch_env)
    if os.path.exists("/usr/sbin/slurmd"):
        cluster.write_config()
        env.update(cluster.env)
    started = time.monotonic()
    proc = launch(["-m", *GRID, *SLURM, "pooling=mean,eos_last", f"hydra.sweep.dir={tmp_path / 'sweep'}"], env,
                  check=False, timeout=120)
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    assert "SLURM controller unreachable" in message or "SLURM client commands" in message, message[-3000:]
    assert "python -m embedgrid.slurm start" in message
    assert time.monotonic() - started < 60
    assert not (tmp_path / "sweep" / ".submitit").exists(), "nothing may be submitted"


def _squeue_ids(env) -> list[str]:
    return subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True).stdout.split()


def _sbatch(env, tmp_path, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sbatch", "--parsable", f"--chdir={tmp_path}", f"--output={tmp_path}/%j.out",
                           "--wrap", command], env=env, capture_output=True, text=True, timeout=60)


def _own_addresses() -> list[str]:
    """This machine's IPv4/IPv6 addresses other than loopback (link-local ones need a scope: left out)."""
    import psutil

    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family in (socket.AF_INET, socket.AF_INET6) and "%" not in a.address
            and not a.address.startswith(("127.", "::1", "fe80:"))]


def test_cluster_ports_listen_on_loopback_only(slurm_cluster, slurm_env, tmp_path):
    """slurmctld, slurmd and, while a job runs, its srun's ports: 127.0.0.1 only, never 0.0.0.0 or ::."""
    proc = _sbatch(slurm_env, tmp_path, "srun sleep 60")
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip().split(";")[0]
    try:
        listening = wait_for(lambda: (found := slurm_cluster.listening())
                          and any(s.process == "srun" for s in found) and found, 60, "srun of the job to listen")
        by_process = {}
        for s in listening:
            by_process.setdefault(s.process, set()).add(s.port)
        assert by_process["slurmctld"] == {slurm_cluster.port}, listening
        assert by_process["slurmd"] == {slurm_cluster.port + 1}, listening
        exposed = [s for s in listening if not s.loopback]
        assert not exposed, f"cluster ports reachable from other machines: {exposed}"
        for address in _own_addresses():  # as another machine would try: through this machine's other addresses
            for port in (slurm_cluster.port, slurm_cluster.port + 1):
                with pytest.raises(ConnectionRefusedError):
                    socket.create_connection((address, port), timeout=5).close()
        if shutil.which("ss"):  # a second opinion from iproute2 on the daemons' fixed ports
            lines = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
            local = [line.split()[3] for line in lines.splitlines()]
            for port in (slurm_cluster.port, slurm_cluster.port + 1):
                assert [a for a in local if a.endswith(f":{port}")] == [f"127.0.0.1:{port}"], lines
    finally:
        subprocess.run(["scancel", job], env=slurm_env)
        wait_for(lambda: job not in _squeue_ids(slurm_env), 60, f"job {job} to end")


def test_listening_sockets_tells_loopback_from_every_interface():
    """The check above must see an exposed port: this process listens on 0.0.0.0, :: and 127.0.0.1."""
    from embedgrid.slurm.cluster import listening_sockets

    wanted = [(socket.AF_INET, "0.0.0.0", False), (socket.AF_INET, "127.0.0.1", True)]
    if socket.has_ipv6:
        wanted += [(socket.AF_INET6, "::", False), (socket.AF_INET6, "::1", True)]
    opened = []
    try:
        for family, address, _ in wanted:
            sock = socket.socket(family, socket.SOCK_STREAM)
            opened.append(sock)
            try:
                sock.bind((address, 0))
            except OSError:  # no such interface in this sandbox (e.g. IPv6 off)
                opened.pop().close()
                continue
            sock.listen()
        found = {(s.address, s.port): s.loopback for s in listening_sockets({os.getpid(): "pytest"})}
        for sock in opened:
            address, port = sock.getsockname()[:2]
            assert found[(address, port)] is address.startswith(("127.", "::1")), (address, port, found)
        assert any(not loopback for loopback in found.values()), "an exposed socket must be reported as such"
    finally:
        for sock in opened:
            sock.close()


def test_clients_without_the_cluster_munge_key_are_refused(slurm_cluster, slurm_env, tmp_path):
    """Second layer: even from this machine, a client with auth/none or another munge key submits nothing."""
    from embedgrid.slurm import LocalCluster

    conf = slurm_cluster.conf.read_text()
    assert "AuthType=auth/munge" in conf and f"socket={slurm_cluster.munge_socket}" in conf
    (tmp_path / "none.conf").write_text(conf.replace("AuthType=auth/munge", "AuthType=auth/none")
                                        .replace("CredType=cred/munge", "CredType=cred/none"))
    foreign = LocalCluster(tmp_path / "foreign", gpus=0)  # only its munged: a fresh key of its own
    (foreign.state_dir / "run").mkdir(parents=True, mode=0o700)
    (foreign.state_dir / "etc").mkdir()
    (foreign.state_dir / "log").mkdir()
    foreign._ensure_munge_key()
    foreign._start_munged()
    try:
        (tmp_path / "foreign.conf").write_text(conf.replace(f"socket={slurm_cluster.munge_socket}",
                                                            f"socket={foreign.munge_socket}"))
        before = _squeue_ids(slurm_env)
        for name in ("none.conf", "foreign.conf"):
            env = {**slurm_env, "SLURM_CONF": str(tmp_path / name)}
            proc = _sbatch(env, tmp_path, "true")
            assert proc.returncode != 0 and not proc.stdout.strip(), (name, proc.stdout, proc.stderr)
        assert _squeue_ids(slurm_env) == before
        ok = _sbatch(slurm_env, tmp_path, "true")
        assert ok.returncode == 0, ok.stderr  # the cluster's own clients still get in
    finally:
        foreign.stop()


def test_submitit_sees_a_cancelled_job_finish_through_the_sacct_shim(slurm_cluster, tmp_path, monkeypatch):
    """Without slurmdbd the real sacct fails; the shim on the cluster's PATH answers, so scancel ends the wait."""
    import submitit
    from submitit.core.utils import UncompletedJobError

    for key, value in slurm_cluster.env.items():
        monkeypatch.setenv(key, value)
    assert shutil.which("sacct") == str(slurm_cluster.bin_dir / "sacct")
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm")
    executor.update_parameters(slurm_partition="debug", timeout_min=5, cpus_per_task=1, mem_gb=1)
    done, sleeper = executor.submit(int, "3"), executor.submit(time.sleep, 300)
    assert done.result() == 3
    wait_for(lambda: done.state == "COMPLETED" or None, 30, "the finished job's state COMPLETED")
    wait_for(lambda: sleeper.state == "RUNNING" or None, 60, "the sleeping job to run")
    subprocess.run(["scancel", sleeper.job_id], check=True)
    wait_for(lambda: sleeper.done(force_check=True), 60, "submitit to see the cancelled job finish")
    assert sleeper.state == "CANCELLED"
    with pytest.raises(UncompletedJobError, match="state: CANCELLED"):
        sleeper.result()
    table = subprocess.run(["sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j", done.job_id],
                           capture_output=True, text=True, check=True).stdout
    rows = table.splitlines()
    assert rows[0] == "JobID|State|NodeList" and rows[1].startswith(f"{done.job_id}|COMPLETED|")
