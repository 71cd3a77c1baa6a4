"""Gradient accumulation (one InfoNCE per micro-batch, mean gradient) and the false-negative mask."""
from __future__ import annotations

import pytest
import torch

from tests.helpers.train import (check_accumulated_step, grads, max_diff, tiny_encoder, train_config,
                                 trainable, word_rows)


def micro_parts(rows, cfg):
    from embedgrid.losses import InfoNCELoss
    from embedgrid.train.distributed import World
    from embedgrid.train.loop import step_batches

    return step_batches(rows, InfoNCELoss(cfg.temperature), cfg, 0, 0, World())


def test_each_micro_batch_is_its_own_infonce_and_the_gradient_is_their_mean():
    from embedgrid.train.distributed import World
    from embedgrid.train.loop import train_step

    rows = word_rows(16)
    cfg = train_config(batch_size=8, accumulation_steps=2, false_negative_mask=False)
    micro, _ = micro_parts(rows, cfg)
    assert [len(batch.queries) for batch, _ in micro] == [4, 4] and [len(b.docs) for b, _ in micro] == [8, 8]

    def infonce(queries, docs):  # each micro-batch's InfoNCE written out: 4 queries x its own 8 documents
        logits = queries @ docs.T / cfg.temperature
        return -(logits.diagonal() - logits.logsumexp(dim=1)).mean()

    mean_grad = check_accumulated_step(micro, cfg, infonce, atol=1e-6)

    whole = tiny_encoder()  # the same 8 rows as one InfoNCE: a different objective, so the test can tell
    whole.train()
    whole_cfg = train_config(batch_size=8, false_negative_mask=False)
    (batch, fn), = micro_parts(rows, whole_cfg)[0]
    train_step(whole, fn, batch, whole_cfg, World())
    assert float((grads(whole) - mean_grad).norm() / mean_grad.norm()) > 1e-3


def test_micro_batches_partition_the_global_batch_over_ranks():
    from embedgrid.train.batches import batch_rows
    from embedgrid.train.distributed import World
    from embedgrid.train.loop import local_rows, micro_batch_rows

    rows = word_rows(40)
    cfg = train_config(batch_size=12, accumulation_steps=3)
    micro = micro_batch_rows(rows, cfg, 2, 1, World(0, 2))
    assert [[len(part) for part in m] for m in micro] == [[2, 2]] * 3
    assert [r for m in micro for part in m for r in part] == batch_rows(rows, 12, 2, 1)
    assert local_rows(rows, cfg, 2, 1, World(1, 2)) == [r for m in micro for r in m[1]]
    with pytest.raises(ValueError, match="accumulation_steps=3 micro-batches of a size divisible by the 3"):
        micro_batch_rows(rows, cfg, 0, 0, World(0, 3))


def test_resume_with_accumulation_matches_uninterrupted(tmp_path):
    from embedgrid.train.loop import fit
    from embedgrid.errors import Preempted

    rows, cfg = word_rows(16), train_config(max_steps=4, batch_size=8, accumulation_steps=2, checkpoint_every=10)
    straight = tiny_encoder(dropout=0.1)
    summary = fit(straight, rows, cfg, seed=3, checkpoint_dir=tmp_path / "a")
    assert summary["accumulation_steps"] == 2 and summary["candidates_per_query"] == 8
    interrupted = tiny_encoder(dropout=0.1)
    calls = iter([False, True])
    with pytest.raises(Preempted, match="step 2/4"):
        fit(interrupted, rows, cfg, seed=3, checkpoint_dir=tmp_path / "b", should_stop=lambda: next(calls))
    resumed = tiny_encoder(dropout=0.1, seed=99)
    fit(resumed, rows, cfg, seed=3, checkpoint_dir=tmp_path / "b")
    assert max_diff(trainable(straight), trainable(resumed)) <= 1e-6


# ---- false negatives -------------------------------------------------------------------------------------
def row(query, positive, *negatives):
    from embedgrid.data.rows import Row

    return Row(query, positive, tuple(negatives))


