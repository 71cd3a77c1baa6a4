"""The encoder for every pooling x attention cell: batch independence, save/load, LoRA, instructions, bad input."""
from __future__ import annotations

import logging
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

import embedgrid
from embedgrid.model.backbone import ensure_special_tokens, hidden_states
from embedgrid.model.encoder import Encoder, build_encoder
from embedgrid.model.pooling import POOLINGS
from embedgrid.model.pooling.sizes import conf_heads
from embedgrid.model.spec import DEFAULT_LORA_TARGETS, EncoderSpec, LoraSpec

TINY = {"_target_": "embedgrid.assets.tiny_checkpoint"}
CELLS = [(pooling, attention) for pooling in POOLINGS for attention in ("causal", "bidirectional")]
SHORT = "A small dog barks."
LONG = " ".join(["The committee reviewed every clause of the long agreement before it voted."] * 6)
MEDIUM = "Cats sleep most of the day in warm places."
INSTRUCTION = "Retrieve semantically similar text."
HEAD = f"Instruct: {INSTRUCTION}\nQuery: "  # the default template's part before the text


def tiny_spec(pooling="mean", attention="causal", pooling_overrides=None, **kwargs) -> EncoderSpec:
    kwargs.setdefault("max_length", 128)
    head = {**conf_heads()[pooling], **(pooling_overrides or {})}
    return EncoderSpec(checkpoint=dict(TINY), pooling=head, attention=attention, **kwargs)


