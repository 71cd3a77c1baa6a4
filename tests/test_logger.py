"""Loggers: one W&B run per cell (id from the cell), config without secrets, W&B failures never stop training."""
from __future__ import annotations

import json
import logging
import time

import pytest

from tests.helpers.train import tiny_encoder, train_config, word_rows

SECRET = "hunter2-do-not-log"


def make_logger(tmp_path, **kwargs):
    from embedgrid.logger import WandbLogger

    args = dict(project="embedgrid-test", run_id="cellid0123", name="tiny-mean-causal", group="gridA",
                run_config={"model": {"name": "tiny"}, "wandb_api_key": SECRET, "nested": {"token": SECRET}},
                directory=str(tmp_path), mode="offline", init_timeout=20)
    return WandbLogger(**{**args, **kwargs})


def offline_run_dirs(tmp_path, run_id="cellid0123"):
    return sorted((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))


def test_offline_run_has_cell_id_group_redacted_config_metrics_and_summary(tmp_path):
    logger = make_logger(tmp_path)
    run = logger.run
    assert run is not None and run.id == "cellid0123" and run.group == "gridA" and run.name == "tiny-mean-causal"
    assert run.config["model"] == {"name": "tiny"}
    assert SECRET not in json.dumps(dict(run.config)) and "redacted" in json.dumps(dict(run.config))
    logger.log({"train/loss": 1.5, "train/examples_per_s": 10.0}, step=1)
    logger.summary({"eval/LeeDocumentSTS": 0.42})
    assert run.summary["eval/LeeDocumentSTS"] == 0.42
    logger.finish()
    (run_dir,) = offline_run_dirs(tmp_path)
    records, deadline = b"", time.monotonic() + 30
    while b"LeeDocumentSTS" not in records and time.monotonic() < deadline:  # wandb-core flushes asynchronously
        time.sleep(0.2)
        records = (run_dir / "run-cellid0123.wandb").read_bytes()  # the offline run, as `wandb sync` uploads it
    assert b"train/examples_per_s" in records and b"LeeDocumentSTS" in records and b"gridA" in records
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_wandb_init_raising_leaves_training_running(tmp_path, monkeypatch, caplog):
    import wandb

    from embedgrid.train.loop import fit

    def broken_init(**kwargs):
        raise RuntimeError("wandb exploded")

    monkeypatch.setattr(wandb, "init", broken_init)
    with caplog.at_level(logging.WARNING, logger="embedgrid.logger"):
        logger = make_logger(tmp_path)
    assert logger.run is None and "W&B disabled for this cell: RuntimeError: wandb exploded" in caplog.text
    summary = fit(tiny_encoder(), word_rows(8), train_config(max_steps=2), seed=0,
                  checkpoint_dir=tmp_path / "ck", logger=logger)
    assert summary["steps"] == 2
    logger.summary({"eval/x": 1.0})
    logger.finish()


def test_wandb_run_failing_mid_training_is_only_a_warning(tmp_path, caplog):
    from embedgrid.logger import WandbLogger
    from embedgrid.train.loop import fit

    class BrokenRun:
        summary = None

        def log(self, *args, **kwargs):
            raise ConnectionError("network gone")

        def finish(self, *args, **kwargs):
            raise ConnectionError("network gone")

    logger = WandbLogger.__new__(WandbLogger)
    logger.run, logger.run_id = BrokenRun(), "x"
    with caplog.at_level(logging.WARNING, logger="embedgrid.logger"):
        fit(tiny_encoder(), word_rows(8), train_config(max_steps=2), seed=0, checkpoint_dir=tmp_path,
            logger=logger)
        logger.summary({"eval/x": 1.0})
        logger.finish()
    assert "W&B log failed: network gone" in caplog.text and "W&B finish failed" in caplog.text


@pytest.mark.slow
def test_unreachable_wandb_host_with_api_key_gives_up_after_init_timeout(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    started = time.monotonic()
    logger = make_logger(tmp_path, mode="online", init_timeout=3)
    assert logger.run is None
    assert time.monotonic() - started < 60  # bounded by init_timeout, not wandb's ~100 s default retry
    logger.log({"train/loss": 1.0}, step=1)
    logger.finish()


def test_same_cell_logs_into_the_same_run_id(compose):
    from embedgrid.grid.cell import wandb_run_id
    from embedgrid.grid.plan import resolve_plan

    def compose_plan(overrides):
        return resolve_plan(compose(overrides))

    cfg = compose_plan(["model=tiny", "pooling=mean"])
    assert wandb_run_id(cfg) == wandb_run_id(compose_plan(["model=tiny", "pooling=mean"]))
    assert wandb_run_id(cfg) != wandb_run_id(compose_plan(["model=tiny", "pooling=eos_last"]))
    assert wandb_run_id(cfg) != wandb_run_id(compose_plan(["model=tiny", "pooling=mean", "grid=other"]))


def test_logger_none_composes_to_a_null_logger(compose):
    from hydra.utils import instantiate

    from embedgrid.logger import NullLogger

    logger = instantiate(compose(["logger=none"]).logger)
    assert isinstance(logger, NullLogger)
    logger.log({"a": 1}, step=1), logger.summary({"b": 2}), logger.finish()
