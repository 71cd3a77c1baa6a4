"""Export to sentence-transformers: the exported directory encodes exactly what the cell's encoder encodes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

POOLINGS = {  # the paper's pooling groups (designs 1-5), the reference's EOS-input design 2, NV-Embed, weighted mean
    "eos_last": {"_target_": "embedgrid.model.pooling.EosLastPooling"},
    "mean": {"_target_": "embedgrid.model.pooling.MeanPooling"},
    "weighted_mean": {"_target_": "embedgrid.model.pooling.WeightedMeanPooling"},
    "last_layer_trainable": {"_target_": "embedgrid.model.pooling.PerceiverPooling", "input": "tokens", "num_latents": 8,
                             "num_heads": 2, "ff_mult": 2},
    "last_layer_trainable_eos": {"_target_": "embedgrid.model.pooling.PerceiverPooling", "input": "tokens",
                                 "causal_input": "eos", "num_latents": 8, "num_heads": 2, "ff_mult": 2},
    "multi_layer_trainable": {"_target_": "embedgrid.model.pooling.MultiLayerPooling", "num_latents": 8, "num_heads": 2,
                              "ff_mult": 2, "layer_reduce": "auto"},
    "nv_embed": {"_target_": "embedgrid.model.pooling.LatentAttentionPooling", "num_latents": 8, "num_heads": 2,
                 "head_dim": None, "ff_mult": 2, "output_dim": None},
}
ST_OWN = {"eos_last": "lasttoken", "mean": "mean", "weighted_mean": "weightedmean"}  # sentence-transformers' modes
TEXTS = ["a dog", "the cat sat on the mat while the dog slept by the fire", "x",
         "a long text " * 30]  # the last one is truncated to max_length


def saved_encoder(directory, pooling: str, attention: str, checkpoint=None, append_eos: bool = True):
    """A tiny encoder with non-zero LoRA and head weights, saved as a cell's model/ directory."""
    from embedgrid.model.encoder import build_encoder
    from embedgrid.model.spec import EncoderSpec, LoraSpec

    torch.manual_seed(0)
    spec = EncoderSpec(checkpoint=checkpoint or {"_target_": "embedgrid.assets.tiny_checkpoint"},
                       pooling=dict(POOLINGS[pooling]), attention=attention, max_length=24, append_eos=append_eos,
                       lora=LoraSpec(r=4, alpha=8, dropout=0.0))
    encoder = build_encoder(spec)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in encoder.named_parameters():
            if "lora_B" in name or name.startswith("pooling."):
                p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    encoder.save(directory / "model")
    return encoder


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
@pytest.mark.parametrize("pooling", list(POOLINGS))
def test_sentence_transformers_encodes_what_the_cell_encodes(tmp_path, pooling, attention):
    from sentence_transformers import SentenceTransformer

    import embedgrid
    from embedgrid.export import export_cell

    saved_encoder(tmp_path / "cell", pooling, attention)
    ours = embedgrid.load_encoder(tmp_path / "cell").encode(TEXTS, batch_size=2)
    out = export_cell(tmp_path / "cell", tmp_path / "st")
    # sentence-transformers 6 imports a module class outside its own namespace only with trust_remote_code
    # (here: the installed embedgrid.export.st_modules, for the trainable heads)
    trainable = pooling not in ST_OWN
    if trainable:
        with pytest.raises(ValueError, match="trust_remote_code"):
            SentenceTransformer(str(out), device="cpu")
    theirs = SentenceTransformer(str(out), device="cpu", trust_remote_code=trainable).encode(
        TEXTS, batch_size=3, convert_to_numpy=True)
    # float32, same ops, only the merged LoRA weights (W + BA rounded once) and the batch composition differ
    assert np.abs(ours - theirs).max() <= 1e-5
    config = json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else None
    backbone = json.loads(next(out.rglob("config.json")).read_text()) if config is None else config
    modules = json.loads((out / "modules.json").read_text())
    st_pooling = [m["type"] for m in modules]
    if pooling in ST_OWN:
        assert "sentence_transformers.sentence_transformer.modules.pooling.Pooling" in st_pooling or any(
            t.endswith("Pooling") and t.startswith("sentence_transformers") for t in st_pooling)
        pooling_dir = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
        assert json.loads((out / pooling_dir / "config.json").read_text())["pooling_mode"] == ST_OWN[pooling]
    else:
        assert "embedgrid.export.st_modules.EmbedgridPooling" in st_pooling
    record = json.loads((out / "embedgrid.json").read_text())
    assert record["attention"] == attention and record["lora_merged"] is True
    assert (out / "README.md").exists()
    del backbone


def test_the_export_carries_a_truncation_sentence_transformers_applies(tmp_path):
    """eval.truncate_dim: recorded with the export; sentence-transformers' own truncate_dim (a load argument) then
    gives the vectors embedgrid evaluated (the renormalised prefix)."""
    from sentence_transformers import SentenceTransformer

    from embedgrid.evaluate.model import truncate
    from embedgrid.export import export_cell
    from embedgrid.io import write_json

    encoder = saved_encoder(tmp_path / "cell", "weighted_mean", "bidirectional")
    write_json(tmp_path / "cell" / "cell.json", {"cell": "c", "config": {"eval": {"truncate_dim": 16}}})
    out = export_cell(tmp_path / "cell", tmp_path / "st")
    assert json.loads((out / "embedgrid.json").read_text())["truncate_dim"] == 16
    assert "truncate_dim=16" in (out / "README.md").read_text()
    theirs = SentenceTransformer(str(out), device="cpu", truncate_dim=16).encode(
        TEXTS, batch_size=3, convert_to_numpy=True, normalize_embeddings=True)
    assert theirs.shape == (len(TEXTS), 16)
    assert np.abs(truncate(encoder.encode(TEXTS, batch_size=2), 16) - theirs).max() <= 1e-5
    with pytest.raises(ValueError, match="truncate_dim=99 is outside 1..64"):
        export_cell(tmp_path / "cell", tmp_path / "st2", truncate_dim=99)


