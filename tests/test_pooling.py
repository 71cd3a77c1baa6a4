"""Pooling heads on synthetic hidden states: selection, sizes from config, padding can never leak in."""
from __future__ import annotations

import pytest
import torch

from embedgrid.pooling import POOLINGS, EosLastPooling, LatentAttentionPooling, MultiLayerPooling, pooling_class
from embedgrid.pooling.base import last_token_index
from embedgrid.pooling.sizes import conf_heads, meta_backbone, meta_pooling, reference_config

HIDDEN, LAYERS, HEADS = 32, 3, 4
SMALL = {"num_latents": 8, "ff_mult": 2}  # keyword sizes for the trainable heads in these tests


def make(name, is_causal, **kwargs):
    cls = pooling_class(name)
    extra = SMALL if cls in (LatentAttentionPooling, MultiLayerPooling) else {}
    torch.manual_seed(0)
    return cls(hidden_size=HIDDEN, num_layers=LAYERS, is_causal=is_causal, backbone_num_heads=HEADS,
               **{**extra, **kwargs}).eval()


def test_unknown_pooling_names_valid_ones():
    with pytest.raises(ValueError, match=r"unknown pooling 'cls'.*eos_last, mean, last_layer_trainable, "
                                         r"multi_layer_trainable"):
        pooling_class("cls")


def test_every_design_has_a_config_with_its_class():
    from hydra.utils import get_class

    heads = conf_heads()
    assert set(heads) == set(POOLINGS)
    for name, head in heads.items():
        assert get_class(head["_target_"]) is POOLINGS[name]


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_token_index_either_padding_side(side):
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]) if side == "left" else \
        torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert last_token_index(mask).tolist() == ([4, 4] if side == "left" else [2, 4])


def padded(layers_states, pad, side, fill):
    """Place (layers, T, H) real states in a row of T + pad positions; pad positions hold ``fill``."""
    n_layers, length, hidden = layers_states.shape
    states = fill.expand(n_layers, length + pad, hidden).clone()
    start = pad if side == "left" else 0
    states[:, start:start + length] = layers_states
    mask = torch.zeros(length + pad, dtype=torch.long)
    mask[start:start + length] = 1
    return states, mask


@pytest.mark.parametrize("junk", ["huge", "nan"])
@pytest.mark.parametrize("is_causal", [True, False])
@pytest.mark.parametrize("name", list(POOLINGS))
def test_padding_amount_and_side_never_change_the_vector(name, is_causal, junk):
    """Pad positions filled with junk, on either side, in any amount: the same vector (docs/designs.md, defect 1)."""
    head = make(name, is_causal)
    torch.manual_seed(1)
    real = torch.randn(LAYERS + 1, 6, HIDDEN)
    junk = torch.randn(1, 1, HIDDEN) * 100 if junk == "huge" else torch.full((1, 1, HIDDEN), float("nan"))

    def pooled(pad, side):
        states, mask = padded(real, pad, side, junk)
        pool_mask = mask.clone()
        with torch.no_grad():
            return head(tuple(states.unsqueeze(1)), mask[None], pool_mask[None])[0]

    reference = pooled(0, "right")
    for pad, side in [(1, "left"), (9, "left"), (1, "right"), (9, "right")]:
        torch.testing.assert_close(pooled(pad, side), reference, atol=1e-5, rtol=0)


def test_pool_mask_selects_the_mean_and_layer_vectors():
    torch.manual_seed(2)
    states = torch.randn(LAYERS + 1, 1, 5, HIDDEN)
    attention_mask = torch.ones(1, 5, dtype=torch.long)
    pool_mask = torch.tensor([[0, 0, 1, 1, 1]])
    mean = make("mean", True)(tuple(states), attention_mask, pool_mask)
    torch.testing.assert_close(mean[0], states[-1, 0, 2:].mean(0))
    eos = make("eos_last", True)(tuple(states), attention_mask, pool_mask)
    torch.testing.assert_close(eos[0], states[-1, 0, 4])

    multi = make("multi_layer_trainable", False)
    vectors = multi.layer_vectors(tuple(states), attention_mask, pool_mask)
    expected = torch.nn.functional.layer_norm(states[1:, 0, 2:].mean(1), (HIDDEN,))
    torch.testing.assert_close(vectors[0], expected)


