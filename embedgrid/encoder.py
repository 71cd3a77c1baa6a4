"""The embedding model: backbone (attention mode set, LoRA attached) + pooling head + tokenizer.

``Encoder.encode(texts)`` returns L2-normalised float32 vectors; ``save``/``load_encoder`` round-trip the
trainable parts (LoRA adapter and pooling head, both safetensors) plus the spec that rebuilds the rest.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embedgrid.backbone import Attention, load_backbone, load_tokenizer, resolve_checkpoint
from embedgrid.io import read_json, write_json
from embedgrid.spec import EncoderSpec

log = logging.getLogger(__name__)

SPEC_FILE = "encoder.json"
POOLING_FILE = "pooling.safetensors"
ADAPTER_DIR = "adapter"


class Encoder(nn.Module):
    def __init__(self, backbone: nn.Module, pooling: nn.Module, tokenizer, spec: EncoderSpec):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.tokenizer = tokenizer
        self.spec = spec
        self.truncated = 0  # texts cut to max_length so far (logged by encode and training)
        probe = tokenizer("a").input_ids
        self._bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None and probe[:1] == [
            tokenizer.bos_token_id] else []

    @property
    def device(self) -> torch.device:
        return next(self.pooling.parameters(), next(self.backbone.parameters())).device

    @property
    def dim(self) -> int:
        return self.pooling.output_dim

    # ---- tokenisation -------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str], instruction: str | None = None) -> dict[str, torch.Tensor]:
        """[BOS] + instruction + text + EOS, truncated to max_length (EOS kept), padded on the tokenizer's side.

        ``pool_mask`` excludes the instruction tokens unless ``spec.pool_instruction``.
        """
        tok, max_len = self.tokenizer, self.spec.max_length
        eos = tok.eos_token_id
        instr = tok(instruction, add_special_tokens=False).input_ids if instruction else []
        budget = max_len - 1 - len(self._bos) - len(instr)
        if budget < 1:
            raise ValueError(f"instruction of {len(instr)} tokens leaves no room for text in max_length={max_len}")
        bodies = tok(list(texts), add_special_tokens=False, truncation=True, max_length=budget + 1).input_ids
        rows, pool_rows = [], []
        for body in bodies:
            if len(body) > budget:
                self.truncated += 1
                body = body[:budget]
            prefix = self._bos + instr
            rows.append(prefix + body + [eos])
            keep_prefix = 1 if self.spec.pool_instruction else 0
            pool_rows.append([1] * len(self._bos) + [keep_prefix] * len(instr) + [1] * (len(body) + 1))
        width = max(len(r) for r in rows)
        left = tok.padding_side == "left"
        pad = tok.pad_token_id

        def padded(row, value):
            fill = [value] * (width - len(row))
            return fill + row if left else row + fill

        return {
            "input_ids": torch.tensor([padded(r, pad) for r in rows]),
            "attention_mask": torch.tensor([padded([1] * len(r), 0) for r in rows]),
            "pool_mask": torch.tensor([padded(p, 0) for p in pool_rows]),
        }

    # ---- forward ------------------------------------------------------------------------------------------
    def forward(self, input_ids, attention_mask, pool_mask) -> torch.Tensor:
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                            output_hidden_states=self.pooling.needs_all_layers)
        states = out.hidden_states if self.pooling.needs_all_layers else (out.last_hidden_state,)
        pooled = self.pooling(states, attention_mask, pool_mask)
        return F.normalize(pooled.float(), dim=-1)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        device = self.device
        return self(**{k: v.to(device) for k, v in batch.items()})

    @torch.inference_mode()
    def encode(self, texts: list[str], *, batch_size: int = 32, instruction: str | None = None,
               show_progress_bar: bool = False, desc: str = "encode") -> np.ndarray:
        """Embed texts in length-sorted batches; returns (n, dim) float32, L2-normalised, in input order."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        was_training = self.training
        self.eval()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        truncated_before = self.truncated
        starts = range(0, len(texts), batch_size)
        if show_progress_bar:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=desc, unit="batch", leave=False)
        for start in starts:
            index = order[start:start + batch_size]
            batch = self.tokenize([texts[i] for i in index], instruction)
            out[index] = self.embed(batch).cpu().numpy()
        if self.truncated > truncated_before:
            log.info("%s: %d of %d texts truncated to max_length=%d", desc, self.truncated - truncated_before,
                     len(texts), self.spec.max_length)
        self.train(was_training)
        return out

    # ---- persistence --------------------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.pooling.state_dict().items()}

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``encoder.json``, ``pooling.safetensors`` and the LoRA ``adapter/`` into ``directory``."""
        from safetensors.torch import save_file

        from embedgrid.io import atomic_write

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.spec.lora.enabled:
            self.backbone.save_pretrained(directory / ADAPTER_DIR)
        atomic_write(directory / POOLING_FILE, lambda p: save_file(self.trainable_state(), p))
        write_json(directory / SPEC_FILE, self.spec.to_dict())
        return directory


def build_pooling(spec: EncoderSpec, backbone_config) -> nn.Module:
    from hydra.utils import get_class

    kwargs = {k: v for k, v in spec.pooling.items() if k != "_target_"}
    cls = get_class(spec.pooling["_target_"])
    return cls(hidden_size=backbone_config.hidden_size, num_layers=backbone_config.num_hidden_layers,
               is_causal=Attention(spec.attention).is_causal, **kwargs)


def attach_lora(backbone: nn.Module, spec: EncoderSpec) -> nn.Module:
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(r=spec.lora.r, lora_alpha=spec.lora.alpha, lora_dropout=spec.lora.dropout,
                        target_modules=list(spec.lora.target_modules), bias="none",
                        task_type=TaskType.FEATURE_EXTRACTION)
    return get_peft_model(backbone, config)


def build_encoder(spec: EncoderSpec, *, adapter_dir: str | os.PathLike | None = None) -> Encoder:
    """Backbone with attention set → LoRA (fresh, or loaded from ``adapter_dir``) → pooling head."""
    path = resolve_checkpoint(spec.checkpoint)
    attention = Attention(spec.attention)
    backbone = load_backbone(path, attention, revision=spec.revision, dtype=spec.dtype,
                             attn_implementation=spec.attn_implementation,
                             trust_remote_code=spec.trust_remote_code)
    tokenizer = load_tokenizer(path, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    pooling = build_pooling(spec, backbone.config)
    if spec.lora.enabled:
        if adapter_dir is not None:
            from peft import PeftModel

            backbone = PeftModel.from_pretrained(backbone, str(adapter_dir))
        else:
            backbone = attach_lora(backbone, spec)
    return Encoder(backbone, pooling, tokenizer, spec)


def load_encoder(directory: str | os.PathLike, device: str | None = None) -> Encoder:
    """Rebuild a saved encoder from a cell directory (or its ``model/`` subdirectory)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / SPEC_FILE).exists() and (directory / "model" / SPEC_FILE).exists():
        directory = directory / "model"
    data = read_json(directory / SPEC_FILE)
    if data is None:
        raise FileNotFoundError(f"no {SPEC_FILE} in {directory}: not a finished cell or saved encoder")
    spec = EncoderSpec.from_dict(data)
    encoder = build_encoder(spec, adapter_dir=directory / ADAPTER_DIR if spec.lora.enabled else None)
    encoder.pooling.load_state_dict(load_file(directory / POOLING_FILE))
    encoder.eval()
    if device:
        encoder.to(device)
    return encoder