def test_exporting_an_encoder_without_lora_leaves_its_backbone_config_alone(tmp_path):
    from embedgrid.model.encoder import build_encoder
    from embedgrid.export.writer import _backbone_dir
    from embedgrid.model.spec import EncoderSpec, LoraSpec

    spec = EncoderSpec(checkpoint={"_target_": "embedgrid.assets.tiny_checkpoint"},
                       pooling=dict(POOLINGS["multi_layer_trainable"]), attention="causal", max_length=24,
                       lora=LoraSpec(enabled=False))
    encoder = build_encoder(spec)
    before = encoder.backbone.config.output_hidden_states
    _backbone_dir(encoder, tmp_path / "backbone")
    assert json.loads((tmp_path / "backbone" / "config.json").read_text())["output_hidden_states"] is True
    assert before is not True and encoder.backbone.config.output_hidden_states == before


def test_a_bidirectional_export_loads_bidirectional(tmp_path):
    """A later token changes an earlier token's state only under bidirectional attention."""
    from sentence_transformers import SentenceTransformer

    from embedgrid.export import export_cell

    saved_encoder(tmp_path / "cell", "mean", "bidirectional")
    out = export_cell(tmp_path / "cell", tmp_path / "st")
    model = SentenceTransformer(str(out), device="cpu")
    backbone = model[0].auto_model
    assert backbone.config.is_causal is False
    ids = torch.tensor([[5, 6, 7], [5, 6, 9]])
    states = backbone(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
    assert (states[0, 0] - states[1, 0]).abs().max() > 1e-4


def test_an_existing_non_empty_directory_is_never_overwritten(tmp_path):
    from embedgrid.export import export_cell

    saved_encoder(tmp_path / "cell", "mean", "causal")
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        export_cell(tmp_path / "cell", tmp_path / "st")
    assert (tmp_path / "st" / "keep.txt").read_text() == "mine"


def test_push_to_hub_uploads_the_directory_through_huggingface_hub(tmp_path):
    from embedgrid.export import export_cell

    calls = []

    class FakeApi:
        def create_repo(self, **kwargs):
            calls.append(("create_repo", kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))
            return type("Info", (), {"commit_url": "https://hub/commit/1"})()

    import huggingface_hub

    saved_encoder(tmp_path / "cell", "mean", "causal")
    original = huggingface_hub.HfApi
    huggingface_hub.HfApi = FakeApi
    try:
        out = export_cell(tmp_path / "cell", tmp_path / "st", push_to_hub="me/cell")
    finally:
        huggingface_hub.HfApi = original
    assert calls[0] == ("create_repo", {"repo_id": "me/cell", "repo_type": "model", "private": True,
                                        "exist_ok": True})
    assert calls[1][1]["folder_path"] == str(out) and calls[1][1]["repo_id"] == "me/cell"


def test_cell_model_meta_is_what_mteb_leaderboard_files_carry(compose):
    from mteb.models.model_meta import ModelMeta

    from embedgrid.evaluate.meta import cell_model_meta
    from embedgrid.evaluate.model import MtebEncoder
    from embedgrid.grid.plan import resolve_plan
    from tests.helpers.train import tiny_encoder

    cfg = compose(["model=smollm2_135m"])
    encoder = tiny_encoder()
    plan = resolve_plan(cfg)
    meta = cell_model_meta(encoder, card=plan.card, data_name=plan.data.name, loader=plan.data.loader,
                           trains=plan.trains)
    assert meta["license"] == "apache-2.0" and meta["adapted_from"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["n_parameters"] == sum(p.numel() for p in encoder.parameters())
    wrapped = MtebEncoder(encoder, name="embedgrid/cell", revision="r0", instructions={"T": "x"}, meta=meta)
    model_meta = wrapped.mteb_model_meta
    assert isinstance(model_meta, ModelMeta)
    for field in ("name", "revision", "release_date", "languages", "n_parameters", "max_tokens", "embed_dim",
                  "license", "framework", "similarity_fn_name", "use_instructions", "training_datasets"):
        assert getattr(model_meta, field) is not None, field
    assert model_meta.embed_dim == encoder.dim and model_meta.use_instructions is True


def test_the_model_card_metadata_is_not_part_of_the_cell_identity(compose):
    from embedgrid.grid.cellid import cell_name

    assert cell_name(compose(["model=tiny", "+model.card.extra=1"])) == cell_name(compose(["model=tiny"]))


def test_the_cli_prints_how_to_load_the_truncated_export(tmp_path, capsys):
    from embedgrid.export.__main__ import main

    saved_encoder(tmp_path / "cell", "mean", "causal")
    main([str(tmp_path / "cell"), str(tmp_path / "st"), "--truncate-dim", "8"])
    printed = capsys.readouterr().out
    assert "truncate_dim=8).encode(texts, normalize_embeddings=True)" in printed
    assert json.loads((tmp_path / "st" / "embedgrid.json").read_text())["truncate_dim"] == 8
