"""Write a sentence-transformers directory equivalent to a cell's encoder (``SentenceTransformer(out).encode(texts)``
equals ``embedgrid.load_encoder(cell).encode(texts)``)."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from embedgrid.export.card import ST_POOLING_MODES

log = logging.getLogger(__name__)

EXPORT_FILE = "embedgrid.json"


def export_cell(cell_dir: str | os.PathLike, out_dir: str | os.PathLike, *, push_to_hub: str | None = None,
                private: bool = True, truncate_dim: int | None = None) -> Path:
    """Export ``cell_dir`` (a finished cell or a saved encoder) to ``out_dir``; returns ``out_dir``.

    ``truncate_dim`` (default: the cell's ``eval.truncate_dim``) is recorded in ``embedgrid.json`` and the model
    card: sentence-transformers applies it as a load argument, ``SentenceTransformer(dir, truncate_dim=k)``, and
    does not store it in a saved model.

    The LoRA adapter is always merged into the backbone weights. A separate adapter would load its base model by
    id, whose hub config cannot carry ``is_causal: false`` (a bidirectional cell would load causal) nor name a
    packaged checkpoint, and sentence-transformers 6.2 loads PEFT adapters only with peft >= 0.22, which this
    project's peft pin (0.21) excludes.
    """
    from embedgrid.grid.celldir import saved_encoder_dir
    from embedgrid.model.encoder import load_encoder

    cell_dir, out_dir = Path(cell_dir), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty; export into a new directory")
    encoder = load_encoder(saved_encoder_dir(cell_dir), device="cpu")
    record = _cell_record(cell_dir)
    if truncate_dim is None:
        truncate_dim = ((record.get("config") or {}).get("eval") or {}).get("truncate_dim")
    if truncate_dim is not None and not 1 <= int(truncate_dim) <= encoder.dim:
        raise ValueError(f"truncate_dim={truncate_dim} is outside 1..{encoder.dim}, the encoder's dimension")
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent if out_dir.parent.exists()
                                    else None))
    try:
        model = _sentence_transformer(encoder, staging / "work")
        model.save(str(staging / "model"))
        _write_export_record(staging / "model", encoder, record, truncate_dim)
        from embedgrid.export.card import write_model_card

        write_model_card(staging / "model", encoder, record, truncate_dim)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging / "model", out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported %s to %s", cell_dir, out_dir)
    if push_to_hub:
        from embedgrid.export.hub import push_directory

        push_directory(out_dir, push_to_hub, private=private)
    return out_dir


def _cell_record(cell_dir: Path) -> dict:
    """The cell's record (``cell_dir`` is a cell or its ``model/``); empty for a saved encoder outside a cell."""
    from embedgrid.grid.celldir import CellDir

    for cell in (CellDir(cell_dir), CellDir(cell_dir.parent)):
        record = cell.read_record()
        if record is not None:
            return record
    return {}


def _export_tokenizer(encoder, directory: Path) -> None:
    """The encoder's tokenizer, padding right, with EOS (and BOS where the encoder adds one) added by the
    tokenizer's own post-processor, so sentence-transformers tokenizes texts to embedgrid's ids."""
    import copy

    from tokenizers.processors import TemplateProcessing

    tokenizer = copy.deepcopy(encoder.tokenizer)
    special, single = [], "$A"
    if encoder._bos:
        bos_id = encoder._bos[0]
        bos = tokenizer.convert_ids_to_tokens(bos_id)
        single, special = f"{bos} {single}", [(bos, bos_id)]
    if encoder.spec.append_eos:
        single += f" {tokenizer.eos_token}"
        special.append((tokenizer.eos_token, tokenizer.eos_token_id))
    tokenizer._tokenizer.post_processor = TemplateProcessing(single=single, special_tokens=list(dict(special).items()))
    tokenizer.padding_side = "right"
    tokenizer.model_max_length = encoder.spec.max_length
    tokenizer.save_pretrained(directory)


def _backbone_dir(encoder, directory: Path) -> Path:
    """The backbone with LoRA merged, its attention mode (``is_causal``) in its config."""
    from embedgrid.assets import save_checkpoint

    backbone = encoder.backbone
    directory.mkdir(parents=True)
    if encoder.spec.lora.enabled:
        from embedgrid.model.encoder import inference_copy

        backbone = inference_copy(backbone)
    config, before = backbone.config, backbone.config.output_hidden_states
    config.output_hidden_states = bool(encoder.pooling.needs_all_layers)
    try:
        save_checkpoint(backbone, directory)
    finally:  # without LoRA ``backbone`` is the live encoder's own: leave its config as it was
        config.output_hidden_states = before
    return directory


def _sentence_transformer(encoder, work: Path):
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer

    backbone_dir = _backbone_dir(encoder, work / "backbone")
    _export_tokenizer(encoder, work / "tokenizer")
    transformer = Transformer(
        str(backbone_dir), tokenizer_name_or_path=str(work / "tokenizer"), max_seq_length=encoder.spec.max_length,
        model_kwargs={"dtype": getattr(torch, encoder.spec.dtype), "attn_implementation": encoder.spec.attn_implementation},
        # plain text: sentence-transformers 6 would otherwise wrap each text in the tokenizer's chat template
        modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
        module_output_name="token_embeddings")
    return SentenceTransformer(modules=[transformer, _pooling_module(encoder), Normalize()], device="cpu")


def _pooling_module(encoder):
    from sentence_transformers.sentence_transformer.modules import Pooling

    head = encoder.pooling
    skip = len(encoder._bos) if not encoder.spec.pool_instruction else 0
    mode = ST_POOLING_MODES.get(type(head).__name__)
    if mode is not None and (mode == "lasttoken" or skip == 0):
        return Pooling(head.output_dim, pooling_mode=mode)
    from embedgrid.export.st_modules import EmbedgridPooling

    module = EmbedgridPooling(pooling=encoder.spec.pooling, hidden_size=head.hidden_size, num_layers=head.num_layers,
                              is_causal=head.is_causal, backbone_num_heads=head.backbone_num_heads,
                              skip_leading=skip)
    module.head.load_state_dict(head.state_dict())
    return module


def _write_export_record(directory: Path, encoder, record: dict, truncate_dim: int | None = None) -> None:
    from embedgrid import __version__
    from embedgrid.export.card import usage
    from embedgrid.io import write_json

    config = record.get("config") or {}
    write_json(directory / EXPORT_FILE, {
        "embedgrid_version": __version__, "cell": record.get("cell"), "config_hash": record.get("config_hash"),
        "design": record.get("design"), "attention": encoder.spec.attention, "pooling": encoder.spec.pooling,
        "append_eos": encoder.spec.append_eos, "pool_instruction": encoder.spec.pool_instruction,
        "max_length": encoder.spec.max_length, "lora_merged": encoder.spec.lora.enabled,
        "truncate_dim": truncate_dim,
        "instructions": (config.get("eval") or {}).get("instructions"),
        "instruction_scope": (config.get("eval") or {}).get("instruction_scope"),
        "how_to_encode": f"{usage(encoder).replace('PATH', 'dir')}.encode(texts): EOS is appended by the tokenizer; "
                         "embedgrid prefixes an instruction (if any) to queries as in `instructions` above",
    })
