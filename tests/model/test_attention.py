"""The attention switch, proven per decoder family (Qwen2, Mistral, Llama), attention kernel and padding side.

causal: the state at position i ignores every token after i. bidirectional: it does not. Either way a row's
states do not depend on how much padding its batch adds, or on which side (fp32, 1e-5).
"""
from __future__ import annotations

import pytest
import torch

from embedgrid.assets import tiny_checkpoint
from embedgrid.model.backbone import ATTENTION_MODES, Attention, hidden_states, load_backbone

ARCHS = ("qwen2", "mistral", "llama")
IMPLS = ("sdpa", "eager")
SIDES = ("left", "right")
PAD_ID = 2
SHORT, LONG, CHANGED_FROM = 8, 15, 5  # tokens at positions >= CHANGED_FROM differ between the two short rows


@pytest.fixture(scope="module")
def backbone():
    """backbone(arch, impl, mode): each tiny model is loaded once per module."""
    cache = {}

    def get(arch, impl, mode):
        key = (arch, impl, mode)
        if key not in cache:
            cache[key] = load_backbone(tiny_checkpoint(arch=arch), Attention(mode), attn_implementation=impl).eval()
        return cache[key]

    return get


@pytest.fixture(scope="module")
def rows():
    generator = torch.Generator().manual_seed(0)
    base = torch.randint(10, 1000, (SHORT,), generator=generator)
    changed = base.clone()
    changed[CHANGED_FROM:] = torch.randint(1000, 2000, (SHORT - CHANGED_FROM,), generator=generator)
    longer = torch.randint(10, 1000, (LONG,), generator=generator)
    return base, changed, longer


def padded_batch(rows, side):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD_ID)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    spans = []
    for i, row in enumerate(rows):
        start = width - len(row) if side == "left" else 0
        ids[i, start:start + len(row)] = row
        mask[i, start:start + len(row)] = 1
        spans.append(slice(start, start + len(row)))
    return ids, mask, spans


def real_states(model, rows, side):
    """Per row, every layer's states at its real positions: list[row] of (layers, len, hidden)."""
    ids, mask, spans = padded_batch(rows, side)
    with torch.no_grad():
        states = torch.stack(hidden_states(model, ids, mask, all_layers=True))
    return [states[:, i, span] for i, span in enumerate(spans)]


def every_backbone(test):
    """The test over every attention mode x architecture x implementation x padding side."""
    for name, values in (("mode", ATTENTION_MODES), ("arch", ARCHS), ("impl", IMPLS), ("side", SIDES)):
        test = pytest.mark.parametrize(name, values)(test)
    return test


@every_backbone
def test_later_tokens_reach_earlier_states_only_when_bidirectional(backbone, rows, arch, impl, mode, side):
    base, changed, longer = rows
    a, b, _ = real_states(backbone(arch, impl, mode), [base, changed, longer], side)
    diff = (a[:, :CHANGED_FROM] - b[:, :CHANGED_FROM]).abs().amax().item()
    if mode == "causal":
        assert diff < 1e-5, f"{arch}/{impl}/{side}: a future token changed an earlier state by {diff}"
    else:
        last_layer_diff = (a[-1, :CHANGED_FROM] - b[-1, :CHANGED_FROM]).abs().amax().item()
        assert last_layer_diff > 1e-3, f"{arch}/{impl}/{side}: bidirectional attention ignored later tokens"


