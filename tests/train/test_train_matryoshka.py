"""Matryoshka InfoNCE: the loss written out by hand, and the same gradient under GradCache and accumulation."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.helpers.train import check_accumulated_step, grads, tiny_encoder, train_config, word_rows

DIMS, WEIGHTS = [8, 16, 64], [1.0, 0.5, 2.0]  # the tiny encoder's vectors have 64 dimensions


def by_hand(queries, docs, temperature=0.05):
    """sum_k w_k * mean_i -log softmax_j(<q_i[:k], d_j[:k]> / t)[i], prefixes renormalised."""
    total = 0.0
    for dim, weight in zip(DIMS, WEIGHTS):
        q, d = F.normalize(queries[:, :dim], dim=-1), F.normalize(docs[:, :dim], dim=-1)
        logits = q @ d.T / temperature
        total = total + weight * -(logits.diagonal() - logits.logsumexp(dim=1)).mean()
    return total


def test_the_loss_is_the_weighted_sum_over_renormalised_prefixes():
    from embedgrid.losses import InfoNCELoss, MatryoshkaInfoNCELoss

    torch.manual_seed(0)
    queries, docs = F.normalize(torch.randn(4, 64), dim=-1), F.normalize(torch.randn(12, 64), dim=-1)
    torch.testing.assert_close(MatryoshkaInfoNCELoss(DIMS, WEIGHTS)(queries, docs), by_hand(queries, docs))
    torch.testing.assert_close(MatryoshkaInfoNCELoss([64])(queries, docs), InfoNCELoss()(queries, docs))
    assert not torch.isclose(MatryoshkaInfoNCELoss([8])(queries, docs), InfoNCELoss()(queries, docs))
    with pytest.raises(ValueError, match="exceed the embedding dimension 64"):
        MatryoshkaInfoNCELoss([128])(queries, docs)


@pytest.mark.parametrize("bad, message", [({"matryoshka_dims": [8, 8]}, "distinct"),
                                          ({"matryoshka_dims": [8, 16], "matryoshka_weights": [1.0]}, "as many"),
                                          ({"matryoshka_weights": [1.0]}, "matryoshka_dims is not"),
                                          ({"matryoshka_dims": [0]}, ">= 1")])
def test_bad_settings_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        train_config(**bad)


def test_dims_beyond_the_encoder_fail_before_training():
    from embedgrid.errors import ConfigError
    from embedgrid.train.loop import make_loss

    with pytest.raises(ConfigError, match=r"train.matryoshka_dims=\[8, 128\].*keep every entry <= 64"):
        make_loss(train_config(matryoshka_dims=[8, 128]), 64)


@pytest.mark.parametrize("symmetric, chunk", [(False, 3), (True, 5)])
def test_grad_cache_gives_the_direct_gradient(symmetric, chunk):
    from embedgrid.losses import MatryoshkaInfoNCELoss
    from embedgrid.train.distributed import World
    from embedgrid.train.gradcache import grad_cache_step
    from embedgrid.train.step import TextBatch, plain_step

    batch = TextBatch.from_rows(word_rows(8, 2), 2)
    loss_fn = MatryoshkaInfoNCELoss(DIMS, WEIGHTS, 0.05, symmetric)
    plain, cached = tiny_encoder(), tiny_encoder()
    plain.train(), cached.train()
    loss_plain = plain_step(plain, loss_fn, batch, World())
    loss_cached = grad_cache_step(cached, loss_fn, batch, World(), chunk_size=chunk)
    assert float(grads(plain).norm()) > 0
    assert abs(float(loss_plain - loss_cached)) <= 1e-5 * abs(float(loss_plain))
    assert float((grads(cached) - grads(plain)).norm() / grads(plain).norm()) <= 1e-5


@pytest.mark.parametrize("grad_cache", [False, True])
def test_accumulation_gives_the_mean_of_the_micro_batches_direct_gradients(grad_cache):
    """Each micro-batch's Matryoshka loss written out by hand (no embedgrid loss), its gradient taken alone."""
    from embedgrid.train.distributed import World
    from embedgrid.train.loop import make_loss, step_batches

    cfg = train_config(batch_size=8, accumulation_steps=2, false_negative_mask=False, matryoshka_dims=DIMS,
                       matryoshka_weights=WEIGHTS, grad_cache=grad_cache, grad_cache_chunk=3)
    micro, _ = step_batches(word_rows(16), make_loss(cfg, 64), cfg, 0, 0, World())
    check_accumulated_step(micro, cfg, by_hand, atol=1e-5)
