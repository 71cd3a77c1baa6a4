"""Every fault of a cell ends in a state the next launch resumes from: SIGUSR2 (plain and under submitit's own
handler) checkpoints and leaves `partial`; a full disk while checkpointing leaves `failed` with the original
error, no temp directory, and the last good checkpoint to resume from."""
from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, TINY, launch

CELL = [*TINY, "train.max_steps=4", "train.checkpoint_every=2"]


def _signal_at_step(monkeypatch, step: int, signum: int) -> None:
    """Send ``signum`` to this process while training step ``step`` (after its optimizer step)."""
    import embedgrid.train.loop as loop

    real = loop.train_step

    def train_step(encoder, loss_fn, batch, cfg, world, calls=[0]):  # noqa: B006 - a per-test counter
        calls[0] += 1
        if calls[0] == step:
            os.kill(os.getpid(), signum)
        return real(encoder, loss_fn, batch, cfg, world)

    monkeypatch.setattr(loop, "train_step", train_step)


def _record(cell_dir):
    return json.loads((cell_dir / "cell.json").read_text())


def _checkpoint_step(cell_dir):
    return json.loads((cell_dir / "checkpoints" / "last" / "meta.json").read_text())["step"]


def test_sigusr2_under_submitit_checkpoints_records_partial_then_submitit_requeues(compose, tmp_path, monkeypatch):
    """submitit's real SignalHandler is installed for SIGUSR2 (as in a submitit job); the cell must write the
    checkpoint and `partial` first, then let that handler requeue and exit -- and the next launch resumes."""
    from submitit.core.job_environment import SignalHandler
    from submitit.helpers import DelayedSubmission

    from embedgrid.grid.cell import PARTIAL, run

    class Env:  # the JobEnvironment parts the handler uses
        global_rank = 0
        requeued: list = []

        def _requeue(self, countdown):
            self.requeued.append((countdown, _record(tmp_path)["status"], _checkpoint_step(tmp_path)))

    delayed = DelayedSubmission(print)
    delayed.set_timeout(60, 3)
    handler = SignalHandler(Env(), None, delayed)
    before = signal.signal(signal.SIGUSR2, handler.checkpoint_and_try_requeue)
    try:
        _signal_at_step(monkeypatch, 3, signal.SIGUSR2)
        cfg = compose(CELL)
        with pytest.raises(SystemExit) as raised:
            run(cfg, tmp_path)
        assert raised.value.code == -1  # submitit's own exit after its requeue
        assert Env.requeued == [(3, PARTIAL, 3)], "requeued once, after the step-3 checkpoint and `partial`"
        assert signal.getsignal(signal.SIGUSR2) == handler.checkpoint_and_try_requeue
    finally:
        signal.signal(signal.SIGUSR2, before)
    record = _record(tmp_path)
    assert record["status"] == PARTIAL and "Preempted" in record["error"]

    monkeypatch.undo()
    outcome = run(compose(CELL), tmp_path)
    assert outcome.status == "done" and _record(tmp_path)["train"]["start_step"] == 3


def test_sigusr2_in_a_plain_cell_run_leaves_partial_not_running(compose, tmp_path, monkeypatch):
    from embedgrid.grid.cell import PARTIAL, run
    from embedgrid.errors import Preempted

    _signal_at_step(monkeypatch, 1, signal.SIGUSR2)
    with pytest.raises(Preempted, match="stopped at step 1/4"):
        run(compose(CELL), tmp_path)
    assert _record(tmp_path)["status"] == PARTIAL and _checkpoint_step(tmp_path) == 1
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL


@pytest.mark.slow
def test_sigusr2_to_a_plain_launch_leaves_a_partial_cell_that_the_relaunch_finishes(tmp_path, launch_env):
    """The real CLI, no submitit: SIGUSR2 used to kill the process with cell.json left `running`."""
    cell = [*TINY, "train.max_steps=150", "train.checkpoint_every=5", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), *cell], cwd=ROOT, env=launch_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    meta = tmp_path / "checkpoints" / "last" / "meta.json"
    deadline = time.monotonic() + 300
    while not meta.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR2)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "preempted" in stderr, stderr[-3000:]
    record = _record(tmp_path)
    assert record["status"] == "partial" and "Preempted" in record["error"]
    stopped_at = _checkpoint_step(tmp_path)
    assert 5 <= stopped_at < 150

    launch(cell, launch_env)
    record = _record(tmp_path)
    assert record["status"] == "done" and record["train"]["start_step"] == stopped_at


