"""Preemption through the cell: SIGTERM mid-training → checkpoint, cell partial; launching again resumes."""
from __future__ import annotations

import json
import os
import signal

import pytest

from tests.helpers import TINY


@pytest.mark.slow
def test_sigterm_during_a_cell_checkpoints_and_the_relaunch_resumes(compose, tmp_path, monkeypatch):
    import embedgrid.train.loop as loop
    from embedgrid.grid.cell import PARTIAL, run
    from embedgrid.errors import Preempted

    cfg = compose([*TINY, "train.max_steps=8", "train.checkpoint_every=2"])
    real_save = loop.save_checkpoint

    def save_then_sigterm(*args, **kwargs):  # SLURM's SIGTERM arriving right after the step-2 checkpoint
        path = real_save(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return path

    monkeypatch.setattr(loop, "save_checkpoint", save_then_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Preempted, match="stopped at step 3/8"):
        run(cfg, tmp_path)
    assert signal.getsignal(signal.SIGTERM) is before
    assert json.loads((tmp_path / "checkpoints" / "last" / "meta.json").read_text())["step"] == 3
    record = json.loads((tmp_path / "cell.json").read_text())
    assert record["status"] == PARTIAL and "Preempted" in record["error"]

    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    outcome = run(cfg, tmp_path)
    record = json.loads((tmp_path / "cell.json").read_text())
    assert outcome.status == "done" and record["attempts"] == 2
    assert record["train"]["start_step"] == 3 and record["train"]["steps"] == 8


def test_a_cell_run_by_another_process_is_refused_untouched(compose, tmp_path):
    import fcntl

    from embedgrid.grid.cell import LOCK_FILE, run
    from embedgrid.errors import CellBusy

    cfg = compose(TINY)
    with open(tmp_path / LOCK_FILE, "w") as held:  # what a second sweep over the same directory would meet
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        with pytest.raises(CellBusy, match="pid 4242"):
            run(cfg, tmp_path)
    assert not (tmp_path / "cell.json").exists(), "a refused run must not write the other run's cell.json"


def test_preempted_cell_stops_an_in_process_sweep(monkeypatch):
    """Hydra's basic launcher records an Exception and moves to the next cell; a preemption must end the sweep."""
    from embedgrid.errors import Preempted

    with pytest.raises(SystemExit, match="preempted"):
        _run_cell_raising(monkeypatch, "MULTIRUN", Preempted("stopped at step 2/4"))


def _run_cell_raising(monkeypatch, mode: str, error: Exception) -> None:
    """launcher.run_cell in Hydra's ``mode`` (RUN | MULTIRUN) on a cell whose run raises ``error``."""
    import embedgrid.grid.cell
    import embedgrid.grid.launcher as launcher

    from omegaconf import OmegaConf

    fake_hydra = OmegaConf.create({"runtime": {"output_dir": "/nonexistent/cell"},
                                   "mode": getattr(launcher.RunMode, mode), "launcher": {}})

    def raises(cfg, cell_dir, **kwargs):
        raise error

    monkeypatch.setattr(launcher.HydraConfig, "get", staticmethod(lambda: fake_hydra))
    monkeypatch.setattr(embedgrid.grid.cell, "run", raises)
    launcher.run_cell(OmegaConf.create({"dry_run": False, "threads": 1, "verbose": False}))


def test_a_single_run_that_fails_ends_with_the_error_and_the_log_not_a_traceback(monkeypatch, caplog):
    """A single run's failure inside the cell: the error, the cell and where the traceback went on the console,
    exit status 1, the traceback in the log rather than Hydra's traceback on the console."""
    with caplog.at_level("ERROR"), pytest.raises(SystemExit) as stopped:
        _run_cell_raising(monkeypatch, "RUN", ValueError("loss is nan at step 2"))
    message = str(stopped.value.code)
    assert "ValueError: loss is nan at step 2" in message and "/nonexistent/cell" in message
    assert "launch.log" in message and "Traceback" not in message
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and logged[0].exc_info[0] is ValueError


def _torchrun(args, processes=2) -> list[str]:
    import sys

    from tests.helpers import ROOT

    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            str(ROOT / "launch.py"), *args]


