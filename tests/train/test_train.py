"""The training loop: schedule, optimizer groups, exact resume (real SIGKILL), SIGTERM/SIGUSR1/SIGUSR2, NaN,
checkpoints (prev kept, unreadable ones skipped, failed writes cleaned up)."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT
from tests.helpers.train import (POOLINGS, grads, max_diff, straight_and_resumed, tiny_encoder,  # noqa: F401
                                 train_config, trainable, word_rows)

# ---- schedule, optimizer, config ---------------------------------------------------------------------------
def test_warmup_then_linear_decay_to_zero():
    from embedgrid.train.loop import make_scheduler

    cfg = train_config(max_steps=10, warmup_steps=4, lr=1.0)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer, cfg)
    lrs = []
    for _ in range(10):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert lrs[4] == pytest.approx(1.0) and lrs[4:] == sorted(lrs[4:], reverse=True)
    assert scheduler.get_last_lr()[0] == pytest.approx(0.0)


def test_optimizer_groups_head_lr_and_no_decay_on_1d_params():
    from embedgrid.train.loop import make_optimizer

    encoder = tiny_encoder("latent", perturb_lora=False)
    optimizer = make_optimizer(encoder, train_config(lr=1e-5, pooling_lr=1e-3, weight_decay=0.05))
    head_ids = {id(p) for p in encoder.pooling.parameters()}
    seen = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            seen += 1
            assert group["lr"] == (1e-3 if id(p) in head_ids else 1e-5)
            assert group["weight_decay"] == (0.05 if p.ndim >= 2 else 0.0)
    assert seen == sum(1 for p in encoder.parameters() if p.requires_grad)


def test_train_config_rejects_bad_values():
    from embedgrid.train.config import TrainConfig

    with pytest.raises(ValueError, match="grad_cache_chunk"):
        TrainConfig(grad_cache_chunk=0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        TrainConfig(batchsize=3)
    with pytest.raises(ValueError, match="batch_size=6 is not divisible by train.accumulation_steps=4"):
        TrainConfig(batch_size=6, accumulation_steps=4)


def test_paper_presets_compose(compose):
    from omegaconf import OmegaConf

    from embedgrid.train.config import TrainConfig

    cfg = compose(["train=paper"])
    assert (cfg.train.lr, cfg.train.max_steps, cfg.train.warmup_steps, cfg.train.batch_size) == (1e-5, 1000, 100, 2048)
    assert cfg.train.accumulation_steps == 256 and not cfg.train.grad_cache
    cached = compose(["train=paper_gradcache"])
    assert cached.train.accumulation_steps == 1 and cached.train.grad_cache and cached.train.lr == 1e-5
    for preset in (cfg, cached):
        TrainConfig(**OmegaConf.to_container(preset.train, resolve=True))


def test_gradient_checkpointing_gives_the_same_gradients():
    from embedgrid.losses import InfoNCELoss
    from embedgrid.train.distributed import World
    from embedgrid.train.loop import enable_gradient_checkpointing
    from embedgrid.train.step import TextBatch, plain_step

    batch = TextBatch.from_rows(word_rows(6), 1)
    out = []
    for checkpointing in (False, True):
        encoder = tiny_encoder()
        if checkpointing:
            enable_gradient_checkpointing(encoder)
            assert encoder.backbone.get_base_model().is_activation_checkpointing
        encoder.train()
        plain_step(encoder, InfoNCELoss(), batch, World())
        out.append(grads(encoder))
    assert float(out[0].norm()) > 0
    assert float((out[0] - out[1]).norm() / out[0].norm()) < 1e-5


# ---- fit: resume, NaN, signals -----------------------------------------------------------------------------
def test_fit_learns_and_logs(tmp_path):
    from embedgrid.train.loop import fit

    class Recorder:
        def __init__(self):
            self.records = []

        def log(self, metrics, step=None):
            self.records.append((step, metrics))

    encoder, logger = tiny_encoder(dropout=0.1), Recorder()
    rows = word_rows(16)
    summary = fit(encoder, rows, train_config(max_steps=8, lr=5e-3, batch_size=8), seed=0,
                  checkpoint_dir=tmp_path, logger=logger)
    assert summary["final_loss"] < summary["first_loss"]
    assert [s for s, _ in logger.records] == list(range(1, 9))
    metrics = logger.records[-1][1]
    assert metrics["train/examples_per_s"] > 0 and metrics["train/candidates_per_query"] == 16
    assert json.loads((tmp_path / "last" / "meta.json").read_text())["step"] == 8


def test_resume_in_process_matches_uninterrupted(tmp_path):
    straight, resumed, summary = straight_and_resumed(word_rows(16), train_config(max_steps=5, checkpoint_every=10),
                                                      tmp_path)
    assert summary["start_step"] == 3
    assert max_diff(trainable(straight), trainable(resumed)) <= 1e-6

KILL_SCRIPT = """
import sys, time, torch
torch.set_num_threads(1)
sys.path.insert(0, {root!r})
from tests.helpers.train import tiny_encoder, word_rows, train_config
from embedgrid.train.loop import fit
from safetensors.torch import save_file