def randomize_lora(encoder: Encoder, seed: int = 0) -> None:
    """peft starts LoRA B at zero (a no-op adapter); give it weight so saving/loading it is really tested."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in encoder.backbone.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


@pytest.fixture(scope="module")
def encoders():
    """encoders[(pooling, attention)]: one tiny encoder per cell, built once, LoRA made non-trivial."""
    cache = {}

    def get(pooling, attention):
        if (pooling, attention) not in cache:
            torch.manual_seed(0)
            encoder = build_encoder(tiny_spec(pooling, attention)).eval()
            randomize_lora(encoder)
            cache[(pooling, attention)] = encoder
        return cache[(pooling, attention)]

    return get


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("pooling, attention", CELLS)
def test_embedding_does_not_depend_on_its_batch(encoders, pooling, attention, side):
    encoder = encoders(pooling, attention)
    encoder.tokenizer.padding_side = side
    try:
        alone = encoder.encode([SHORT])[0]
        batch = encoder.encode([LONG, SHORT, MEDIUM])
    finally:
        encoder.tokenizer.padding_side = "right"
    rows = encoder.token_rows([SHORT, LONG])[0]
    assert len(rows[1]) > 4 * len(rows[0])  # the batch really pads the short text a lot
    np.testing.assert_allclose(batch[1], alone, atol=1e-5, rtol=0)
    assert batch.dtype == np.float32 and batch.shape == (3, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("mask_padding", [True, False])
def test_reference_design_4_without_a_padding_mask_depends_on_its_batch(mask_padding):
    """perceiver.mask_padding=false (the reference's design 4): latents read pad positions, so the same batch check
    as above fails; with the mask it passes."""
    torch.manual_seed(0)
    encoder = build_encoder(tiny_spec("last_layer_trainable", "bidirectional", lora=LoraSpec(enabled=False),
                                      pooling_overrides={"mask_padding": mask_padding})).eval()
    gap = []
    for side in ("left", "right"):
        encoder.tokenizer.padding_side = side
        gap.append(float(np.abs(encoder.encode([LONG, SHORT])[1] - encoder.encode([SHORT])[0]).max()))
    encoder.tokenizer.padding_side = "right"
    assert (max(gap) <= 1e-5) is mask_padding, gap


@pytest.mark.parametrize("pooling, attention", CELLS)
def test_save_then_load_encoder_gives_identical_embeddings(encoders, tmp_path, pooling, attention):
    encoder = encoders(pooling, attention)
    texts = [SHORT, LONG, MEDIUM]
    expected = encoder.encode(texts, instruction=INSTRUCTION)
    encoder.save(tmp_path / "model")
    assert {p.name for p in (tmp_path / "model").iterdir()} >= {"encoder.json", "pooling.safetensors", "adapter"}
    loaded = embedgrid.load_encoder(tmp_path)  # a cell directory: model/ is found inside it
    assert loaded.spec == encoder.spec
    np.testing.assert_allclose(loaded.encode(texts, instruction=INSTRUCTION), expected, atol=1e-6, rtol=0)
    fresh = build_encoder(tiny_spec(pooling, attention)).encode(texts, instruction=INSTRUCTION)
    assert np.abs(fresh - expected).max() > 1e-4, "the saved adapter/head made no difference: test is vacuous"


def test_lora_defaults_are_the_papers_and_configurable(encoders, compose):
    assert LoraSpec() == LoraSpec(enabled=True, r=16, alpha=32, dropout=0.1, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    from omegaconf import OmegaConf

    assert LoraSpec(**OmegaConf.to_container(compose([]).lora)) == LoraSpec()

    peft_config = encoders("mean", "causal").backbone.peft_config["default"]
    assert (peft_config.r, peft_config.lora_alpha, peft_config.lora_dropout) == (16, 32, 0.1)
    assert set(peft_config.target_modules) == set(DEFAULT_LORA_TARGETS)
    adapted = {n.split(".")[-4] for n, _ in encoders("mean", "causal").backbone.named_parameters() if "lora_A" in n}
    assert adapted == set(DEFAULT_LORA_TARGETS)

    custom = build_encoder(tiny_spec(lora=LoraSpec(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])))
    shapes = {n.split(".")[-4]: p.shape for n, p in custom.backbone.named_parameters() if "lora_A" in n}
    assert set(shapes) == {"q_proj", "v_proj"} and all(s[0] == 4 for s in shapes.values())


@pytest.mark.parametrize("pooling", ["last_layer_trainable", "multi_layer_trainable"])
def test_pooling_head_trains_in_full_with_its_own_lr(encoders, pooling):
    from embedgrid.train.config import TrainConfig
    from embedgrid.train.loop import make_optimizer

    encoder = encoders(pooling, "bidirectional")
    optimizer = make_optimizer(encoder, TrainConfig(lr=1e-4, pooling_lr=3e-3))
    head = {id(p) for p in encoder.pooling.parameters()}
    lora = {id(p) for n, p in encoder.backbone.named_parameters() if "lora_" in n}
    in_head_groups, in_backbone_groups = set(), set()
    for group in optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        if ids & head:
            assert ids <= head and group["lr"] == 3e-3
            in_head_groups |= ids
        else:
            assert group["lr"] == 1e-4
            in_backbone_groups |= ids
    assert in_head_groups == head and in_backbone_groups == lora  # base weights frozen, the whole head trained

    encoder.train()
    try:
        encoder.zero_grad()
        encoder.embed(encoder.tokenize([SHORT, LONG], INSTRUCTION)).sum().backward()
    finally:
        encoder.eval()
    missing = [n for n, p in encoder.pooling.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"pooling parameters without gradient: {missing}"
    encoder.zero_grad()


def test_lora_disabled_freezes_the_backbone():
    encoder = build_encoder(tiny_spec("last_layer_trainable", lora=LoraSpec(enabled=False)))
    trainable = {id(p) for p in encoder.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in encoder.pooling.parameters()}


def test_mteb_protocol_and_a_unique_model_meta_per_cell(encoders, compose):
    from mteb.models.models_protocols import EncoderProtocol

    from embedgrid.grid.cellid import cell_name, config_hash
    from embedgrid.evaluate.model import MtebEncoder

    metas = set()
    for pooling, attention in CELLS:
        for seed in (0, 1):
            cfg = compose(["model=tiny", f"pooling={pooling}", f"attention={attention}", f"seed={seed}"])
            model = MtebEncoder(encoders(pooling, attention), name=f"embedgrid/{cell_name(cfg)}",
                                revision=config_hash(cfg))
            assert isinstance(model, EncoderProtocol)
            metas.add((model.mteb_model_meta.name, model.mteb_model_meta.revision))
    assert len(metas) == 2 * len(CELLS)
    assert len({name for name, _ in metas}) == len({revision for _, revision in metas}) == len(metas)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("pool_instruction", [True, False])
def test_collate_pads_on_the_tokenizer_side_and_masks_rows_and_pooled_tokens(encoders, side, pool_instruction):
    encoder = encoders("mean", "causal")
    encoder = Encoder(encoder.backbone, encoder.pooling, encoder.tokenizer,
                      replace(encoder.spec, pool_instruction=pool_instruction))
    encoder.tokenizer.padding_side, prefix = side, 2
    rows = [[5, 6, 7, 8, 9], [11, 12, 13], [21, 22, 23, 24, 25, 26, 27]]
    try:
        batch = encoder.collate(rows, prefix)
    finally:
        encoder.tokenizer.padding_side = "right"
    pad, width = encoder.tokenizer.pad_token_id, 7
    for i, row in enumerate(rows):
        start = width - len(row) if side == "left" else 0
        ids = [pad] * width
        ids[start:start + len(row)] = row
        real = [int(start <= k < start + len(row)) for k in range(width)]
        pooled = [int(r and k >= start + (0 if pool_instruction else prefix)) for k, r in enumerate(real)]
        assert batch["input_ids"][i].tolist() == ids
        assert batch["attention_mask"][i].tolist() == real
        assert batch["pool_mask"][i].tolist() == pooled
    assert all(batch[k].dtype == torch.long for k in ("input_ids", "attention_mask", "pool_mask"))


def test_instruction_can_be_excluded_from_pooling(encoders):
    with_instruction = encoders("mean", "bidirectional")
    excluded = Encoder(with_instruction.backbone, with_instruction.pooling, with_instruction.tokenizer,
                       replace(with_instruction.spec, pool_instruction=False))
    texts = [SHORT, MEDIUM]
    batch = excluded.tokenize(texts, INSTRUCTION)
    n_instruction = len(excluded.tokenizer(HEAD, add_special_tokens=False).input_ids)
    text_lengths = [len(excluded.tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    assert batch["attention_mask"].sum(1).tolist() == [n_instruction + n + 1 for n in text_lengths]
    assert batch["pool_mask"].sum(1).tolist() == [n + 1 for n in text_lengths]  # text + EOS only

    with torch.no_grad():
        last = hidden_states(excluded.backbone, batch["input_ids"], batch["attention_mask"])[-1]
    expected = []
    for row, n in enumerate(text_lengths):
        start = n_instruction  # right padding, no BOS for this tokenizer
        expected.append(last[row, start:start + n + 1].mean(0))
    expected = torch.nn.functional.normalize(torch.stack(expected), dim=-1).numpy()
    np.testing.assert_allclose(excluded.encode(texts, instruction=INSTRUCTION), expected, atol=1e-5, rtol=0)
    included = with_instruction.encode(texts, instruction=INSTRUCTION)
    assert np.abs(included - expected).max() > 1e-3


def test_text_gets_bos_as_its_tokenizer_does_and_always_ends_with_eos(encoders):
    from tokenizers.processors import TemplateProcessing

    encoder = encoders("eos_last", "causal")
    tok = encoder.tokenizer
    for side in ("left", "right"):
        tok.padding_side = side
        batch = encoder.tokenize([SHORT, LONG], INSTRUCTION)
        last = batch["attention_mask"] * torch.arange(batch["attention_mask"].shape[1])
        assert batch["input_ids"].gather(1, last.argmax(1, keepdim=True)).flatten().tolist() == [tok.eos_token_id] * 2
    tok.padding_side = "right"
    assert encoder.tokenize([SHORT])["input_ids"][0, 0].item() != tok.bos_token_id  # SmolLM2 adds no BOS

    import copy

    bos_tok = copy.deepcopy(tok)
    bos_tok._tokenizer.post_processor = TemplateProcessing(single=f"{tok.bos_token} $A",
                                                           special_tokens=[(tok.bos_token, tok.bos_token_id)])
    with_bos = Encoder(encoder.backbone, encoder.pooling, bos_tok, replace(encoder.spec, pool_instruction=False))
    batch = with_bos.tokenize([SHORT], INSTRUCTION)
    n_instruction = len(tok(HEAD, add_special_tokens=False).input_ids)
    assert batch["input_ids"][0, 0].item() == tok.bos_token_id
    assert batch["pool_mask"][0, :1 + n_instruction].sum() == 0  # BOS + instruction out of pooling
    assert batch["pool_mask"][0].sum() == batch["attention_mask"][0].sum() - 1 - n_instruction


def test_without_appended_eos_a_text_ends_at_its_own_last_token(encoders):
    """append_eos=False: no EOS after the text, so eos_last pools the text's last token (last-token pooling)."""
    encoder = encoders("eos_last", "causal")
    bare = Encoder(encoder.backbone, encoder.pooling, encoder.tokenizer, replace(encoder.spec, append_eos=False))
    texts = [SHORT, MEDIUM]
    ids = [encoder.tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    rows, _ = bare.token_rows(texts)
    assert rows == ids
    assert encoder.token_rows(texts)[0] == [i + [encoder.tokenizer.eos_token_id] for i in ids]

    batch = bare.tokenize(texts)
    with torch.no_grad():
        last = hidden_states(bare.backbone, batch["input_ids"], batch["attention_mask"])[-1]
    final = [int(batch["attention_mask"][row].nonzero().max()) for row in range(len(texts))]  # either side
    assert [int(batch["input_ids"][row, final[row]]) for row in range(len(texts))] == [i[-1] for i in ids]
    expected = torch.stack([last[row, final[row]] for row in range(len(texts))])
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    np.testing.assert_allclose(bare.encode(texts), expected, atol=1e-5, rtol=0)
    assert np.abs(encoder.encode(texts) - expected).max() > 1e-3


def test_instruction_template_and_paper_joining(encoders):
    """Template: instruction part and text tokenized apart (an exact prefix); paper: one joined string tokenized."""
    encoder = encoders("mean", "causal")
    tok = encoder.tokenizer
    instruction, text = "Identify the cuisine of the given menu item", "sandwich"  # FoodEvalCuisineClustering's
    ids = lambda s: tok(s, add_special_tokens=False).input_ids  # noqa: E731
    eos = [tok.eos_token_id]
    rows, prefix = encoder.token_rows([text], instruction)
    assert rows == [ids(f"Instruct: {instruction}\nQuery: ") + ids(text) + eos]
    assert prefix == len(ids(f"Instruct: {instruction}\nQuery: "))
    assert encoder.token_rows([text])[0] == [ids(text) + eos], "no instruction: no template"

    paper = Encoder(encoder.backbone, encoder.pooling, tok, replace(encoder.spec, instruction_join="paper"))
    rows, _ = paper.token_rows([text], instruction)
    assert rows == [ids(instruction + text) + eos]
    assert ids(instruction + text) != ids(instruction) + ids(text), "this pair must tell the two apart"
    custom = Encoder(encoder.backbone, encoder.pooling, tok,
                     replace(encoder.spec, instruction_template="{text} ({instruction})"))
    assert custom.token_rows([text], instruction)[0] == [ids(text) + ids(f" ({instruction})") + eos]


@pytest.mark.parametrize("change, message", [
    ({"instruction_join": "concat"}, r"unknown instruction_join='concat'; valid: template, paper"),
    ({"instruction_template": "Query: {text}"}, r"must contain \{instruction\} exactly once"),
    ({"instruction_join": "paper", "pool_instruction": False}, r"no token boundary to mask"),
])
def test_bad_instruction_settings_fail_naming_the_fix(change, message):
    with pytest.raises(ValueError, match=message):
        tiny_spec(**change)


def test_long_texts_are_truncated_keeping_eos_and_counted(caplog):
    encoder = build_encoder(tiny_spec(lora=LoraSpec(enabled=False), max_length=16))
    batch = encoder.tokenize([LONG, SHORT])
    assert batch["input_ids"].shape[1] == 16 and batch["input_ids"][0, -1] == encoder.tokenizer.eos_token_id
    assert encoder.truncated == 1
    with caplog.at_level(logging.INFO, logger="embedgrid.model.encoder"):
        encoder.encode([LONG, SHORT, LONG + " more"], desc="probe")
    assert encoder.truncated == 3
    assert "probe: 2 of 3 texts truncated to max_length=16" in caplog.text
    with pytest.raises(ValueError, match="leaves no room for text"):
        encoder.tokenize([SHORT], instruction=LONG)


def word_tokenizer(**special):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[SEP]": 1, "</s>": 2, "a": 3, "b": 4}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", **special)


def test_tokenizer_without_eos_or_pad_is_handled():
    with pytest.raises(ValueError, match="has no EOS token"):
        ensure_special_tokens(word_tokenizer())
    sep_only = ensure_special_tokens(word_tokenizer(sep_token="[SEP]"))
    assert (sep_only.eos_token, sep_only.pad_token) == ("[SEP]", "[SEP]")
    eos_only = ensure_special_tokens(word_tokenizer(eos_token="</s>"))
    assert (eos_only.eos_token_id, eos_only.pad_token_id) == (2, 2)


def test_output_dim_comes_from_the_pooling_config():
    spec = tiny_spec("last_layer_trainable", lora=LoraSpec(enabled=False))
    spec = replace(spec, pooling={**spec.pooling, "output_dim": 24, "num_latents": 16})
    encoder = build_encoder(spec)
    assert encoder.dim == 24 and encoder.encode([SHORT]).shape == (1, 24)


def test_encode_returns_input_order_across_batches_and_sort_windows(encoders, monkeypatch):
    encoder = encoders("mean", "causal")
    texts = [LONG, SHORT, MEDIUM, SHORT + " Again.", LONG[:60]]
    one_by_one = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(encoder.encode(texts, batch_size=2), one_by_one, atol=1e-5, rtol=0)
    monkeypatch.setattr("embedgrid.model.encoder.SORT_WINDOW", 2)
    windowed = encoder.encode(texts, batch_size=2, show_progress_bar=True)
    np.testing.assert_allclose(windowed, one_by_one, atol=1e-5, rtol=0)
    assert encoder.encode([]).shape == (0, encoder.dim)


def test_token_budget_batches_keep_the_budget_and_cover_every_text():
    from embedgrid.model.batching import token_budget_batches

    rng = np.random.default_rng(0)
    lengths = sorted(rng.integers(1, 130, size=500).tolist(), reverse=True)
    for budget in (1, 64, 1000, 4096):
        slices = token_budget_batches(lengths, budget)
        assert [s for s, _ in slices] == [0] + [e for _, e in slices[:-1]] and slices[-1][1] == len(lengths)
        for start, end in slices:
            assert end > start
            # padded size: texts x the longest (the first, sorted longest first); one text may exceed a tiny budget
            assert (end - start) * lengths[start] <= budget or end - start == 1
            assert end == len(lengths) or (end - start + 1) * lengths[start] > budget   # as full as allowed
    assert token_budget_batches([], 100) == []


def test_budget_rule_never_exceeds_batch_size_long_texts_and_caps_cpu():
    from embedgrid.model.encoder import CPU_BATCH_BYTES, batch_token_budget

    assert batch_token_budget(None, 32, 512, "cpu", width=1536) == CPU_BATCH_BYTES // (4 * 1536) == 1024
    assert batch_token_budget(None, 32, 128, "cpu", width=128) == 32 * 128     # the batch_size bound wins
    assert batch_token_budget(None, 2, 64, "cpu", width=1536) == 128
    assert batch_token_budget(None, 32, 512, "cuda:0", width=4096) == 32 * 512  # GPUs: only the memory bound
    assert batch_token_budget(300, 32, 512, "cpu", width=1536) == 300


def test_token_budget_batching_gives_the_vectors_of_one_text_at_a_time(encoders):
    encoder = encoders("mean", "bidirectional")
    texts = [LONG, SHORT, MEDIUM, SHORT + " Again.", LONG[:60], MEDIUM[:20]] * 3
    one_by_one = np.stack([encoder.encode([t])[0] for t in texts])
    for budget in (1, 40, 10_000):
        np.testing.assert_allclose(encoder.encode(texts, batch_tokens=budget), one_by_one, atol=1e-5, rtol=0)


@pytest.mark.parametrize("limit", [3, 12, 200])
def test_fast_token_ids_equal_the_tokenizer_call(limit):
    from embedgrid.assets import smollm2_tokenizer_dir
    from embedgrid.model.backbone import load_tokenizer
    from embedgrid.model.encoder import text_token_ids

    tok = load_tokenizer(smollm2_tokenizer_dir())
    texts = [LONG, SHORT, MEDIUM, "", "  spaced   out  ", "<|endoftext|> inside", "naïve café — 東京", LONG * 3]
    expected = tok(texts, add_special_tokens=False, truncation=True, max_length=limit).input_ids
    assert tok.backend_tokenizer.truncation is not None      # the reference call above left truncation set
    assert text_token_ids(tok, texts, limit) == expected     # ... so this took the slow path
    tok(["reset"], add_special_tokens=False)                  # a plain call clears it, as transformers does
    assert tok.backend_tokenizer.truncation is None
    assert text_token_ids(tok, texts, limit) == expected     # the fast path


@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                    reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_encode_gives_the_eager_vectors_and_sees_new_weights():
    """``encode(compile=True)`` runs a frozen copy (LoRA merged, weights folded in as constants): float32 equals
    eager up to the merge's and fused kernels' rounding, bf16 stays within bf16 rounding of eager bf16, and a
    changed adapter (training, loading) is never served from the stale copy."""
    torch.manual_seed(0)
    encoder = build_encoder(tiny_spec("multi_layer_trainable", "bidirectional")).eval()
    texts = [LONG, SHORT, MEDIUM, SHORT + " Again.", LONG[:60], MEDIUM[:20]] * 3
    for seed in (0, 1):
        randomize_lora(encoder, seed)
        np.testing.assert_allclose(encoder.encode(texts, compile=True, batch_tokens=64),
                                   encoder.encode(texts, batch_tokens=64), atol=1e-5, rtol=0)
    cosine = (encoder.encode(texts, compile=True, bf16=True) * encoder.encode(texts, bf16=True)).sum(1)
    assert cosine.min() > 0.999  # both round every matmul input to bf16's 8 bits, in different places
    assert not any("_compiled" in key for key in encoder.state_dict())  # the copies are not submodules


def test_compile_without_a_cpu_compiler_is_refused_by_name(monkeypatch):
    from embedgrid.model.encoder import check_cpu_compiler
    from embedgrid.errors import ConfigError

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="C\\+\\+ compiler"):
        check_cpu_compiler("cpu")
    check_cpu_compiler("cuda")  # only the CPU path (inductor C++ kernels) is checked here