@every_backbone
def test_padded_row_equals_unpadded_row(backbone, rows, arch, impl, mode, side):
    base, _, longer = rows
    model = backbone(arch, impl, mode)
    alone = real_states(model, [base], side)[0]
    in_batch = real_states(model, [base, longer], side)[0]
    torch.testing.assert_close(in_batch, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_bidirectional_survives_lora_and_checkpoint_flag(tmp_path, rows, arch):
    """A checkpoint saved bidirectional loads causal when asked (the flag is set on every load), and the
    mode survives the peft wrapper."""
    from embedgrid.model.lora import attach_lora
    from embedgrid.model.spec import EncoderSpec

    base, changed, _ = rows
    spec = EncoderSpec(checkpoint=None, pooling={"_target_": "embedgrid.model.pooling.MeanPooling"},
                       attention="bidirectional")
    bidirectional = attach_lora(load_backbone(tiny_checkpoint(arch=arch), Attention("bidirectional")), spec)
    a, b = real_states(bidirectional.eval(), [base, changed], "right")
    assert (a[-1, :CHANGED_FROM] - b[-1, :CHANGED_FROM]).abs().amax() > 1e-3

    bidirectional.get_base_model().save_pretrained(tmp_path)
    assert load_backbone(str(tmp_path), Attention("bidirectional")).config.is_causal is False
    causal = load_backbone(str(tmp_path), Attention("causal")).eval()
    a, b = real_states(causal, [base, changed], "right")
    assert (a[:, :CHANGED_FROM] - b[:, :CHANGED_FROM]).abs().amax() < 1e-5


def test_unknown_attention_names_valid_modes():
    with pytest.raises(ValueError, match=r"unknown attention.name='sideways'.*causal, bidirectional"):
        Attention("sideways")
    from embedgrid.model.spec import EncoderSpec

    with pytest.raises(ValueError, match=r"'bidi'.*valid: causal, bidirectional"):
        EncoderSpec(checkpoint="x", pooling={"_target_": "embedgrid.model.pooling.MeanPooling"}, attention="bidi")


# ---- the probe at load: the mode is proven on the model as loaded, whatever its kernel ----------------------
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("arch", ARCHS)
def test_probe_measures_what_the_later_token_does_to_the_first(backbone, arch, impl):
    from embedgrid.model.backbone import probe_attention

    assert probe_attention(backbone(arch, impl, "causal"), Attention("causal")) <= 1e-6
    assert probe_attention(backbone(arch, impl, "bidirectional"), Attention("bidirectional")) > 1e-2


@pytest.fixture
def kernel_ignoring_is_causal():
    """A custom attention kernel (as a third-party one might be) that always attends causally: registered with
    transformers' AttentionInterface, it ignores both the mask and the is_causal the config asks for."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def always_causal(module, query, key, value, attention_mask, **kwargs):
        kwargs.pop("is_causal", None)
        return sdpa_attention_forward(module, query, key, value, None, is_causal=True, **kwargs)

    AttentionInterface.register("always_causal", always_causal)
    yield "always_causal"
    AttentionInterface._global_mapping.pop("always_causal", None)


def test_a_kernel_that_ignores_is_causal_is_refused_at_load(kernel_ignoring_is_causal):
    from embedgrid.errors import AttentionMismatch

    path = tiny_checkpoint(arch="qwen2")
    model = load_backbone(path, Attention("causal"), attn_implementation=kernel_ignoring_is_causal)
    assert model.config.is_causal is True  # asked causal, computes causal: accepted
    with pytest.raises(AttentionMismatch, match=r"attn_implementation=always_causal, config\.is_causal=False\) "
                                                r"computes causal attention, but the cell asked for bidirectional"):
        load_backbone(path, Attention("bidirectional"), attn_implementation=kernel_ignoring_is_causal)


def test_a_model_whose_mask_ignores_the_config_is_refused_at_load(monkeypatch):
    """A patched model module whose mask builder ignores config.is_causal (the reference code's Qwen2BiModel
    under eager/SDPA is such a model): the config says one mode, the computation does the other."""
    import copy

    import transformers.models.qwen2.modeling_qwen2 as modeling_qwen2

    from embedgrid.errors import AttentionMismatch

    real = modeling_qwen2.create_causal_mask

    def causal_whatever_the_config(config, *args, **kwargs):
        forced = copy.copy(config)
        forced.is_causal = True
        return real(forced, *args, **kwargs)

    monkeypatch.setattr(modeling_qwen2, "create_causal_mask", causal_whatever_the_config)
    with pytest.raises(AttentionMismatch, match="computes causal attention, but the cell asked for bidirectional"):
        load_backbone(tiny_checkpoint(arch="qwen2"), Attention("bidirectional"), attn_implementation="eager")


@pytest.fixture
def kernel_causal_in_the_first_layer():
    """A kernel that honours the mask in every layer but the first (as a model mixing layer types might)."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def first_layer_causal(module, query, key, value, attention_mask, **kwargs):
        if module.layer_idx == 0:
            kwargs.pop("is_causal", None)
            return sdpa_attention_forward(module, query, key, value, None, is_causal=True, **kwargs)
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register("first_layer_causal", first_layer_causal)
    yield "first_layer_causal"
    AttentionInterface._global_mapping.pop("first_layer_causal", None)


def test_a_model_bidirectional_in_some_layers_only_is_refused_at_load(kernel_causal_in_the_first_layer):
    """The last layers' states move although the first layer stayed causal: the probe checks every layer."""
    from embedgrid.errors import AttentionMismatch
    from embedgrid.model.backbone import probe_attention

    path = tiny_checkpoint(arch="qwen2")
    with pytest.raises(AttentionMismatch, match=r"computes mixed attention \(causal in layers \[0\] of 2, 0-based\), "
                                                r"but the cell asked for bidirectional"):
        load_backbone(path, Attention("bidirectional"), attn_implementation=kernel_causal_in_the_first_layer)
    model = load_backbone(path, Attention("bidirectional"), attn_implementation="sdpa")
    model.config._attn_implementation = kernel_causal_in_the_first_layer
    with pytest.raises(AttentionMismatch, match="computes mixed attention .* asked for causal"):
        probe_attention(model, Attention("causal"))


def test_build_encoder_probes_on_the_device_and_stops_the_cell(kernel_ignoring_is_causal):
    from embedgrid.errors import AttentionMismatch
    from embedgrid.model.encoder import build_encoder
    from embedgrid.model.spec import EncoderSpec

    spec = EncoderSpec(checkpoint={"_target_": "embedgrid.assets.tiny_checkpoint"},
                       pooling={"_target_": "embedgrid.model.pooling.MeanPooling"}, attention="bidirectional",
                       attn_implementation=kernel_ignoring_is_causal)
    with pytest.raises(AttentionMismatch, match="asked for bidirectional"):
        build_encoder(spec, device="cpu")


# ---- benchmarks/gpu_check: ready to run on a GPU, refuses clearly without one -------------------------------
def test_gpu_check_refuses_clearly_without_a_gpu():
    import shutil
    import subprocess

    from tests.conftest import ROOT

    if shutil.which("nvidia-smi") or torch.cuda.is_available():
        pytest.skip("a GPU is visible: the refusal path cannot be exercised here")
    proc = subprocess.run([str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no NVIDIA GPU here" in proc.stderr


@pytest.mark.slow
def test_gpu_check_runs_end_to_end_on_a_cpu_smoke_model(tmp_path):
    """The GPU check's whole path (checkpoint, probes, a GradCache bf16-configured training cell, the MFU arithmetic)
    on a tiny CPU model, so the first GPU run does not fail on plumbing."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = tmp_path / "smoke.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [(p["attn_implementation"], p["mode"], p["outcome"]) for p in result["probes"][:2]] == [
        ("sdpa", "causal", "ok"), ("sdpa", "bidirectional", "ok")]
    cell = result["train"]
    assert cell["timed_steps"] == 2 and cell["tokens_per_s"] > 0
    # FLOPs per token: 6 N + 12 L d T for the smoke shape (2 layers, hidden 64, FFN 128, 4 heads / 2 KV, T 32)
    n = 2 * (64 * 64 * 2 + 64 * 32 * 2 + 64 + 32 * 2 + 3 * 64 * 128 + 2 * 64) + 64
    assert cell["non_embedding_params"] == n
    assert cell["flops_per_token"] == 6 * n + 12 * 2 * 64 * 32
    assert cell["mfu"] == pytest.approx(cell["achieved_tflops"] / result["peak_bf16_tflops"])
