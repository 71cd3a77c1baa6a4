from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Training settings (``conf/train/*.yaml``); ``train=paper`` is the paper's recipe."""

    max_steps: int = 20
    batch_size: int = 16
    lr: float = 1e-4
    pooling_lr: float | None = None  # the pooling head's own learning rate (None: same as lr)
    weight_decay: float = 0.01
    warmup_steps: int = 2
    max_grad_norm: float = 1.0
    temperature: float = 0.05
    symmetric_loss: bool = False
    num_negatives: int = 1
    checkpoint_every: int = 10
    grad_cache: bool = False
    grad_cache_chunk: int = 16
    gradient_checkpointing: bool = False
    bf16: bool = False  # autocast on GPU
    log_every: int = 1
    progress_bar: bool = True
