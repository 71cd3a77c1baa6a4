"""Cached offline assets: building one never perturbs the caller, and whoever builds it writes a whole checkpoint."""
from __future__ import annotations

import torch


def _weights(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(f"{path}/model.safetensors")


def test_a_cold_tiny_build_leaves_rng_and_dtype_alone_and_matches_a_warm_one(tmp_path, monkeypatch):
    from embedgrid.assets import tiny_checkpoint

    warm = _weights(tiny_checkpoint())  # the session cache
    monkeypatch.setenv("EMBEDGRID_CACHE", str(tmp_path))
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    torch.set_default_dtype(torch.float64)
    try:
        cold = tiny_checkpoint()
        assert torch.get_default_dtype() == torch.float64
        assert torch.equal(torch.rand(3, dtype=torch.float32), expected_next)  # RNG stream untouched
    finally:
        torch.set_default_dtype(torch.float32)
    got = _weights(cold)
    assert got.keys() == warm.keys() and all(torch.equal(got[k], warm[k]) for k in warm)
    assert all(t.dtype == torch.float32 for t in got.values())


def test_a_non_zero_rank_writes_the_whole_checkpoint(tmp_path, monkeypatch):
    """transformers' save_pretrained writes nothing on rank != 0; the cache build must not depend on it."""
    import torch.distributed as dist

    from embedgrid.assets import tiny_checkpoint

    monkeypatch.setenv("EMBEDGRID_CACHE", str(tmp_path))
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda *a, **k: 1)
    path = tiny_checkpoint()
    for name in ("config.json", "model.safetensors", "tokenizer/tokenizer.json", "complete.json"):
        assert (tmp_path / path.split("/")[-1] / name).exists(), name


def test_tied_embeddings_are_saved_where_a_headless_backbone_finds_them(tmp_path):
    """SmolLM2 ties lm_head to the token embeddings; the converted checkpoint is loaded with AutoModel (no head),
    so the shared tensor must be saved as model.embed_tokens, not only as lm_head (random embeddings otherwise)."""
    from transformers import AutoModel, LlamaConfig, LlamaForCausalLM

    from embedgrid.assets import save_checkpoint

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    save_checkpoint(model, tmp_path)
    backbone, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"], info
    assert torch.equal(backbone.embed_tokens.weight, model.model.embed_tokens.weight)
