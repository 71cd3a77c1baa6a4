"""The console of a cell: a few phase lines, two bars, the category table at the end; everything in launch.log.
W&B run files carry a `design` label and the category means; a sweep's offline runs sync in one command."""
from __future__ import annotations

import time

import pytest

from tests.helpers import TINY, launch

SUITE = "eval.tasks=[LeeDocumentSTS,WordSim353STS,FoodSearchRetrieval,FoodIndianMatchPairClassification]"
CELL = [*TINY, SUITE, "train.progress_bar=true", "eval.progress_bar=true"]


def console_lines(proc) -> list[str]:
    return (proc.stdout + proc.stderr).split("\n")


@pytest.mark.slow
def test_cell_console_is_short_ends_with_the_category_table_and_launch_log_has_everything(tmp_path, launch_env):
    cell = tmp_path / "cell"
    proc = launch([*CELL, f"hydra.run.dir={cell}"], launch_env)
    lines = [line for line in console_lines(proc) if line.strip()]
    assert len(lines) < 60, "\n".join(lines)
    # the bars go to stderr, the report to stdout: stdout ends with the table
    stdout = [line for line in proc.stdout.split("\n") if line.strip()]
    tail = "\n".join(stdout[-8:])
    assert "category" in tail and "average" in tail and "PairClassification" in tail and str(cell) in tail
    assert stdout[-1].startswith("  not evaluated:")
    out = proc.stdout + proc.stderr
    assert "LeeDocumentSTS (STS)" not in out          # per-task lines: launch.log only
    assert "Searching corpus chunks" not in out        # mteb's own bars: off
    assert '"main_score"' not in out                    # no scores.json dump
    log = (cell / "launch.log").read_text()
    assert "LeeDocumentSTS (STS): cosine_spearman" in log and "FoodSearchRetrieval (Retrieval)" in log
    assert "mteb" in log                                # mteb's INFO lines are kept in the file


@pytest.mark.slow
def test_verbose_restores_the_libraries_output(tmp_path, launch_env):
    proc = launch([*CELL, f"hydra.run.dir={tmp_path / 'cell'}", "verbose=true"], launch_env)
    out = proc.stdout + proc.stderr
    assert "LeeDocumentSTS (STS): cosine_spearman" in out and "Running task LeeDocumentSTS" in out


def run_file_bytes(cell_dir, needle: bytes) -> bytes:
    (run_file,) = cell_dir.glob("wandb/offline-run-*/run-*.wandb")
    data, deadline = b"", time.monotonic() + 30
    while needle not in data and time.monotonic() < deadline:  # wandb-core flushes asynchronously
        data = run_file.read_bytes()
        time.sleep(0.2)
    return data


@pytest.mark.slow
@pytest.mark.parametrize("spelling, label", [
    (["design=eos_causal"], b"1 eos_causal"),
    (["pooling=eos_last", "attention=causal"], b"1 eos_causal"),
    (["pooling=mean", "attention=bidirectional"], b"mean/bidirectional"),
])
def test_wandb_run_file_has_the_design_label_and_category_means(tmp_path, launch_env, spelling, label):
    cell = tmp_path / "cell"
    launch([*CELL, *spelling, "logger=wandb", f"hydra.run.dir={cell}"], {**launch_env, "WANDB_MODE": "offline"})
    data = run_file_bytes(cell, b"category/average")
    assert b'"design"' in data or b"design" in data
    assert label in data
    for category in (b"STS", b"Retrieval", b"PairClassification"):
        assert b"category/" + category in data
    assert b"category/average" in data and b"eval/LeeDocumentSTS" in data


def test_wandb_summary_has_per_task_scores_category_means_and_their_average():
    from embedgrid.grid.cell import wandb_summary

    scores = {"A": {"main_score": 0.5, "category": "STS"}, "B": {"main_score": 0.7, "category": "STS"}}
    summary = wandb_summary(scores, {"means": {"STS": 0.6}, "average_of_category_means": 0.6})
    assert summary == {"eval/A": 0.5, "eval/B": 0.7, "category/STS": 0.6, "category/average": 0.6}


def test_design_labels_name_the_paper_design_whatever_the_spelling():
    from embedgrid.grid.designs import design_label

    assert design_label("multi_layer_trainable", "bidirectional") == "5 multi_layer_bidirectional"
    assert design_label("mean", "causal") == "mean/causal"


