"""``eval.compile=auto`` (the default): compile the encoder for evaluation only where it pays.

Compiled encoding (``Encoder.encode(compile=True)``) costs a compilation up front and then runs each text faster.
It pays when the suite's texts exceed the break-even measured for the device (benchmarks/compile_break_even.py:
compilation overhead / per-text saving) and the model is wide enough for the fused kernels to win (on the 64-wide
``tiny`` compiled encoding is slower per text, never breaking even). Never where no compiler is present (CPU:
inductor builds C++ kernels). A device without a measured break-even (GPUs: not measured yet) is not compiled, nor
a CPU without native bf16 (AVX512-BF16 or AMX), where the break-even was never reached: on an AVX2 EPYC compiled
float32 encoding of SmolLM2 ran slower per text than eager (92 vs 72 s for 600 texts, after 158 s of compilation).
"""
from __future__ import annotations

import logging
import os
import shutil

import torch

from embedgrid.precision import cpu_has_native_bf16

log = logging.getLogger(__name__)

# Texts after which compiled encoding, its compilation included, overtakes eager on a CPU with native bf16 (AMX):
# SmolLM2-135M on an idle 2-core Sapphire Rapids (1 thread, batch 32): about 10,000 texts (54 s of compilation in
# bf16, then 81 vs 55 texts/s; benchmarks/encode.py). benchmarks/compile_break_even.py re-measures it for a model and dtype.
BREAK_EVEN_TEXTS = {"cpu": 10_000}
MIN_WIDTH = 256  # hidden size below which compiled encoding was measured slower per text (tiny, 64 wide)


def compiler_present(device) -> bool:
    if torch.device(device).type != "cpu":
        return True  # triton ships with CUDA builds of torch; a missing one fails inside torch.compile, named
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c)


def task_texts(task) -> int:
    """About how many texts a task encodes: mteb's shipped statistics (``num_samples`` over its splits) for its own
    tasks, without loading them; a task with none (the offline ones) is loaded and counted (pairs count twice).
    Never mteb's ``calculate_descriptive_statistics``: it writes its result into the mteb package."""
    stats = task.metadata.descriptive_stats
    if stats:
        return sum(int(split.get("num_samples") or 0) for split in stats.values() if isinstance(split, dict))
    if not getattr(task, "data_loaded", False):
        task.load_data()
    return _count_texts(task.dataset)


def _count_texts(node) -> int:
    from datasets import Dataset

    if isinstance(node, Dataset):
        return len(node) * max(1, len({"sentence1", "sentence2"} & set(node.column_names)))
    if isinstance(node, dict):
        return sum(_count_texts(value) for value in node.values())
    fields = getattr(node, "__dict__", None) or (dict(node) if hasattr(node, "keys") else None)
    return sum(_count_texts(value) for value in fields.values()) if isinstance(fields, dict) else 0


def decide(setting, device, width: int, tasks=lambda: [], texts: int | None = None) -> tuple[bool, str]:
    """(compile?, why) for ``eval.compile`` = true | false | auto; ``tasks()`` (the resolved mteb tasks) is called
    only when the estimate is needed; ``texts`` gives the workload's size directly instead."""
    if setting != "auto":
        return bool(setting), f"eval.compile={str(setting).lower()}"
    kind = torch.device(device).type
    if kind not in BREAK_EVEN_TEXTS:
        return False, f"auto: no measured break-even for {kind} devices"
    if kind == "cpu" and not cpu_has_native_bf16():
        return False, ("auto: this CPU has no native bf16 (AVX512-BF16/AMX); compiled encoding was measured slower "
                       "per text on such a CPU")
    if width < MIN_WIDTH:
        return False, f"auto: the model's width {width} < {MIN_WIDTH} (compiled encoding measured slower per text)"
    if not compiler_present(device):
        return False, "auto: no C++ compiler on PATH (g++, c++, clang++ or CXX)"
    texts = sum(task_texts(task) for task in tasks()) if texts is None else texts
    threshold = BREAK_EVEN_TEXTS[kind]
    if texts < threshold:
        return False, f"auto: about {texts:,} texts < the {kind} break-even of {threshold:,}"
    return True, f"auto: about {texts:,} texts >= the {kind} break-even of {threshold:,}"
