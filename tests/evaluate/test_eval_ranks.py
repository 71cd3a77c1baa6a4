"""Evaluation on every rank: 2 gloo processes split each encode call's texts (balanced by tokens), gather the
vectors, and score exactly what one process scores (retrieval, STS and classification tasks)."""
from __future__ import annotations

import json

import pytest

WORLD = 2
TASKS = ["FoodSearchRetrieval", "LeeDocumentSTS", "FineFoodsClassification"]


def _scores(cell_dir, world):
    from embedgrid.evaluate.run import evaluate_encoder
    from tests.helpers.train import tiny_encoder

    encoder = tiny_encoder(perturb_lora=True)
    encoder.eval()
    from embedgrid.train.distributed import World

    scores, _ = evaluate_encoder(encoder, {"tasks": TASKS, "max_samples": 24, "progress_bar": False,
                                           "compile": False},
                                 cell_dir, name="embedgrid/ranks", revision="r0", world=world or World())
    return {task: entry["main_score"] for task, entry in scores.items()}, encoder


def _worker(rank: int, init_file: str, cell_dir: str, out: str) -> None:
    import torch
    import torch.distributed as dist

    from embedgrid.train.distributed import current_world

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        from embedgrid.model.encoder import Encoder

        local, full = [], []
        real_encode, real_share = Encoder.encode, __import__("embedgrid.evaluate.model", fromlist=["x"]).MtebEncoder

        def encode(self, texts, **kwargs):  # texts this rank encoded itself
            local.append(len(texts))
            return real_encode(self, texts, **kwargs)

        def call(self, texts, instruction, desc, _real=real_share._encode):  # texts of each mteb encode call
            full.append(len(texts))
            return _real(self, texts, instruction, desc)

        Encoder.encode, real_share._encode = encode, call
        scores, _ = _scores(cell_dir, current_world())
        with open(f"{out}.{rank}", "w") as f:
            json.dump({"scores": scores, "local": sum(local), "full": sum(full)}, f)
    finally:
        dist.destroy_process_group()


def test_shares_balance_tokens_and_cover_every_text():
    from embedgrid.evaluate.model import shares

    lengths = [50, 3, 3, 3, 40, 10, 9, 1]
    parts = shares(lengths, 2)
    assert sorted(i for part in parts for i in part) == list(range(len(lengths)))
    totals = [sum(lengths[i] for i in part) for part in parts]
    assert abs(totals[0] - totals[1]) <= max(lengths[i] for i in range(len(lengths)) if i not in (0, 4))
    assert shares([5], 3) == [[0], [], []]


@pytest.mark.slow
def test_two_gloo_processes_score_what_one_process_scores(tmp_path):
    import torch.multiprocessing as mp

    out = tmp_path / "ranks"
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path / "two"), str(out)), nprocs=WORLD, join=True)
    ranks = [json.loads((tmp_path / f"ranks.{r}").read_text()) for r in range(WORLD)]
    assert sum(rank["local"] for rank in ranks) == ranks[0]["full"] == ranks[1]["full"]  # each text once
    single, _ = _scores(tmp_path / "one", None)
    assert set(single) == set(TASKS)
    for rank in ranks:
        assert set(rank["scores"]) == set(TASKS)
        assert 0 < rank["local"] < rank["full"], "each rank encodes its share, not every text"
        for task in TASKS:
            assert rank["scores"][task] == pytest.approx(single[task], abs=1e-5), task
    # rank 0 wrote mteb's result files into the results directory it was given (the cell writes its own files)
    assert any(p.suffix == ".json" for p in (tmp_path / "two").rglob("*"))
