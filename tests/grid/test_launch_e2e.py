"""The real CLI in a subprocess: one cell end to end, and the cell-directory contract later work relies on."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import ROOT, TINY, launch  # noqa: F401


@pytest.mark.slow
def test_single_cell_contract_and_skip(tmp_path, launch_env):
    cell = tmp_path / "cell"
    launch_env["WANDB_API_KEY"] = "secret-key-that-must-not-leak-0123456789"
    proc = launch([*TINY, "logger=wandb", f"hydra.run.dir={cell}", "+extra.api_token=hunter2"], launch_env)
    assert "STS" in proc.stdout and str(cell) in proc.stdout  # the closing category table (test_console.py)

    record = json.loads((cell / "cell.json").read_text())
    assert record["status"] == "done"
    assert record["design"] == {"model": "tiny", "pooling": "mean", "attention": "causal", "seed": 0}
    assert record["train"]["steps"] == 3 and record["train"]["final_loss"] > 0
    assert record["versions"]["torch"].startswith("2.13.0")
    text = (cell / "cell.json").read_text()
    assert "hunter2" not in text and "<redacted>" in text
    for path in cell.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".yaml", ".log", ".txt", ".jsonl"):
            assert "secret-key-that-must-not-leak" not in path.read_text(errors="ignore"), path

    scores = json.loads((cell / "scores.json").read_text())
    assert scores["LeeDocumentSTS"]["category"] == "STS"
    assert -1.0 <= scores["LeeDocumentSTS"]["main_score"] <= 1.0
    assert list((cell / "mteb").rglob("LeeDocumentSTS.json")), "mteb's own result file is missing"
    assert (cell / "model" / "adapter" / "adapter_model.safetensors").exists()
    assert (cell / "model" / "pooling.safetensors").exists()

    import embedgrid

    vectors = embedgrid.load_encoder(cell).encode(["a dog", "a much longer sentence about cats and dogs"])
    assert vectors.dtype == np.float32 and vectors.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    again = launch([*TINY, "logger=wandb", f"hydra.run.dir={cell}", "+extra.api_token=hunter2"], launch_env)
    assert "skipped, already done" in again.stdout
    assert json.loads((cell / "cell.json").read_text())["attempts"] == 1


def test_unknown_pooling_names_valid_choices(launch_env, tmp_path):
    proc = launch([*TINY, "pooling=cls", f"hydra.run.dir={tmp_path}"], launch_env, check=False)
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    assert "pooling/cls" in message or "'cls'" in message
    for valid in ("eos_last", "mean", "last_layer_trainable", "multi_layer_trainable"):
        assert valid in message


def test_cell_dir_refuses_other_config(tmp_path, launch_env):
    cell = tmp_path / "cell"
    launch([*TINY, "train.max_steps=0", f"hydra.run.dir={cell}"], launch_env)
    proc = launch([*TINY, "train.max_steps=1", f"hydra.run.dir={cell}"], launch_env, check=False)
    assert proc.returncode != 0 and "CellConflict" in proc.stdout + proc.stderr
