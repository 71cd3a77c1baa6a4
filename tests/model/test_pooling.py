"""Pooling heads on synthetic hidden states: selection, sizes from config, padding can never leak in."""
from __future__ import annotations

import pytest
import torch

from embedgrid.model.pooling import (POOLINGS, EosLastPooling, LatentAttentionPooling, MultiLayerPooling, PerceiverPooling,
                               pooling_class)
from embedgrid.model.pooling.base import last_token_index
from embedgrid.model.pooling.sizes import conf_heads, meta_backbone, meta_pooling, reference_config

HIDDEN, LAYERS, HEADS = 32, 3, 4
SMALL = {"num_latents": 8, "ff_mult": 2}  # keyword sizes for the trainable heads in these tests


def make(name, is_causal, **kwargs):
    cls = pooling_class(name)
    extra = SMALL if cls in (LatentAttentionPooling, PerceiverPooling, MultiLayerPooling) else {}
    torch.manual_seed(0)
    return cls(hidden_size=HIDDEN, num_layers=LAYERS, is_causal=is_causal, backbone_num_heads=HEADS,
               **{**extra, **kwargs}).eval()


def test_unknown_pooling_names_valid_ones():
    with pytest.raises(ValueError, match=r"unknown pooling 'cls'.*eos_last, mean, last_layer_trainable, "
                                         r"multi_layer_trainable, nv_embed, weighted_mean"):
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
    """Pad positions filled with junk, on either side, in any amount: the same vector (docs/designs.md,
    defect 1)."""
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


def test_weighted_mean_weighs_each_token_by_its_position_among_the_real_tokens():
    torch.manual_seed(3)
    states = torch.randn(LAYERS + 1, 1, 5, HIDDEN)
    ones = torch.ones(1, 5, dtype=torch.long)
    head = make("weighted_mean", True)
    expected = (states[-1, 0] * torch.arange(1.0, 6.0)[:, None]).sum(0) / 15
    torch.testing.assert_close(head(tuple(states), ones, ones)[0], expected)
    # an excluded prefix: the remaining tokens keep their positions 3, 4, 5
    prefix = torch.tensor([[0, 0, 1, 1, 1]])
    expected = (states[-1, 0, 2:] * torch.tensor([3.0, 4.0, 5.0])[:, None]).sum(0) / 12
    torch.testing.assert_close(head(tuple(states), ones, prefix)[0], expected)


@pytest.mark.parametrize("side", ["left", "right"])
def test_weighted_mean_equals_sentence_transformers_weightedmean(side):
    """The exported module (sentence-transformers' own Pooling, mode weightedmean) pools what the head pools,
    on a batch of mixed lengths, either padding side."""
    from sentence_transformers.sentence_transformer.modules import Pooling as StPooling

    torch.manual_seed(4)
    lengths, width = [3, 7, 5], 7
    states = torch.randn(len(lengths), width, HIDDEN)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, width - n:] = 1 if side == "left" else 0
        mask[row, :n] = 0 if side == "left" else 1
    ours = make("weighted_mean", False)((states,), mask, mask)
    theirs = StPooling(HIDDEN, pooling_mode="weightedmean")({"token_embeddings": states, "attention_mask": mask})
    torch.testing.assert_close(ours, theirs["sentence_embedding"])
    alone = [make("weighted_mean", False)((states[r:r + 1],), mask[r:r + 1], mask[r:r + 1]) for r in range(3)]
    torch.testing.assert_close(ours, torch.cat(alone), atol=0, rtol=0)  # batch-invariant: row by row, bit-equal


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


