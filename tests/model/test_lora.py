"""embedgrid.model.lora: the lean forward computes peft's LoRA, with dropout of the same distribution."""
from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
from torch import nn

from embedgrid.model.lora import dropout_keep, lean_class, use_lean_forward


def adapted(dropout: float, seed: int = 0, lean: bool = True, width: int = 24, rank: int = 4):
    """A two-layer MLP with peft LoRA on both layers (non-zero B, so the adapter changes the output)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    base = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 8))
    model = get_peft_model(base, LoraConfig(r=rank, lora_alpha=2 * rank + 3, lora_dropout=dropout,
                                            target_modules=["0", "2"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(param, std=0.3)
    return use_lean_forward(model) if lean else model


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_lean_forward_is_installed_on_every_plain_lora_linear():
    model = adapted(0.1)
    layers = [m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]
    assert len(layers) == 2 and all(type(m) is lean_class() for m in layers)


@pytest.mark.parametrize("dropout, training", [(0.0, True), (0.0, False), (0.1, False)])
def test_without_dropout_draws_the_lean_forward_equals_peft_in_output_and_gradients(dropout, training):
    """Eval (or p = 0) draws no mask, so lean and peft do the same arithmetic: equal to float32 rounding."""
    x = torch.randn(5, 7, 24)
    outs = {}
    for lean in (False, True):
        model = adapted(dropout, lean=lean)
        model.train(training)
        out = model(x)
        out.square().sum().backward()
        outs[lean] = (out.detach(), grads(model))
    (peft_out, peft_grads), (lean_out, lean_grads) = outs[False], outs[True]
    torch.testing.assert_close(lean_out, peft_out, rtol=1e-5, atol=1e-6)
    assert lean_grads.keys() == peft_grads.keys() and any("lora_A" in n for n in lean_grads)
    for name in peft_grads:
        torch.testing.assert_close(lean_grads[name], peft_grads[name], rtol=1e-4, atol=1e-6)


def test_with_dropout_the_lean_forward_is_lora_on_the_seeded_mask_scaled_by_one_over_keep():
    """The output and every gradient equal the LoRA formula written out with the mask drawn from the same seed."""
    p, x = 0.3, torch.randn(6, 24, requires_grad=True)
    model = adapted(p)
    model.train()
    first = model.base_model.model[0]
    a, b, scale = first.lora_A["default"].weight, first.lora_B["default"].weight, first.scaling["default"]
    torch.manual_seed(123)
    keep = dropout_keep(x.shape, p)
    expected = first.base_layer(x) + (x * keep / (1 - p)) @ a.t() @ b.t() * scale
    expected.square().sum().backward()
    want = {"x": x.grad.clone(), "a": a.grad.clone(), "b": b.grad.clone()}
    x.grad, a.grad, b.grad = None, None, None
    torch.manual_seed(123)
    out = first(x)
    out.square().sum().backward()
    torch.testing.assert_close(out, expected.detach(), rtol=1e-5, atol=1e-6)
    for name, got in (("x", x.grad), ("a", a.grad), ("b", b.grad)):
        torch.testing.assert_close(got, want[name], rtol=1e-5, atol=1e-6, msg=name)
    assert 0 < (keep == 0).sum() < keep.numel()  # the mask did drop something, and not everything


def test_dropout_keeps_each_element_with_probability_one_minus_p():
    p, n = 0.1, 400_000
    torch.manual_seed(0)
    keep = dropout_keep((n,), p)
    assert set(keep.unique().tolist()) <= {0.0, 1.0} and keep.dtype == torch.float32
    dropped = int((keep == 0).sum())
    assert abs(dropped - p * n) < 5 * math.sqrt(n * p * (1 - p))  # 5 sigma of a Binomial(n, p)
    torch.manual_seed(0)
    assert torch.equal(dropout_keep((n,), p), keep)  # drawn from torch's seeded default generator
    halves = keep.view(2, -1).mean(1)  # no drift along the tensor
    assert abs(float(halves[0] - halves[1])) < 5 * math.sqrt(2 * p * (1 - p) / (n // 2))


def evaluated(rows: int, dropout: float):
    """A batch of ``rows`` inputs (drawn first) and an ``adapted(dropout)`` model in eval mode."""
    x = torch.randn(rows, 24)
    model = adapted(dropout)
    model.eval()
    return x, model


def test_unusual_cases_fall_back_to_peft():
    """Adapters disabled or merged give the base (or merged) output, as peft's forward does."""
    x, model = evaluated(3, 0.1)
    first = model.base_model.model[0]
    with model.disable_adapter():
        torch.testing.assert_close(first(x), first.base_layer(x))
    adapted_out = first(x)
    first.merge()
    torch.testing.assert_close(first(x), adapted_out, rtol=1e-5, atol=1e-6)


def test_lean_layers_copy_pickle_and_merge_like_peft_layers():
    x, model = evaluated(4, 0.1)
    out = model(x)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        torch.testing.assert_close(clone(x), out)
    merged = copy.deepcopy(model).merge_and_unload()
    assert not any(hasattr(m, "lora_A") for m in merged.modules())
    torch.testing.assert_close(merged(x), out, rtol=1e-5, atol=1e-6)


def test_bf16_autocast_runs_the_lean_forward_in_bf16():
    x, model = evaluated(4, 0.0)
    reference = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16
    assert torch.nn.functional.cosine_similarity(out.float(), reference, dim=-1).min() > 0.999


def lora_layers(model):
    return [m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]


def test_merged_for_inference_gives_the_adapted_output_and_restores_the_base_weights():
    from embedgrid.model.lora import merged_for_inference

    x, model = evaluated(4, 0.1)
    out = model(x)
    before = {id(m): m.base_layer.weight.detach().clone() for m in lora_layers(model)}
    deltas = {id(m): m.get_delta_weight("default").detach().abs() for m in lora_layers(model)}
    with merged_for_inference(model) as merged:
        assert merged and all(m.merged for m in lora_layers(model))
        torch.testing.assert_close(model(x), out, rtol=1e-5, atol=1e-6)
    assert not any(m.merged for m in lora_layers(model))
    torch.testing.assert_close(model(x), out, rtol=1e-5, atol=1e-6)
    eps = torch.finfo(torch.float32).eps  # (W + D) - D: one rounding of W + D, one of the difference
    for m in lora_layers(model):
        w0 = before[id(m)]
        assert ((m.base_layer.weight - w0).abs() <= 2 * eps * (w0.abs() + deltas[id(m)])).all()


def test_merged_for_inference_unmerges_when_the_body_raises():
    from embedgrid.model.lora import merged_for_inference

    _, model = evaluated(4, 0.0)
    with pytest.raises(RuntimeError, match="inside"):
        with merged_for_inference(model):
            raise RuntimeError("inside")
    assert not any(m.merged for m in lora_layers(model))


def test_bf16_base_weights_stay_unmerged_for_inference(caplog):
    """Adding a small update to bf16 weights would round part of it away: such an adapter is not merged."""
    from embedgrid.model.lora import merged_for_inference

    _, model = evaluated(4, 0.0)
    for m in lora_layers(model):
        m.base_layer.to(torch.bfloat16)
    with caplog.at_level("INFO", logger="embedgrid.model.lora"):
        with merged_for_inference(model) as merged:
            assert not merged and not any(m.merged for m in lora_layers(model))
    assert "bfloat16" in caplog.text


def test_a_model_without_an_adapter_is_left_alone():
    from embedgrid.model.lora import merged_for_inference

    plain = nn.Linear(4, 4)
    with merged_for_inference(plain) as merged:
        assert merged is False