def _torchrun_launch(args, env):
    import subprocess

    from tests.helpers import ROOT

    proc = subprocess.run(_torchrun(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _preempt_after_first_checkpoint(args, env, cell_dir) -> None:
    """Start a torchrun launch and send it SIGTERM (as SLURM does) once training has written a checkpoint."""
    import subprocess
    import time

    from tests.helpers import ROOT

    proc = subprocess.Popen(_torchrun(args), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    meta = cell_dir / "checkpoints" / "last" / "meta.json"
    deadline = time.monotonic() + 300
    while not meta.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to every rank
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "preempted" in stderr, stderr[-3000:]


@pytest.mark.slow
def test_a_cell_on_two_processes_trains_data_parallel_resumes_and_records_once(tmp_path, launch_env):
    """`torchrun --nproc-per-node=2 launch.py`: each rank trains on half of every global batch (gloo); rank 0
    alone records, saves and evaluates. Preempted with SIGTERM and launched again, it resumes, and ends with the
    weights and scores of an uninterrupted one-process run of the same cell."""
    from safetensors.torch import load_file

    from tests.helpers import launch

    cell = [*TINY, "train.batch_size=8", "train.max_steps=200", "train.checkpoint_every=5",
            "lora.dropout=0"]  # dropout masks are per rank: compare without them
    one, two = tmp_path / "one", tmp_path / "two"
    launch([*cell, f"hydra.run.dir={one}"], launch_env)

    _preempt_after_first_checkpoint([*cell, f"hydra.run.dir={two}"], launch_env, two)
    stopped = json.loads((two / "cell.json").read_text())
    assert stopped["status"] == "partial" and "Preempted" in stopped["error"]
    proc = _torchrun_launch([*cell, f"hydra.run.dir={two}"], launch_env)
    assert proc.stdout.count("full log: ") == 1, "one report, from rank 0"

    record, reference = (json.loads((run / "cell.json").read_text()) for run in (two, one))
    assert record["status"] == "done" and record["attempts"] == 2
    assert record["train"]["world_size"] == 2 and reference["train"]["world_size"] == 1
    assert 0 < record["train"]["start_step"] < 200, "the relaunch resumes from the preemption checkpoint"
    assert record["train"]["final_loss"] == pytest.approx(reference["train"]["final_loss"], rel=1e-5)
    for name in ("adapter/adapter_model.safetensors", "pooling.safetensors"):
        a, b = (load_file(run / "model" / name) for run in (one, two))
        assert a.keys() == b.keys()
        assert max((float((a[k] - b[k]).abs().max()) for k in a), default=0.0) <= 1e-5, name
    scores = [json.loads((run / "scores.json").read_text()) for run in (one, two)]
    assert scores[1]["LeeDocumentSTS"]["main_score"] == pytest.approx(scores[0]["LeeDocumentSTS"]["main_score"],
                                                                      abs=1e-4)

    again = _torchrun_launch([*cell, f"hydra.run.dir={two}"], launch_env)
    assert again.stdout.count("skipped, already done") == 1
    assert json.loads((two / "cell.json").read_text())["attempts"] == 2


def test_eval_compile_without_a_cpu_compiler_fails_before_training(compose, tmp_path, monkeypatch):
    import shutil

    import embedgrid.train.loop as loop
    from embedgrid.grid.cell import FAILED, run
    from embedgrid.errors import ConfigError

    cfg = compose([*TINY, "device=cpu", "eval.compile=true"])
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(loop, "fit", lambda *a, **k: pytest.fail("training started before the compiler check"))
    with pytest.raises(ConfigError, match="C\\+\\+ compiler"):
        run(cfg, tmp_path)
    assert json.loads((tmp_path / "cell.json").read_text())["status"] == FAILED
