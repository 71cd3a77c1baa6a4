"""Tiny encoders, rows and train configs for the training tests (shared; test modules never import each other)."""
from __future__ import annotations

import torch

POOLINGS = {
    "mean": {"_target_": "embedgrid.model.pooling.MeanPooling"},
    "latent": {"_target_": "embedgrid.model.pooling.LatentAttentionPooling", "num_latents": 8, "num_heads": 2,
               "head_dim": None, "ff_mult": 2, "output_dim": None},
}


def tiny_encoder(pooling: str = "mean", dropout: float = 0.0, seed: int = 0, attention: str = "causal",
                 perturb_lora: bool = True, dtype: str = "float32"):
    """A tiny Qwen2 + LoRA encoder; ``perturb_lora`` makes lora_B non-zero so every LoRA matrix gets a gradient."""
    from embedgrid.model.encoder import build_encoder
    from embedgrid.model.spec import EncoderSpec, LoraSpec

    torch.manual_seed(seed)
    spec = EncoderSpec(checkpoint={"_target_": "embedgrid.assets.tiny_checkpoint"}, pooling=dict(POOLINGS[pooling]),
                       attention=attention, max_length=32, lora=LoraSpec(r=4, alpha=8, dropout=dropout), dtype=dtype)
    encoder = build_encoder(spec)
    if perturb_lora:
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, p in encoder.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    return encoder


def word_rows(n: int = 64, negatives: int = 1, instruction: str | None = None):
    from embedgrid.data.wordnet import definition_synonym_rows

    return definition_synonym_rows(limit=n, num_negatives=negatives, instruction=instruction)


def train_config(**overrides):
    from embedgrid.train.config import TrainConfig

    base = dict(max_steps=4, batch_size=4, lr=1e-3, warmup_steps=1, checkpoint_every=2, progress_bar=False)
    return TrainConfig(**{**base, **overrides})


def trainable(encoder) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in encoder.named_parameters() if p.requires_grad}


def grads(encoder) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in encoder.parameters() if p.requires_grad])


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def check_accumulated_step(micro, cfg, by_hand, atol: float) -> torch.Tensor:
    """One accumulated ``train_step`` over ``micro`` (the step's micro-batches) against each micro-batch alone on a
    fresh encoder, its loss written out by ``by_hand(queries, docs)``: the step's loss is the micro losses' mean
    (within ``atol``) and its gradient their gradients' mean (relative 1e-5). Returns that mean gradient."""
    from embedgrid.train.distributed import World
    from embedgrid.train.loop import train_step
    from embedgrid.train.step import embed_texts

    accumulated = tiny_encoder()
    accumulated.train()
    loss = train_step(accumulated, None, micro, cfg, World())
    losses, expected = [], []
    for batch, _ in micro:
        encoder = tiny_encoder()
        encoder.train()
        micro_loss = by_hand(embed_texts(encoder, batch.queries, batch.instructions), embed_texts(encoder, batch.docs))
        micro_loss.backward()
        losses.append(micro_loss.detach())
        expected.append(grads(encoder))
    torch.testing.assert_close(loss, torch.stack(losses).mean(), atol=atol, rtol=0)
    mean = torch.stack(expected).mean(0)
    assert float(mean.norm()) > 0
    assert float((grads(accumulated) - mean).norm() / mean.norm()) < 1e-5
    return mean


def straight_and_resumed(rows, cfg, tmp_path):
    """Train ``cfg`` (5 steps) straight, and again stopped after step 3 then resumed into a differently initialised
    encoder: returns (straight, resumed, the resumed fit's summary) for the caller to compare."""
    import pytest

    from embedgrid.errors import Preempted
    from embedgrid.train.loop import fit

    straight = tiny_encoder(dropout=0.1)
    fit(straight, rows, cfg, seed=3, checkpoint_dir=tmp_path / "a")
    interrupted = tiny_encoder(dropout=0.1)
    calls = iter([False, False, True])
    with pytest.raises(Preempted, match="step 3/5"):
        fit(interrupted, rows, cfg, seed=3, checkpoint_dir=tmp_path / "b", should_stop=lambda: next(calls))
    resumed = tiny_encoder(dropout=0.1, seed=99)  # different init: everything must come from the checkpoint
    summary = fit(resumed, rows, cfg, seed=3, checkpoint_dir=tmp_path / "b")
    return straight, resumed, summary