def _disk_full_on_call(monkeypatch, n: int):
    """torch.save in the checkpoint writer fails with ENOSPC from its ``n``-th call on."""
    import embedgrid.train.checkpoint as checkpoint

    real, calls = checkpoint.torch.save, [0]

    def save(obj, path, *args, **kwargs):
        calls[0] += 1
        if calls[0] >= n:
            open(path, "wb").write(b"PK\x03\x04 half")
            raise OSError(errno.ENOSPC, "No space left on device (checkpoint)")
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", save)


def test_disk_full_while_checkpointing_fails_the_cell_cleanly_and_the_relaunch_resumes(compose, tmp_path,
                                                                                      monkeypatch):
    from embedgrid.grid.cell import FAILED, run

    _disk_full_on_call(monkeypatch, 2)  # the step-2 checkpoint is written, the step-4 one hits a full disk
    with pytest.raises(OSError) as raised:
        run(compose(CELL), tmp_path)
    assert raised.value.errno == errno.ENOSPC
    record = _record(tmp_path)
    assert record["status"] == FAILED and "No space left on device" in record["error"]
    assert not list((tmp_path / "checkpoints").glob(".last.tmp*")), "temp checkpoint directory left behind"
    assert _checkpoint_step(tmp_path) == 2

    monkeypatch.undo()
    outcome = run(compose(CELL), tmp_path)
    assert outcome.status == "done" and _record(tmp_path)["train"]["start_step"] == 2


def test_when_recording_the_failure_fails_too_the_original_error_survives(compose, tmp_path, monkeypatch, caplog):
    import embedgrid.grid.cell as cell
    import embedgrid.grid.celldir as celldir

    _disk_full_on_call(monkeypatch, 1)
    real_write = celldir.write_json

    def write_json(path, data):
        if path.name == cell.CELL_FILE and data.get("status") == cell.FAILED:
            raise OSError(errno.ENOSPC, "No space left on device (cell.json)")
        return real_write(path, data)

    monkeypatch.setattr(celldir, "write_json", write_json)
    with caplog.at_level(logging.ERROR, logger="embedgrid.grid.cell"), pytest.raises(OSError) as raised:
        cell.run(compose(CELL), tmp_path)
    assert "(checkpoint)" in str(raised.value), "the record's error replaced the original one"
    assert f"could not record failed in {tmp_path / 'cell.json'}" in caplog.text
    assert cell.cell_state(tmp_path) == cell.PARTIAL  # left `running` by a dead process: the next launch resumes


def test_a_job_exit_during_evaluation_records_partial(compose, tmp_path, monkeypatch):
    """submitit's SIGUSR2 handler outside training requeues and calls sys.exit(-1): not a failed cell."""
    import embedgrid.evaluate.run as evaluate
    from embedgrid.grid.cell import PARTIAL, run

    def exit_like_submitit(*args, **kwargs):
        raise SystemExit(-1)

    monkeypatch.setattr(evaluate, "evaluate_encoder", exit_like_submitit)
    with pytest.raises(SystemExit):
        run(compose([*TINY, "train.max_steps=0"]), tmp_path)
    assert _record(tmp_path)["status"] == PARTIAL


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_timeout_signal_checkpoints_then_submitit_requeues_and_the_cell_resumes(tmp_path, slurm_env):
    """`scancel --signal=USR2` is what SLURM sends `signal_delay_s` before the time limit. No periodic
    checkpoint (checkpoint_every > max_steps): the requeued attempt can only resume if the signal wrote one."""
    from tests.helpers.grid import GRID

    sweep, steps = tmp_path / "timeout", 100
    args = ["-m", *GRID, "hydra/launcher=local_slurm", f"train.max_steps={steps}", "train.checkpoint_every=1000",
            "pooling=mean", f"hydra.sweep.dir={sweep}", "analyze=false"]
    sweeping = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), *args], cwd=ROOT, env=slurm_env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        log = None
        while time.monotonic() < deadline and not (log and "training on" in log.read_text()):
            log = next(iter(sweep.glob("tiny-*/launch.log")), None)
            time.sleep(0.2)
        assert log is not None and "training on" in log.read_text(), "the cell never started training"
        time.sleep(1.0)
        [job] = subprocess.run(["squeue", "-h", "-o", "%i"], env=slurm_env, capture_output=True,
                               text=True).stdout.split()
        subprocess.run(["scancel", "--signal=USR2", job], env=slurm_env, check=True)
        out, _ = sweeping.communicate(timeout=600)
    finally:
        if sweeping.poll() is None:
            sweeping.kill()
    assert sweeping.returncode == 0, out[-4000:]
    assert "1 done, 0 skipped" in out
    record = _record(log.parent)
    assert record["status"] == "done" and record["attempts"] == 2
    assert 0 < record["train"]["start_step"] < steps, "the requeued cell must resume from the signal's checkpoint"
