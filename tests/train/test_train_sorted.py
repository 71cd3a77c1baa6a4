"""Length-sorted chunks: the same loss and gradients as the unsorted step, with less padding."""
from __future__ import annotations

import itertools
import random

import pytest
import torch

from tests.helpers.train import grads, tiny_encoder, word_rows


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def brute_force_cost(lengths, overhead):
    """Cheapest split of the sorted lengths into consecutive chunks, over every possible set of cuts."""
    ordered = sorted(lengths)
    best = float("inf")
    for cuts in itertools.product((False, True), repeat=len(ordered) - 1):
        cost, start = 0.0, 0
        for k, cut in enumerate(list(cuts) + [True]):
            if cut:
                cost += (k + 1 - start) * ordered[k] + overhead
                start = k + 1
        best = min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_sorted_chunks_is_the_cheapest_split(seed):
    from embedgrid.model.batching import sorted_chunks

    rng = random.Random(seed)
    lengths = [rng.choice([3, 4, 4, 7, 9, 15, 30, 31, 60]) for _ in range(rng.randint(1, 11))]
    overhead = rng.choice([0.0, 5.0, 40.0, 1e6])
    chunks = sorted_chunks(lengths, overhead)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))  # every text exactly once
    cost = sum(len(c) * max(lengths[i] for i in c) + overhead for c in chunks)
    assert cost == pytest.approx(brute_force_cost(lengths, overhead))
    if overhead >= 1e6:
        assert len(chunks) == 1


def mixed_batch():
    """Rows with and without an instruction (two prefix lengths) and texts of very different lengths."""
    from embedgrid.train.step import TextBatch

    rows = word_rows(6, 2) + word_rows(4, 2, instruction="Instruct: define the word\nQuery: ")
    batch = TextBatch.from_rows(rows, 2)
    long = "a long definition of something that goes on and on with many words " * 3
    return TextBatch(batch.queries[:-1] + [long], batch.instructions, batch.docs[:-1] + [long + "again"])


def many_chunks(monkeypatch):
    from embedgrid.train import step

    monkeypatch.setitem(step.CHUNK_OVERHEAD, False, (1e-3, 0.0))  # ~0 tokens per chunk: split wherever lengths differ
    calls = []
    original = step.Tokenized.embed

    def counting(self, encoder, index):
        calls.append(len(index))
        return original(self, encoder, index)

    monkeypatch.setattr(step.Tokenized, "embed", counting)
    return calls


@pytest.mark.parametrize("pooling,symmetric", [("mean", False), ("latent", True)])
def test_sorted_step_has_the_loss_and_gradients_of_the_unsorted_step(monkeypatch, pooling, symmetric):
    """No dropout, float32: equal up to reduction order (other padding widths change the sums: rel. 1e-5)."""
    from embedgrid.losses import InfoNCELoss
    from embedgrid.train.distributed import World
    from embedgrid.train.step import plain_step

    calls = many_chunks(monkeypatch)
    batch, loss_fn = mixed_batch(), InfoNCELoss(0.05, symmetric)
    plain, chunked = tiny_encoder(pooling), tiny_encoder(pooling)
    plain.train(), chunked.train()
    loss_plain = plain_step(plain, loss_fn, batch, World())
    loss_sorted = plain_step(chunked, loss_fn, batch, World(), length_sorted=True)
    assert len(calls) > 4 and sum(calls) == len(batch.queries) + len(batch.docs)  # really chunked
    assert float(grads(plain).norm()) > 0
    assert abs(float(loss_plain - loss_sorted)) <= 1e-5 * abs(float(loss_plain))
    assert rel_diff(grads(chunked), grads(plain)) <= 1e-5


def test_queries_and_docs_without_an_instruction_share_one_chunk(monkeypatch):
    """With a large per-chunk cost the sorted step is one forward over queries and docs together."""
    from embedgrid.losses import InfoNCELoss
    from embedgrid.train import step
    from embedgrid.train.distributed import World

    calls = many_chunks(monkeypatch)
    monkeypatch.setitem(step.CHUNK_OVERHEAD, False, (1e9, 0.0))
    batch, loss_fn = step.TextBatch.from_rows(word_rows(6, 2), 2), InfoNCELoss(0.05)
    plain, joined = tiny_encoder("mean"), tiny_encoder("mean")
    plain.train(), joined.train()
    loss_plain = step.plain_step(plain, loss_fn, batch, World())
    loss_joined = step.plain_step(joined, loss_fn, batch, World(), length_sorted=True)
    assert calls == [len(batch.queries) + len(batch.docs)]
    assert abs(float(loss_plain - loss_joined)) <= 1e-5 * abs(float(loss_plain))
    assert rel_diff(grads(joined), grads(plain)) <= 1e-5


@pytest.mark.parametrize("chunk", [3, 4])
def test_sorted_grad_cache_has_the_gradients_of_the_unsorted_step(chunk):
    from embedgrid.losses import InfoNCELoss
    from embedgrid.train.distributed import World
    from embedgrid.train.gradcache import grad_cache_step
    from embedgrid.train.step import plain_step

    batch, loss_fn = mixed_batch(), InfoNCELoss(0.05, True)
    plain, cached = tiny_encoder("latent"), tiny_encoder("latent")
    plain.train(), cached.train()
    loss_plain = plain_step(plain, loss_fn, batch, World())
    loss_cached = grad_cache_step(cached, loss_fn, batch, World(), chunk, length_sorted=True)
    assert abs(float(loss_plain - loss_cached)) <= 1e-5 * abs(float(loss_plain))
    assert rel_diff(grads(cached), grads(plain)) <= 1e-5


def test_sorted_grad_cache_chunks_are_length_sorted_and_replay_dropout():
    """With LoRA dropout the sorted GradCache step equals one autograd pass over the same sorted chunks."""
    from embedgrid.losses import InfoNCELoss
    from embedgrid.train.distributed import World
    from embedgrid.train.gradcache import _Chunks, grad_cache_step

    batch, loss_fn, chunk = mixed_batch(), InfoNCELoss(), 4
    cached = tiny_encoder(dropout=0.3)
    cached.train()
    torch.manual_seed(5)
    grad_cache_step(cached, loss_fn, batch, World(), chunk, length_sorted=True)

    reference = tiny_encoder(dropout=0.3)
    reference.train()
    torch.manual_seed(5)
    sides = [_Chunks(reference, batch.queries, batch.instructions, chunk, True),
             _Chunks(reference, batch.docs, None, chunk, True)]
    lengths = [len(r) for r in sides[1].tokenized.rows]
    flat = sides[1].flat().tolist()
    assert [lengths[i] for i in flat] == sorted(lengths) and flat != sorted(flat)
    vectors = []
    for side in sides:
        out = torch.cat([side.embed(reference, c) for c in range(len(side.index))])
        vectors.append(out[torch.argsort(side.flat())])
    loss_fn(*vectors).backward()
    assert rel_diff(grads(cached), grads(reference)) <= 1e-5