@pytest.mark.parametrize("name", ["last_layer_trainable", "multi_layer_trainable", "nv_embed"])
def test_trainable_sizes_come_from_backbone_and_pooling_config(name, caplog):
    head = make(name, True)
    assert (head.block.num_heads, head.block.head_dim) == (HEADS, HIDDEN // HEADS)  # backbone's head count
    assert tuple(head.latents.shape) == (SMALL["num_latents"], HIDDEN)
    head = make(name, True, num_heads=2, head_dim=8, output_dim=12)
    assert (head.block.num_heads, head.block.head_dim, head.output_dim) == (2, 8, 12)
    states = tuple(torch.randn(2, 5, HIDDEN) for _ in range(LAYERS + 1))
    assert head(states, torch.ones(2, 5), torch.ones(2, 5)).shape == (2, 12)
    if name == "multi_layer_trainable":
        assert tuple(head.layer_weights.shape) == (LAYERS, HIDDEN)
    # beyond the fused kernels' head dim: one warning, then the math kernel (the reference pooler's 2048)
    from embedgrid.model.pooling import cross_attention

    cross_attention._warned.discard(512)
    with caplog.at_level("WARNING"):
        wide = [make(name, True, num_heads=1, head_dim=512) for _ in range(2)]
    assert [r.getMessage() for r in caplog.records].count(next(
        r.getMessage() for r in caplog.records if "head_dim 512 > 256" in r.getMessage())) == 1
    assert torch.isfinite(wide[0](states, torch.ones(2, 5), torch.ones(2, 5))).all()
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
        if isinstance(head, (LatentAttentionPooling, PerceiverPooling)):
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
    from embedgrid.model.pooling.build import build_pooling
    from embedgrid.model.pooling.sizes import reference_config

    with pytest.raises(ValueError, match=r"unknown pooling class pooling.head._target_='embedgrid.model.pooling.ClsPooling'"
                                         r".*eos_last \(embedgrid.model.pooling.EosLastPooling\)"):
        build_pooling({"_target_": "embedgrid.model.pooling.ClsPooling"}, reference_config("smollm2_135m"))


def test_the_reference_pooler_has_the_reference_size_on_mistral_7b():
    """perceiver=paper on the Mistral-7B shape: the reference's 1.278B (to_q 268M, to_kv 537M, to_out 268M, FF
    201M, latents 3M), counted on the meta device."""
    from embedgrid.model.pooling.sizes import parts

    head = meta_pooling(reference_config("mistral_7b"), conf_heads(perceiver="paper")["multi_layer_trainable"])
    counts = parts(head)
    millions = {k: round(v / 1e6) for k, v in counts.items()}
    assert millions == {"to_q": 268, "to_kv": 537, "to_out": 268, "ff": 201, "latents": 3, "layer_embedding": 0,
                        "other": 0}
    assert round(head.num_parameters / 1e6) == 1278
    assert (head.latents.shape[0], head.block.num_heads, head.block.head_dim) == (768, 32, 2048)


# ---- the Perceiver head against the paper's formula, re-implemented here from its description ----------------
def formula(head: PerceiverPooling, states, attention_mask, pool_mask, *, source, mask, normalize, layer_reduce,
            heads, head_dim, scale=None):
    """LayerNorm(inputs) and LayerNorm(latents); latents += Attn(Q = latents, K/V = inputs); latents +=
    GEGLU-FF(LayerNorm(latents)); mean over latents. Written with plain tensor ops, weights read by name."""
    w = {k: v for k, v in head.state_dict().items()}
    hidden = w["latents"].shape[1]
    real = attention_mask.bool()
    last_index = torch.tensor([int(torch.nonzero(row).max()) for row in real])
    rows = torch.arange(states[0].shape[0])
    if source == "eos":
        x = states[-1][rows, last_index].unsqueeze(1)
        keys = torch.ones(x.shape[:2], dtype=torch.bool)
    elif source == "tokens":
        x = states[-1]
        keys = pool_mask.bool() if mask else torch.ones(x.shape[:2], dtype=torch.bool)
    else:
        per_layer = []
        for h in states[1:]:
            if layer_reduce == "eos":
                per_layer.append(h[rows, last_index])
            else:
                m = pool_mask.unsqueeze(-1).to(h.dtype)
                per_layer.append((h * m).sum(1) / m.sum(1))
        x = torch.stack(per_layer, 1)
        if normalize:
            x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5)
        x = x + w["layer_weights"]
        keys = torch.ones(x.shape[:2], dtype=torch.bool)

    def layer_norm(t, name):
        mu, var = t.mean(-1, keepdim=True), t.var(-1, unbiased=False, keepdim=True)
        return (t - mu) / torch.sqrt(var + 1e-5) * w[f"{name}.weight"] + w[f"{name}.bias"]

    latents = w["latents"]
    outputs = []
    for b in range(x.shape[0]):
        ctx = layer_norm(x[b][keys[b]], "block.norm_ctx")
        q = layer_norm(latents, "block.norm_q") @ w["block.to_q.weight"].T
        k, v = (ctx @ w["block.to_kv.weight"].T).split(heads * head_dim, dim=-1)
        attended = []
        for h in range(heads):
            cut = slice(h * head_dim, (h + 1) * head_dim)
            logits = q[:, cut] @ k[:, cut].T * (head_dim ** -0.5 if scale is None else scale)
            attended.append(torch.softmax(logits, dim=-1) @ v[:, cut])
        lat = latents + torch.cat(attended, -1) @ w["block.to_out.weight"].T
        inner = layer_norm(lat, "block.norm_ff") @ w["block.ff.0.weight"].T + w["block.ff.0.bias"]
        value, gate = inner[:, :inner.shape[1] // 2], inner[:, inner.shape[1] // 2:]
        lat = lat + (value * torch.nn.functional.gelu(gate)) @ w["block.ff.2.weight"].T + w["block.ff.2.bias"]
        outputs.append(lat.mean(0))
    assert hidden == x.shape[-1]
    return torch.stack(outputs)


@pytest.mark.parametrize("source, is_causal, switches", [
    ("eos", True, {}),
    ("tokens", False, {}),
    ("tokens", False, {"mask_padding": False}),
    ("tokens", True, {"attention_scale": 0.3}),
    ("layers", True, {}),
    ("layers", False, {}),
    ("layers", False, {"normalize_layers": False, "layer_embedding_std": 1.0, "latent_init_std": 1.0}),
])
def test_perceiver_equals_the_formula(source, is_causal, switches):
    torch.manual_seed(3)
    head = PerceiverPooling(hidden_size=HIDDEN, num_layers=LAYERS, is_causal=is_causal, backbone_num_heads=HEADS,
                            input=source, num_latents=5, ff_mult=2, **switches).double().eval()
    with torch.no_grad():  # non-trivial norms and biases, so a skipped LayerNorm affine or bias would show
        for p in head.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.3)
    states = tuple(torch.randn(3, 6, HIDDEN, dtype=torch.float64) for _ in range(LAYERS + 1))
    attention_mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1]])
    pool_mask = attention_mask.clone()
    pool_mask[1, :2] = 0  # an excluded prefix
    expected = formula(head, states, attention_mask, pool_mask, source=source,
                       mask=switches.get("mask_padding", True), normalize=switches.get("normalize_layers", True),
                       layer_reduce="eos" if is_causal else "mean", heads=HEADS, head_dim=HIDDEN // HEADS,
                       scale=switches.get("attention_scale"))
    with torch.no_grad():
        torch.testing.assert_close(head(states, attention_mask, pool_mask), expected, atol=1e-10, rtol=0)


