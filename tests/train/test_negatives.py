"""``train.negatives``: the first k of a row's negatives (default) or a per-step draw that resume reproduces."""
from __future__ import annotations

import pytest

from tests.helpers.train import max_diff, straight_and_resumed, tiny_encoder, train_config, trainable, word_rows


def pool_rows(n: int = 8, pool: int = 6):
    from embedgrid.data.rows import Row

    return [Row(f"query {i}", f"positive {i}", tuple(f"negative {i}.{j}" for j in range(pool))) for i in range(n)]


def test_first_keeps_the_rows_and_sample_draws_a_subset_that_changes_across_steps():
    from embedgrid.train.batches import choose_negatives

    rows = pool_rows()
    assert choose_negatives(rows, 2, "first", seed=0, step=5) is rows
    draws = [choose_negatives(rows, 2, "sample", seed=0, step=step) for step in range(6)]
    for drawn in draws:
        for row, original in zip(drawn, rows):
            assert len(row.negatives) == 2 and len(set(row.negatives)) == 2
            assert set(row.negatives) <= set(original.negatives)
            assert (row.query, row.positive) == (original.query, original.positive)
    assert len({tuple(d[0].negatives) for d in draws}) > 1  # the draw changes across steps
    # a pure function of (seed, step, position): the same arguments, the same draw; another seed, another draw
    assert choose_negatives(rows, 2, "sample", seed=0, step=3) == draws[3]
    assert any(choose_negatives(rows, 2, "sample", seed=1, step=s) != draws[s] for s in range(6))


def test_sample_leaves_rows_with_exactly_k_negatives_alone_and_refuses_an_unknown_mode():
    from embedgrid.data.rows import Row
    from embedgrid.train.batches import choose_negatives
    from embedgrid.train.config import TrainConfig

    rows = [Row("q", "p", ("a", "b"))]
    assert choose_negatives(rows, 2, "sample", seed=0, step=1) == rows
    with pytest.raises(ValueError, match="train.negatives='random'"):
        TrainConfig(negatives="random")


def test_the_loop_trains_on_the_drawn_negatives(monkeypatch):
    from embedgrid.train import loop
    from embedgrid.train.distributed import World

    rows = pool_rows(4, 5)
    cfg = train_config(batch_size=4, num_negatives=2, negatives="sample")
    seen = [[row.negatives for row in loop.local_rows(rows, cfg, step, 0, World(0, 1))] for step in range(4)]
    assert all(len(n) == 2 for step in seen for n in step)
    assert len({tuple(step) for step in seen}) > 1
    first = loop.local_rows(rows, train_config(batch_size=4, num_negatives=2), 0, 0, World(0, 1))
    assert all(len(row.negatives) == 5 for row in first)  # ``first``: rows untouched, split_batch takes 2
    docs = loop.TextBatch.from_rows(first, 2).docs
    assert docs[4:] == [n for row in first for n in row.negatives[:2]]


def test_resume_with_sampled_negatives_matches_uninterrupted(tmp_path):
    from embedgrid.train.loop import fit

    rows, cfg = word_rows(16, negatives=3), train_config(max_steps=5, checkpoint_every=10, negatives="sample")
    straight, resumed, _ = straight_and_resumed(rows, cfg, tmp_path)
    assert max_diff(trainable(straight), trainable(resumed)) <= 1e-6
    first = tiny_encoder(dropout=0.1)
    fit(first, rows, train_config(max_steps=5, checkpoint_every=10), seed=3, checkpoint_dir=tmp_path / "c")
    assert max_diff(trainable(straight), trainable(first)) > 1e-6  # sampling changed what was trained


def test_the_default_keeps_cell_names_and_sample_renames(compose):
    from embedgrid.grid.cellid import cell_name, identity

    base = ["model=tiny"]
    default = compose(base)
    assert "negatives" not in identity(default)["train"]
    assert cell_name(compose(base + ["train.negatives=first"])) == cell_name(default)
    assert cell_name(compose(base + ["train.negatives=sample"])) != cell_name(default)


def test_an_unknown_mode_is_refused_before_any_job_naming_the_key(compose):
    from embedgrid.errors import ConfigError
    from embedgrid.grid.schema import check

    with pytest.raises(ConfigError, match=r"train.negatives='random' is not one of \['first', 'sample'\]"):
        check(compose(["model=tiny", "train.negatives=random"]))
