"""Data parallel on 2 CPU processes (gloo): loss, gradients and trained weights equal the single-process run on
the same global batch, with negatives gathered across ranks.

The comparison runs in float64. Two ranks sum a gradient in another order than one process, and AdamW divides
each gradient component by its own running magnitude, so a component that is a near-cancelling sum carries its
relative rounding error straight into the update (lr x relative error per step). In float32 that error reached
1e-5 after 3 steps at lr 5e-3 on a fresh machine; in float64 (unit roundoff 1.1e-16) it is below 1e-12, while a
real defect (a missing rank's negatives, a wrong gradient average) moves weights by more than 1e-4. So the bounds
below (1e-9) separate the two by orders of magnitude in both directions.
"""
from __future__ import annotations

import pytest
import torch

from tests.helpers.train import grads, tiny_encoder, train_config, trainable, word_rows

WORLD = 2
# name: (pooling, train config overrides); global batch 8 = 4 per rank
CASES = {
    "plain": ("mean", dict(batch_size=8, num_negatives=1)),
    "grad_cache_symmetric": ("latent", dict(batch_size=8, num_negatives=2, symmetric_loss=True, grad_cache=True,
                                            grad_cache_chunk=3)),
    # 2 micro-batches of 4 (2 per rank), rows sharing positives: false negatives masked across ranks
    "accumulation_false_negatives": ("mean", dict(batch_size=8, accumulation_steps=2, num_negatives=1,
                                                  symmetric_loss=True)),
}
FIT = dict(batch_size=8, max_steps=3, checkpoint_every=2, lr=5e-3, warmup_steps=0)


def one_step(pooling: str, overrides: dict):
    """Loss (mean over ranks) and gradients of step 0 of the global batch, in this process's world."""
    from embedgrid.data.rows import Row
    from embedgrid.losses import InfoNCELoss
    from embedgrid.train.distributed import all_mean, current_world
    from embedgrid.train.loop import step_batches, train_step

    cfg, world = train_config(**overrides), current_world()
    encoder = tiny_encoder(pooling, dtype="float64")
    encoder.train()
    rows = word_rows(16, cfg.num_negatives)
    if cfg.accumulation_steps > 1:  # three positive texts for 16 rows: every micro-batch has identical candidates
        rows = [Row(r.query, rows[i % 3].positive, r.negatives) for i, r in enumerate(rows)]
    micro, false_negatives = step_batches(rows, InfoNCELoss(cfg.temperature, cfg.symmetric_loss), cfg, 0, 0, world)
    assert (false_negatives > 0) == (cfg.accumulation_steps > 1)
    loss = train_step(encoder, None, micro, cfg, world)
    return all_mean(loss.item(), world), grads(encoder)


def trained_weights(checkpoint_dir):
    from embedgrid.train.loop import fit

    encoder = tiny_encoder("latent", dtype="float64")
    fit(encoder, word_rows(16), train_config(**FIT), seed=0, checkpoint_dir=checkpoint_dir)
    return trainable(encoder)


def _worker(rank: int, init_file: str, out: str, checkpoint_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)  # pooling heads are created in the default dtype
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        results = {name: one_step(*case) for name, case in CASES.items()}
        results["fit"] = trained_weights(checkpoint_dir)
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_on_the_global_batch(tmp_path):
    import json

    import torch.multiprocessing as mp

    out = tmp_path / "ranks.pt"
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(out), str(tmp_path / "ddp")), nprocs=WORLD, join=True)
    got = torch.load(out, weights_only=True)
    torch.set_default_dtype(torch.float64)
    try:
        for name, case in CASES.items():
            loss, grad = one_step(*case)
            assert got[name][0] == pytest.approx(loss, rel=1e-9), name
            assert float(grad.norm()) > 0
            assert float((got[name][1] - grad).norm() / grad.norm()) <= 1e-9, name
        single = trained_weights(tmp_path / "single")
    finally:
        torch.set_default_dtype(torch.float32)
    assert got["fit"][next(iter(single))].dtype == torch.float64
    assert max(float((got["fit"][k] - single[k]).abs().max()) for k in single) <= 1e-9
    meta = json.loads((tmp_path / "ddp" / "last" / "meta.json").read_text())
    assert meta["world_size"] == WORLD and meta["step"] == 3