def test_false_negative_masks_follow_the_gathered_layout():
    """Two ranks' docs in gathered order (rank 0's positives and negatives, then rank 1's): every doc with the
    text of a row's positive is masked for that row, except the row's own positive."""
    from embedgrid.train.loop import false_negative_masks

    micro = [[row("q0", "x", "y"), row("q1", "y", "x")], [row("q0", "x", "z"), row("q3", "w", "v")]]
    # gathered docs: [x, y, y, x] + [x, w, z, v]; labels 0, 1 (rank 0) and 4, 5 (rank 1)
    docs0, queries0, count = false_negative_masks(micro, 1, rank=0)
    assert docs0.nonzero().tolist() == [[0, 3], [0, 4], [1, 2]]
    docs1, queries1, count1 = false_negative_masks(micro, 1, rank=1)
    assert docs1.nonzero().tolist() == [[0, 0], [0, 3]]
    assert count == count1 == 5
    assert queries0.nonzero().tolist() == [[0, 2]] and queries1.nonzero().tolist() == [[0, 0]]  # q0 twice


def test_false_negative_mask_changes_the_loss_only_for_rows_with_an_identical_text_candidate():
    from embedgrid.losses import InfoNCELoss, same_text_mask

    torch.manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    docs = torch.nn.functional.normalize(torch.randn(8, 8), dim=-1)
    texts = ["a", "b", "c", "d", "b", "e", "f", "a"]  # positives a-d, then one hard negative each
    docs[4], docs[7] = docs[1], docs[0]  # the same text embeds the same
    mask = same_text_mask(texts[:4], texts, list(range(4)))
    assert mask.nonzero().tolist() == [[0, 7], [1, 4]]
    loss, masked = InfoNCELoss(), InfoNCELoss().excluding(mask)

    def per_row(fn, i):
        bound = fn if fn.doc_mask is None else fn.excluding(fn.doc_mask[i:i + 1])
        return bound(queries[i:i + 1], docs, label_offset=i)

    changed = [not torch.equal(per_row(loss, i), per_row(masked, i)) for i in range(4)]
    assert changed == [True, True, False, False]
    assert float(per_row(masked, 0)) < float(per_row(loss, 0))  # one negative fewer in the softmax
    torch.testing.assert_close(masked(queries, docs), torch.stack([per_row(masked, i) for i in range(4)]).mean())
    with pytest.raises(ValueError, match="does not match logits"):
        loss.excluding(mask[:, :4])(queries, docs)


def test_fit_masks_identical_text_candidates_and_logs_the_count(tmp_path):
    from embedgrid.train.loop import fit

    class Recorder:
        def __init__(self):
            self.records = []

        def log(self, metrics, step=None):
            self.records.append(metrics)

    base = word_rows(4)
    rows = [base[0], row("another query", base[0].positive, base[1].positive), base[2], base[3]]
    runs = {}
    for on in (True, False):
        logger, encoder = Recorder(), tiny_encoder()
        cfg = train_config(max_steps=1, batch_size=4, false_negative_mask=on)
        summary = fit(encoder, rows, cfg, seed=0, checkpoint_dir=tmp_path / str(on), logger=logger)
        # row 1 has row 0's positive: each of the two sees the other's as a candidate (2 pairs)
        assert logger.records[0]["train/false_negatives"] == summary["identical_text_candidates"] == 2
        runs[on] = summary["first_loss"]
    assert runs[True] < runs[False]


def test_accumulation_with_grad_cache_gives_the_plain_accumulated_gradient():
    from embedgrid.train.distributed import World
    from embedgrid.train.loop import train_step

    rows, out = word_rows(16), []
    for cached in (False, True):
        cfg = train_config(batch_size=8, accumulation_steps=2, grad_cache=cached, grad_cache_chunk=3)
        encoder = tiny_encoder()
        encoder.train()
        train_step(encoder, None, micro_parts(rows, cfg)[0], cfg, World())
        out.append(grads(encoder))
    assert float(out[0].norm()) > 0
    assert float((out[0] - out[1]).norm() / out[0].norm()) < 1e-5