class HangAfter:  # blocks inside step {hang} (after its optimizer step, before its checkpoint) until killed
    def log(self, metrics, step=None):
        if step == {hang}:
            print("HANGING", flush=True)
            time.sleep(600)

encoder = tiny_encoder(dropout=0.1)
summary = fit(encoder, word_rows(16), train_config(max_steps=6, checkpoint_every=2), seed=5,
              checkpoint_dir=sys.argv[1], logger=HangAfter() if sys.argv[2] == "hang" else None)
print("START", summary["start_step"], flush=True)
save_file({{n: p.detach().contiguous() for n, p in encoder.named_parameters() if p.requires_grad}}, sys.argv[3])
"""


@pytest.mark.slow
def test_sigkill_mid_run_then_relaunch_ends_with_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    script = tmp_path / "train.py"
    script.write_text(KILL_SCRIPT.format(root=str(ROOT), hang=3))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(ckpt, mode, out):
        return subprocess.run([sys.executable, str(script), str(ckpt), mode, str(out)], env=env,
                              capture_output=True, text=True, timeout=300)

    reference = run(tmp_path / "straight", "plain", tmp_path / "straight.safetensors")
    assert reference.returncode == 0, reference.stderr[-2000:]

    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "killed"), "hang", "unused"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "HANGING"
        meta = tmp_path / "killed" / "last" / "meta.json"
        assert json.loads(meta.read_text())["step"] == 2  # step 3 ran in memory; its state is lost with the kill
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    relaunched = run(tmp_path / "killed", "plain", tmp_path / "resumed.safetensors")
    assert relaunched.returncode == 0, relaunched.stderr[-2000:]
    assert "START 2" in relaunched.stdout
    a, b = load_file(tmp_path / "straight.safetensors"), load_file(tmp_path / "resumed.safetensors")
    assert max_diff(a, b) <= 1e-6


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2])
def test_stop_signal_checkpoints_then_raises_preempted(tmp_path, signum):
    from embedgrid.train.loop import fit
    from embedgrid.errors import Preempted
    from embedgrid.train.signals import StopSignals

    class SignalAtStep2:
        def log(self, metrics, step=None):
            if step == 2:
                os.kill(os.getpid(), signum)

    before = signal.getsignal(signum)
    with pytest.raises(Preempted, match="stopped at step 2/6"), StopSignals() as stop:
        fit(tiny_encoder(), word_rows(8), train_config(max_steps=6, checkpoint_every=100), seed=0,
            checkpoint_dir=tmp_path, logger=SignalAtStep2(), should_stop=stop)
    assert json.loads((tmp_path / "last" / "meta.json").read_text())["step"] == 2
    assert signal.getsignal(signum) is before


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import embedgrid.train.loop as loop
    from embedgrid.errors import NonFiniteLoss

    real_step = loop.train_step
    calls = {"n": 0}

    def poisoned(encoder, loss_fn, batch, cfg, world):
        calls["n"] += 1
        loss = real_step(encoder, loss_fn, batch, cfg, world)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(loop, "train_step", poisoned)
    encoder = tiny_encoder()
    with pytest.raises(NonFiniteLoss, match=r"step 3/6: loss=nan.*last good checkpoint kept in"):
        loop.fit(encoder, word_rows(8), train_config(max_steps=6, checkpoint_every=2), seed=0,
                 checkpoint_dir=tmp_path)
    assert json.loads((tmp_path / "last" / "meta.json").read_text())["step"] == 2
    saved = load_file(tmp_path / "last" / "trainable.safetensors")
    assert all(torch.isfinite(v).all() for v in saved.values())
    assert max_diff(saved, trainable(encoder)) == 0.0  # the poisoned step did not update the weights


def _optimizers(encoder):
    from embedgrid.train.loop import make_optimizer, make_scheduler

    optimizer = make_optimizer(encoder, train_config())
    return optimizer, make_scheduler(optimizer, train_config())


def _two_checkpoints(directory):
    """Steps 2 and 4 saved with different weights; returns (encoder, weights at 2, weights at 4)."""
    from embedgrid.train.checkpoint import save_checkpoint

    encoder = tiny_encoder()
    optimizer, scheduler = _optimizers(encoder)
    at = {}
    for step in (2, 4):
        with torch.no_grad():
            for p in encoder.parameters():
                if p.requires_grad:
                    p.add_(0.01 * step)
        at[step] = trainable(encoder)
        save_checkpoint(directory, encoder, optimizer, scheduler, step)
    return encoder, at[2], at[4]


@pytest.mark.parametrize("legacy", [False, True])
def test_checkpoint_recovers_from_a_kill_between_renames(tmp_path, legacy):
    from embedgrid.train.checkpoint import load_checkpoint

    _, _, at4 = _two_checkpoints(tmp_path)
    shutil.rmtree(tmp_path / "prev")
    # save_checkpoint moved last -> prev and was killed before moving its temp dir to last; older versions
    # left the previous `last` as .last.old instead
    os.replace(tmp_path / "last", tmp_path / (".last.old" if legacy else "prev"))
    fresh = tiny_encoder(seed=5)
    assert load_checkpoint(tmp_path, fresh, *_optimizers(fresh))["step"] == 4
    assert max_diff(trainable(fresh), at4) == 0.0


@pytest.mark.parametrize("torn", ["trainable.safetensors", "state.pt", "meta.json"])
def test_unreadable_last_falls_back_to_prev_and_names_the_path(tmp_path, torn, caplog):
    import logging

    from embedgrid.train.checkpoint import load_checkpoint

    _, at2, _ = _two_checkpoints(tmp_path)
    path = tmp_path / "last" / torn
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])  # a copy cut short
    fresh = tiny_encoder(seed=5)
    with caplog.at_level(logging.WARNING, logger="embedgrid.train.checkpoint"):
        meta = load_checkpoint(tmp_path, fresh, *_optimizers(fresh))
    assert meta["step"] == 2 and meta["path"] == str(tmp_path / "prev")
    assert max_diff(trainable(fresh), at2) == 0.0
    assert f"checkpoint {tmp_path / 'last'} is unreadable" in caplog.text
    assert not (tmp_path / "last").exists() and (tmp_path / "last.corrupt" / torn).exists()  # kept, not rotated


def test_no_readable_checkpoint_restarts_from_zero_with_the_model_untouched(tmp_path, caplog):
    import logging

    from embedgrid.train.checkpoint import load_checkpoint

    _two_checkpoints(tmp_path)
    (tmp_path / "last" / "state.pt").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "prev" / "trainable.safetensors").write_bytes(b"\x08\x00")
    fresh = tiny_encoder(seed=5)
    before = trainable(fresh)
    with caplog.at_level(logging.WARNING, logger="embedgrid.train.checkpoint"):
        assert load_checkpoint(tmp_path, fresh, *_optimizers(fresh)) is None
    assert max_diff(trainable(fresh), before) == 0.0  # nothing half-applied from the torn `last`
    assert "training restarts from step 0" in caplog.text
    assert str(tmp_path / "last") in caplog.text and str(tmp_path / "prev") in caplog.text


def test_fit_resumes_exactly_from_prev_when_last_is_torn(tmp_path):
    from embedgrid.train.loop import fit
    from embedgrid.errors import Preempted

    rows, cfg = word_rows(16), train_config(max_steps=6, checkpoint_every=2)
    straight = tiny_encoder(dropout=0.1)
    fit(straight, rows, cfg, seed=3, checkpoint_dir=tmp_path / "a")
    calls = iter([False, False, False, True])
    with pytest.raises(Preempted, match="step 4/6"):
        fit(tiny_encoder(dropout=0.1), rows, cfg, seed=3, checkpoint_dir=tmp_path / "b",
            should_stop=lambda: next(calls))
    state = tmp_path / "b" / "last" / "state.pt"
    state.write_bytes(state.read_bytes()[:100])
    resumed = tiny_encoder(dropout=0.1, seed=99)
    summary = fit(resumed, rows, cfg, seed=3, checkpoint_dir=tmp_path / "b")
    assert summary["start_step"] == 2
    assert max_diff(trainable(straight), trainable(resumed)) <= 1e-6


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device (simulated)")


def test_disk_full_while_checkpointing_removes_the_temp_dir_and_keeps_the_error(tmp_path, monkeypatch):
    import embedgrid.train.checkpoint as checkpoint

    encoder, _, at4 = _two_checkpoints(tmp_path)
    real_save = torch.save

    def half_then_full(obj, path, *args, **kwargs):  # writes part of the file, then the disk is full
        real_save(obj, path, *args, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[:50])
        _disk_full()

    monkeypatch.setattr(checkpoint.torch, "save", half_then_full)
    with pytest.raises(OSError) as raised:
        checkpoint.save_checkpoint(tmp_path, encoder, *_optimizers(encoder), 6)
    assert raised.value.errno == errno.ENOSPC
    assert not list(tmp_path.glob(".last.tmp*")), "the temp checkpoint directory was left behind"
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    fresh = tiny_encoder(seed=5)
    assert checkpoint.load_checkpoint(tmp_path, fresh, *_optimizers(fresh))["step"] == 4  # `last` untouched
    assert max_diff(trainable(fresh), at4) == 0.0


def test_a_stale_temp_dir_of_a_killed_writer_is_removed_by_the_next_save(tmp_path):
    from embedgrid.train.checkpoint import save_checkpoint

    (tmp_path / ".last.tmp99999999").mkdir(parents=True)
    encoder = tiny_encoder()
    save_checkpoint(tmp_path, encoder, *_optimizers(encoder), 1)
    assert not list(tmp_path.glob(".last.tmp*")) and (tmp_path / "last" / "meta.json").exists()


@pytest.mark.parametrize("cleanup_fails", [False, True])
def test_atomic_write_on_a_full_disk_leaves_no_temp_file_and_raises_the_original(tmp_path, monkeypatch,
                                                                                 cleanup_fails):
    import embedgrid.io as io

    target = tmp_path / "cell.json"
    io.write_json(target, {"status": "running"})

    def partial_then_full(tmp):
        Path(tmp).write_text('{"status": "fai')
        _disk_full()

    if cleanup_fails:  # the cleanup itself failing must not replace the ENOSPC
        monkeypatch.setattr(io.os, "unlink", lambda path: (_ for _ in ()).throw(PermissionError(path)))
    with pytest.raises(OSError) as raised:
        io.atomic_write(target, partial_then_full)
    assert raised.value.errno == errno.ENOSPC
    assert json.loads(target.read_text()) == {"status": "running"}
    if not cleanup_fails:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.json"]


def test_sigusr2_checkpoints_first_then_hands_over_to_the_previous_handler(tmp_path):
    """Under submitit, SIGUSR2's handler (requeue + exit) was installed before ours: it must run once, after
    the checkpoint, when the cell calls hand_over -- never in the middle of a step."""
    from embedgrid.train.loop import fit
    from embedgrid.errors import Preempted
    from embedgrid.train.signals import StopSignals, hand_over

    calls = []

    def submitit_like(signum, frame):
        meta = tmp_path / "last" / "meta.json"
        calls.append((signum, json.loads(meta.read_text())["step"] if meta.exists() else None))

    class SignalAtStep2:
        def log(self, metrics, step=None):
            if step == 2:
                os.kill(os.getpid(), signal.SIGUSR2)

    before = signal.signal(signal.SIGUSR2, submitit_like)
    try:
        with pytest.raises(Preempted, match="stopped at step 2/6") as raised, StopSignals() as stop:
            fit(tiny_encoder(), word_rows(8), train_config(max_steps=6, checkpoint_every=100), seed=0,
                checkpoint_dir=tmp_path, logger=SignalAtStep2(), should_stop=stop)
        assert calls == [] and signal.getsignal(signal.SIGUSR2) is submitit_like
        hand_over(raised.value)
        assert calls == [(signal.SIGUSR2, 2)]
    finally:
        signal.signal(signal.SIGUSR2, before)


def test_sigusr2_in_a_plain_run_has_nothing_to_hand_over(tmp_path):
    from embedgrid.train.loop import fit
    from embedgrid.errors import Preempted
    from embedgrid.train.signals import StopSignals

    class SignalAtStep1:
        def log(self, metrics, step=None):
            if step == 1:
                os.kill(os.getpid(), signal.SIGUSR2)

    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    with pytest.raises(Preempted) as raised, StopSignals() as stop:
        fit(tiny_encoder(), word_rows(8), train_config(max_steps=4), seed=0, checkpoint_dir=tmp_path,
            logger=SignalAtStep1(), should_stop=stop)
    assert getattr(raised.value, "hand_over", None) is None