def test_batch_not_divisible_by_world_is_a_clear_error(tmp_path):
    from embedgrid.train.distributed import World
    from embedgrid.train.loop import _check_world

    with pytest.raises(ValueError, match="batch_size=9 is not divisible by the 2 processes"):
        _check_world(train_config(batch_size=9), World(0, 2))
    with pytest.raises(ValueError, match="batch_size=12 / train.accumulation_steps=2 is not divisible by the 4"):
        _check_world(train_config(batch_size=12, accumulation_steps=2), World(0, 4))


def test_local_rows_partition_the_global_batch():
    from embedgrid.train.batches import batch_rows
    from embedgrid.train.distributed import World
    from embedgrid.train.loop import local_rows

    rows, cfg = word_rows(20), train_config(batch_size=6)
    parts = [local_rows(rows, cfg, 4, 1, World(r, 3)) for r in range(3)]
    assert [len(p) for p in parts] == [2, 2, 2]
    assert sum(parts, []) == batch_rows(rows, 6, 4, 1)


def _hand_off_worker(rank: int, init_file: str, out: str) -> None:
    import torch.distributed as dist

    from embedgrid.train.distributed import current_world, run_on_main
    from embedgrid.errors import RankZeroFailed

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    world, seen = current_world(), {}
    try:
        seen["value"] = run_on_main(lambda: {"from": world.rank}, world)

        def fail_on_rank_zero():
            raise ValueError("disk full")

        try:
            run_on_main(fail_on_rank_zero, world)
        except (ValueError, RankZeroFailed) as error:
            seen["error"] = f"{type(error).__name__}: {error}"
        torch.save(seen, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_work_done_by_rank_zero_reaches_every_rank_and_so_does_its_failure(tmp_path):
    """run_on_main: rank 0 alone runs the work; the others get its result, or an error naming its failure
    instead of waiting forever in a collective rank 0 never joins."""
    import torch.multiprocessing as mp

    out = tmp_path / "seen"
    mp.spawn(_hand_off_worker, args=(str(tmp_path / "init"), str(out)), nprocs=WORLD, join=True)
    ranks = [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(WORLD)]
    assert [r["value"] for r in ranks] == [{"from": 0}] * WORLD
    assert ranks[0]["error"] == "ValueError: disk full"
    assert ranks[1]["error"] == "RankZeroFailed: rank 0 failed: ValueError: disk full"


def _all_ranks_worker(rank: int, init_file: str, out: str) -> None:
    import torch.distributed as dist

    from embedgrid.errors import RankFailed
    from embedgrid.train.distributed import current_world, gather_from_all

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    world, seen = current_world(), {}
    try:
        seen["value"] = gather_from_all(lambda: {"from": world.rank}, world)

        def fail_on_rank_one():
            if world.rank == 1:
                raise ValueError("bad batch")
            return "fine"

        try:
            gather_from_all(fail_on_rank_one, world, what="encoding Task/query")
        except (ValueError, RankFailed) as error:
            seen["error"] = f"{type(error).__name__}: {error}"
        torch.save(seen, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_work_every_rank_does_is_gathered_and_a_failure_on_any_rank_reaches_every_rank(tmp_path):
    """gather_from_all: every rank's result on every rank; a rank that raises re-raises its own error and the
    others raise RankFailed naming it, at the same gather, instead of waiting for a rank that will not come."""
    import torch.multiprocessing as mp

    out = tmp_path / "seen"
    mp.spawn(_all_ranks_worker, args=(str(tmp_path / "init"), str(out)), nprocs=WORLD, join=True)
    ranks = [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(WORLD)]
    assert [r["value"] for r in ranks] == [[{"from": r} for r in range(WORLD)]] * WORLD
    assert ranks[1]["error"] == "ValueError: bad batch"
    assert ranks[0]["error"] == ("RankFailed: encoding Task/query failed on rank 1 of 2 "
                                 "(rank 1: ValueError: bad batch)")