def test_perceiver_input_follows_the_attention_and_the_config():
    reference = dict(input="tokens", causal_input="eos")
    assert make("last_layer_trainable", True, **reference).input == "eos"  # design 2 as the reference ran it
    assert make("last_layer_trainable", False, **reference).input == "tokens"  # design 4
    assert make("last_layer_trainable", True).input == "tokens"  # corrected design 2
    assert make("multi_layer_trainable", True).needs_all_layers
    assert not make("last_layer_trainable", True).needs_all_layers
    with pytest.raises(ValueError, match=r"unknown pooling input 'cls'; valid: eos, tokens, layers"):
        make("last_layer_trainable", True, input="cls")
    with pytest.raises(TypeError, match="input"):
        make("multi_layer_trainable", True, input="tokens")


@pytest.mark.parametrize("mask_padding", [True, False])
def test_mask_padding_decides_whether_the_vector_depends_on_the_batch(mask_padding):
    """Pad positions hold non-zero states (as a real decoder's do): without the mask the latents read them."""
    head = make("last_layer_trainable", False, mask_padding=mask_padding)
    torch.manual_seed(4)
    real = torch.randn(LAYERS + 1, 6, HIDDEN)
    pad_state = torch.randn(1, 1, HIDDEN)
    vectors = []
    for pad, side in [(0, "left"), (3, "left"), (3, "right")]:
        states, mask = padded(real, pad, side, pad_state)
        with torch.no_grad():
            vectors.append(head(tuple(states.unsqueeze(1)), mask[None], mask[None])[0])
    invariant = all(torch.allclose(v, vectors[0], atol=1e-5, rtol=0) for v in vectors[1:])
    assert invariant is mask_padding
