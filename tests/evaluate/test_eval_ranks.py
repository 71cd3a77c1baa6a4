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


def _failing_worker(rank: int, init_file: str, cell_dir: str, out: str) -> None:
    """Rank 1's encoder raises on its first encode call (an out-of-memory error, say); the outcome is written."""
    import time

    import torch
    import torch.distributed as dist

    from embedgrid.model.encoder import Encoder
    from embedgrid.train.distributed import current_world

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    real_encode, seen = Encoder.encode, {}

    def encode(self, texts, **kwargs):
        if rank == 1:
            seen["failed_at"] = time.time()
            raise MemoryError("simulated: out of memory on rank 1")
        return real_encode(self, texts, **kwargs)

    Encoder.encode = encode
    try:
        from embedgrid.evaluate.run import evaluate_encoder
        from tests.helpers.train import tiny_encoder

        evaluate_encoder(tiny_encoder(), {"tasks": ["LeeDocumentSTS"], "max_samples": 8, "progress_bar": False,
                                          "compile": False},
                         cell_dir, name="embedgrid/ranks", revision="r0", world=current_world())
        seen["outcome"] = "returned"
    except BaseException as error:
        seen["outcome"] = f"{type(error).__name__}: {error}"
        raise
    finally:
        seen["ended_at"] = time.time()
        with open(f"{out}.{rank}", "w") as f:
            json.dump(seen, f)
        dist.destroy_process_group()


@pytest.mark.slow
def test_a_rank_failing_in_encode_stops_every_rank_promptly(tmp_path):
    """Rank 1 raises inside encode: rank 0, which would otherwise wait in the gather for the control group's
    72-hour timeout, raises RankFailed naming rank 1 and its error, and both processes exit with an error.
    Each process is joined on its own (torch's spawn would kill a waiting rank once the other failed, hiding a
    hang); the bounds are hang guards, not timings."""
    import multiprocessing
    import time

    context = multiprocessing.get_context("spawn")
    out = tmp_path / "outcome"
    processes = [context.Process(target=_failing_worker, args=(rank, str(tmp_path / "init"), str(tmp_path / "c"),
                                                                str(out)))
                 for rank in range(WORLD)]
    started = time.monotonic()
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join(timeout=max(1.0, 300 - (time.monotonic() - started)))
        hung = [rank for rank, process in enumerate(processes) if process.is_alive()]
        assert not hung, f"ranks {hung} still running 300 s after start: a failed rank left them waiting"
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
    assert [process.exitcode for process in processes] == [1, 1]
    ranks = [json.loads((tmp_path / f"outcome.{rank}").read_text()) for rank in range(WORLD)]
    assert ranks[1]["outcome"] == "MemoryError: simulated: out of memory on rank 1"
    assert ranks[0]["outcome"].startswith("RankFailed: encoding LeeDocumentSTS/"), ranks[0]["outcome"]
    assert "failed on rank 1 of 2 (rank 1: MemoryError: simulated: out of memory on rank 1)" in ranks[0]["outcome"]
    assert ranks[0]["ended_at"] - ranks[1]["failed_at"] < 60, "rank 0 learnt of rank 1's failure only late"
