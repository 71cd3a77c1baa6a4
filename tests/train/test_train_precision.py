"""bf16: the setting (false | true | auto), the pooling head and loss in float32, and the one-cast weights."""
from __future__ import annotations

import pytest
import torch

from tests.helpers.train import grads, tiny_encoder, word_rows


def test_bf16_setting_accepts_false_true_auto_and_names_them_otherwise():
    from embedgrid.precision import check_bf16_setting
    from embedgrid.train.config import TrainConfig

    assert [check_bf16_setting(v) for v in (False, True, "auto", "AUTO", "true", "false")] == \
        [False, True, "auto", "auto", True, False]
    assert TrainConfig().bf16 is False
    for bad in ("yes", 1, None, "bf16"):
        with pytest.raises(ValueError, match="valid: false, true, auto"):
            TrainConfig(bf16=bad)


def test_auto_follows_the_hardware(monkeypatch):
    from embedgrid import precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.bf16_active("auto", cpu) and precision.bf16_active(True, cpu)
    assert not precision.bf16_active(False, cpu)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert not precision.bf16_active("auto", cpu) and precision.bf16_active(True, cpu)
    assert not precision.bf16_active("auto", torch.device("meta"))


def test_cpu_detection_reads_the_flags(monkeypatch, tmp_path):
    import builtins

    from embedgrid import precision

    real_open = builtins.open
    for flags, expected in (("fpu avx512f avx512_bf16", True), ("fpu amx_bf16 amx_tile", True), ("fpu avx2", False)):
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda p, *a, **k: real_open(info if p == "/proc/cpuinfo" else p, *a, **k))
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
        precision.cpu_has_native_bf16.cache_clear()
        assert precision.cpu_has_native_bf16() is expected, flags
    precision.cpu_has_native_bf16.cache_clear()


def test_frozen_weights_in_bf16_gives_plain_autocasts_numbers_and_restores_the_weights():
    from embedgrid.precision import autocast, frozen_weights_in_bf16

    encoder = tiny_encoder("latent")
    encoder.eval()
    batch = encoder.tokenize(["a short text", "a somewhat longer text with more words in it"])
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    with torch.no_grad(), autocast(encoder.device, True):
        plain = encoder.embed(batch)
        with frozen_weights_in_bf16(encoder.backbone):
            dtypes = {p.dtype for n, p in encoder.backbone.named_parameters() if n.endswith("base_layer.weight")}
            cast_once = encoder.embed(batch)
    assert dtypes == {torch.bfloat16}
    assert torch.equal(plain, cast_once)
    after = dict(encoder.named_parameters())
    assert all(torch.equal(before[n], after[n]) and after[n].dtype == torch.float32 for n in before)


def test_the_pooling_head_runs_in_float32_under_autocast():
    from embedgrid.precision import autocast

    encoder = tiny_encoder("latent")
    seen = []
    for module in encoder.pooling.modules():  # every matmul of the head, not just its (float32-cast) output
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    with torch.no_grad(), autocast(encoder.device, True):
        encoder.embed(encoder.tokenize(["one text", "another"]))
    assert len(seen) >= 2 and set(seen) == {torch.float32}


def test_bf16_step_is_close_to_float32_and_really_bf16():
    """bf16 matmuls (8-bit mantissa): the loss within 1 % and the gradient direction within a few % of float32."""
    from embedgrid.losses import InfoNCELoss
    from embedgrid.train.distributed import World
    from embedgrid.train.step import TextBatch, plain_step

    batch, loss_fn = TextBatch.from_rows(word_rows(8, 1), 1), InfoNCELoss(0.05)
    results = {}
    for bf16 in (False, True):
        encoder = tiny_encoder("latent")
        encoder.train()
        loss = plain_step(encoder, loss_fn, batch, World(), bf16=bf16, length_sorted=True)
        results[bf16] = (float(loss), grads(encoder))
        assert all(p.dtype == torch.float32 for p in encoder.parameters())
    (loss32, g32), (loss16, g16) = results[False], results[True]
    assert loss16 != loss32  # bf16 really ran
    assert abs(loss16 - loss32) <= 1e-2 * abs(loss32)
    assert float(torch.nn.functional.cosine_similarity(g16, g32, dim=0)) >= 0.97


@pytest.mark.parametrize("pooling", ["mean", "latent"])
def test_encode_in_bf16_is_close_to_float32_and_restores_the_weights(pooling):
    encoder = tiny_encoder(pooling)
    texts = ["a short text", "a somewhat longer text with more words in it", "x"]
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    fp32, bf16 = encoder.encode(texts), encoder.encode(texts, bf16=True)
    assert bf16.dtype == fp32.dtype and (abs(bf16 - fp32).max() > 0)  # bf16 really ran
    assert float((bf16 * fp32).sum(1).min()) >= 0.99  # cosine of unit vectors (bf16: 8-bit mantissa)
    after = dict(encoder.named_parameters())
    assert all(torch.equal(before[n], after[n]) and after[n].dtype == torch.float32 for n in before)
    assert (encoder.encode(texts) == fp32).all()
    with pytest.raises(ValueError, match="encode"):
        encoder.encode(texts, bf16="maybe")