def test_multi_layer_reduces_by_eos_when_causal_and_mean_when_bidirectional():
    assert make("multi_layer_trainable", True).layer_reduce == "eos"
    assert make("multi_layer_trainable", False).layer_reduce == "mean"
    assert make("multi_layer_trainable", True, layer_reduce="mean").layer_reduce == "mean"
    with pytest.raises(ValueError, match=r"unknown layer_reduce 'max'.*auto, eos, mean"):
        make("multi_layer_trainable", True, layer_reduce="max")


def test_multi_layer_checks_the_layer_count():
    head = make("multi_layer_trainable", True)
    states = tuple(torch.randn(1, 4, HIDDEN) for _ in range(LAYERS))  # one short
    with pytest.raises(ValueError, match=f"expected {LAYERS} layer outputs"):
        head(states, torch.ones(1, 4), torch.ones(1, 4))


@pytest.mark.parametrize("name", ["last_layer_trainable", "multi_layer_trainable"])
def test_trainable_sizes_come_from_backbone_and_pooling_config(name):
    head = make(name, True)
    assert (head.block.num_heads, head.block.head_dim) == (HEADS, HIDDEN // HEADS)  # backbone's head count
    assert tuple(head.latents.shape) == (SMALL["num_latents"], HIDDEN)
    head = make(name, True, num_heads=2, head_dim=8, output_dim=12)
    assert (head.block.num_heads, head.block.head_dim, head.output_dim) == (2, 8, 12)
    states = tuple(torch.randn(2, 5, HIDDEN) for _ in range(LAYERS + 1))
    assert head(states, torch.ones(2, 5), torch.ones(2, 5)).shape == (2, 12)
    if name == "multi_layer_trainable":
        assert tuple(head.layer_weights.shape) == (LAYERS, HIDDEN)
    with pytest.raises(ValueError, match="head_dim 512 > 256"):
        make(name, True, num_heads=1, head_dim=512)
    with pytest.raises(ValueError, match="not divisible"):
        make(name, True, num_heads=5)


def closed_form_parameters(d, layers, latents, heads, head_dim, ff_mult, multi_layer):
    inner = heads * head_dim
    attention = d * inner + 2 * d * inner + inner * d
    norms = 3 * 2 * d
    ff = d * 2 * ff_mult * d + 2 * ff_mult * d + ff_mult * d * d + d
    return latents * d + norms + attention + ff + (layers * d if multi_layer else 0)


@pytest.mark.parametrize("shape, backbone_parameters", [("smollm2_135m", 134_515_008),
                                                        ("mistral_7b", 7_110_660_096)])
def test_head_parameters_for_real_shapes_on_the_meta_device(shape, backbone_parameters):
    """Default conf/pooling heads sized for SmolLM2-135M and Mistral-7B, built without allocating weights."""
    config = reference_config(shape)
    backbone = meta_backbone(config)
    assert all(p.is_meta for p in backbone.parameters())
    assert sum(p.numel() for p in backbone.parameters()) == backbone_parameters
    heads = conf_heads()
    for name, head_cfg in heads.items():
        head = meta_pooling(config, head_cfg)
        assert all(p.is_meta for p in head.parameters())
        if isinstance(head, (LatentAttentionPooling, MultiLayerPooling)):
            d, n_heads = config.hidden_size, config.num_attention_heads
            expected = closed_form_parameters(d, config.num_hidden_layers, head_cfg["num_latents"], n_heads,
                                              d // n_heads, head_cfg["ff_mult"], isinstance(head, MultiLayerPooling))
            assert head.num_parameters == expected
            assert head.block.head_dim <= 256
        else:
            assert head.num_parameters == 0


def test_eos_last_reads_the_last_real_token_whatever_is_after_it():
    head = EosLastPooling(hidden_size=4, num_layers=1, is_causal=True)
    states = torch.arange(2 * 4 * 4, dtype=torch.float32).view(2, 4, 4)
    mask = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1]])
    out = head((states,), mask, mask)
    torch.testing.assert_close(out, torch.stack([states[0, 1], states[1, 3]]))


def test_unknown_pooling_class_in_a_config_names_the_valid_ones():
    from embedgrid.pooling.build import build_pooling
    from embedgrid.pooling.sizes import reference_config

    with pytest.raises(ValueError, match=r"unknown pooling class pooling.head._target_='embedgrid.pooling.ClsPooling'"
                                         r".*eos_last \(embedgrid.pooling.EosLastPooling\)"):
        build_pooling({"_target_": "embedgrid.pooling.ClsPooling"}, reference_config("smollm2_135m"))