def _offline_runs(root):
    for cell, stamp in (("a", "20260101_000001"), ("a", "20260101_000500"), ("b", "20260101_000002")):
        run = root / cell / "wandb" / f"offline-run-{stamp}-id{cell}"
        run.mkdir(parents=True)
        (run / f"run-id{cell}.wandb").write_bytes(b"x")
    (root / "c" / "wandb" / "offline-run-20260101_000003-empty").mkdir(parents=True)  # no run file: skipped


def test_wandb_sync_finds_every_offline_run_of_a_sweep_and_calls_wandb_sync(tmp_path, monkeypatch, capsys):
    from embedgrid import wandb_sync

    _offline_runs(tmp_path)
    calls = []
    monkeypatch.setattr(wandb_sync, "unreachable", lambda url: None)
    monkeypatch.setattr(wandb_sync, "run_bounded", lambda command, timeout: calls.append(command) or 0)
    assert wandb_sync.main([str(tmp_path)]) == 0
    assert len(calls) == 2  # one W&B run at a time; a resumed run's segments together, in time order
    runs = [[arg.split("offline-run-")[1][:15] for arg in command if "offline-run" in arg] for command in calls]
    assert runs == [["20260101_000001", "20260101_000500"], ["20260101_000002"]]
    assert all(command[1:4] == ["-m", "wandb", "sync"] for command in calls)
    assert "3 offline run directories, 2 W&B runs" in capsys.readouterr().out


def test_wandb_sync_unreachable_server_is_named_fast_and_uploads_nothing(tmp_path, monkeypatch, capsys):
    import socket
    import time

    from embedgrid import wandb_sync

    _offline_runs(tmp_path)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(wandb_sync, "run_bounded", lambda *a: pytest.fail("started an upload"))
    started = time.perf_counter()
    assert wandb_sync.main([str(tmp_path)]) == 2
    assert time.perf_counter() - started < 15
    err = capsys.readouterr().err
    assert f"cannot reach the W&B server at http://127.0.0.1:{port}" in err and "ConnectionRefusedError" in err
    assert "runs stay offline" in err


def test_wandb_sync_stops_a_run_at_its_timeout_and_goes_on(tmp_path, monkeypatch, capsys):
    import sys
    import time

    from embedgrid import wandb_sync

    _offline_runs(tmp_path)
    monkeypatch.setattr(wandb_sync, "unreachable", lambda url: None)
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    commands = iter([hang, [sys.executable, "-c", "pass"]])
    monkeypatch.setattr(wandb_sync, "sync_command", lambda runs, dry_run=False: next(commands))
    started = time.perf_counter()
    assert wandb_sync.main([str(tmp_path), "--timeout", "1"]) == 1
    assert time.perf_counter() - started < 20
    err = capsys.readouterr().err
    assert "run ida: stopped after 1 s (--timeout)" in err and "1 of 2 W&B runs not synced (ida)" in err


@pytest.mark.parametrize("name, level, message, extra, shown", [
    ("embedgrid.grid.cell", "INFO", "training on 10 rows", {}, True),
    ("embedgrid.evaluate.run", "INFO", "LeeDocumentSTS (STS): cosine_spearman = 0.5", {"console": False}, False),
    ("mteb.evaluate", "INFO", "Running task LeeDocumentSTS", {}, False),
    ("mteb.evaluate", "WARNING", "cached result of another revision", {}, True),
    ("py.warnings", "WARNING", "x.py:1: UndefinedMetricWarning: Recall is ill-defined", {}, False),
    ("py.warnings", "WARNING", "x.py:1: UserWarning: something the user should see", {}, True),
])
def test_quiet_console_filter(name, level, message, extra, shown):
    import logging

    from embedgrid.console import QuietConsole

    record = logging.LogRecord(name, getattr(logging, level), "x.py", 1, message, None, None)
    record.__dict__.update(extra)
    assert QuietConsole().filter(record) is shown
    QuietConsole.verbose = True
    try:
        assert QuietConsole().filter(record) is True
    finally:
        QuietConsole.verbose = False


@pytest.mark.parametrize("done, logged", [(1, True), (0, False)])
def test_a_relaunch_that_skipped_every_cell_logs_no_second_analysis_run(tmp_path, monkeypatch, done, logged):
    import subprocess

    from embedgrid.grid import sweeper

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda command: calls.append(command) or subprocess.CompletedProcess(
        command, 0))
    summary = {"counts": {"done": done, "skipped": 2, "partial": 0, "failed": 0}}
    sweeper.run_analysis(tmp_path, summary)
    (command,) = calls
    assert command[1:4] == ["-m", "analysis", str(tmp_path)]
    assert ("--wandb-auto" in command) is logged
