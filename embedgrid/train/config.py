from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional


@dataclass
class TrainConfig:
    """Training settings: the defaults here are the small CPU-sized run (``train=default``: the default cell
    trains SmolLM2-135M for a few minutes on 2 cores); presets in ``conf/train/*.yaml`` set what they change
    (``train=paper`` is the paper's recipe). ``max_length``: null keeps ``model.max_length``; set, it replaces it
    for the cell's encoder (a recipe's sequence length, e.g. the paper's 512, without a global package)."""

    max_steps: int = 64  # chosen so training shows within the 10-minute budget (docs/getting-started.md, "The default cell")
    batch_size: int = 16  # global: every rank's rows of one optimizer step together
    accumulation_steps: int = 1  # micro-batches per step, one InfoNCE each (negatives: that micro-batch)
    lr: float = 3.0e-4
    pooling_lr: float | None = 1.0e-3  # the pooling head's own learning rate (None: same as lr)
    weight_decay: float = 0.01
    warmup_steps: int = 6
    max_grad_norm: float = 1.0
    temperature: float = 0.05
    symmetric_loss: bool = False
    num_negatives: int = 1
    negatives: str = "first"  # first: a row's first num_negatives; sample: a fresh subset per step (batches.py)
    false_negative_mask: bool = True  # a candidate with the text of the row's positive leaves its softmax
    checkpoint_every: int = 16
    grad_cache: bool = False
    grad_cache_chunk: int = 16
    gradient_checkpointing: bool = False
    # false | true | auto (embedgrid.precision): auto = bf16 autocast where the hardware has native bf16 matmuls.
    # Default false: on this project's AMX CPU bf16 did not make the length-sorted steps reliably faster
    # (docs/training.md, "Benchmark"). Any, not bool | str: OmegaConf structured configs have no unions.
    bf16: Any = False
    length_sorted: bool = True  # embed a step's texts in length-sorted chunks (same loss, less padding)
    log_every: int = 1
    progress_bar: bool = True
    max_length: int | None = None
    # Matryoshka: InfoNCE on the renormalised first k dimensions for every k listed, weighted (null: plain InfoNCE)
    matryoshka_dims: Optional[List[int]] = None
    matryoshka_weights: Optional[List[float]] = None  # null: 1 for every dimension

    def __post_init__(self):
        positive = ("max_steps", "batch_size", "accumulation_steps", "checkpoint_every", "grad_cache_chunk",
                    "log_every")
        for name in positive:
            value = getattr(self, name)
            if value < (0 if name == "max_steps" else 1):
                raise ValueError(f"train.{name} must be {'>= 0' if name == 'max_steps' else '>= 1'}, got {value}")
        if self.batch_size % self.accumulation_steps:
            raise ValueError(f"train.batch_size={self.batch_size} is not divisible by train.accumulation_steps="
                             f"{self.accumulation_steps}")
        if self.lr <= 0 or self.temperature <= 0:
            raise ValueError(f"train.lr and train.temperature must be > 0, got {self.lr} and {self.temperature}")
        from embedgrid.precision import check_bf16_setting

        self.bf16 = check_bf16_setting(self.bf16)
        if self.matryoshka_weights is not None and self.matryoshka_dims is None:
            raise ValueError("train.matryoshka_weights is set but train.matryoshka_dims is not; set both or neither")
        if self.matryoshka_dims is not None:
            from embedgrid.losses import MatryoshkaInfoNCELoss

            MatryoshkaInfoNCELoss(self.matryoshka_dims, self.matryoshka_weights)  # its own checks, as ValueError
        if self.negatives not in ("first", "sample"):
            raise ValueError(f"train.negatives={self.negatives!r} is not one of ['first', 'sample']")
        if self.num_negatives < 0 or self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError("train.num_negatives, train.warmup_steps and train.weight_decay must be >= 0")
