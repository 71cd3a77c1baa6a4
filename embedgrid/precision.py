"""bf16 mixed precision: where it is on (``train.bf16`` / ``encode(bf16=...)``), and doing it cheaply.

``bf16`` takes ``false`` (float32), ``true`` (bf16 autocast on any device) or ``auto``: bf16 where the hardware
runs bf16 matmuls natively (a CUDA device with bf16; a CPU with AVX512-BF16 or AMX-BF16), float32 elsewhere,
where emulated bf16 would be slower than float32. Under autocast the matmuls run in bf16 while the residual
stream, norms, pooling, similarities and the loss stay float32 (Encoder.forward pools outside autocast).

``frozen_weights_in_bf16``: autocast caches its bf16 copy of a weight only for leaf tensors that require grad,
so a LoRA backbone's frozen base weights are re-cast on every forward (for SmolLM2 that is ~0.6 GB of memory
traffic per call, and a length-sorted step makes several calls). The context casts each frozen Linear weight
once and swaps it in for its duration; autocast would have cast it to the same bf16 values, so the numbers are
identical to plain autocast.

Inference (``Encoder.encode(bf16=...)``) runs the backbone in pure bf16 instead (``parameters_in_bf16``: norms,
residual stream and attention in bf16 too, as a model loaded in bf16 does), which is faster than autocast and,
with no gradients, loses only precision in the vectors; the pooling head still runs in float32.
"""
from __future__ import annotations

import contextlib
import functools


def check_bf16_setting(value, key: str = "train.bf16"):
    """The setting as False / True / "auto"; anything else is an error naming the choices."""
    if isinstance(value, str):
        value = {"true": True, "false": False, "auto": "auto"}.get(value.lower(), value)
    if value is True or value is False or value == "auto":
        return value
    raise ValueError(f"{key}={value!r} is not a bf16 setting; valid: false, true, auto")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 in /proc/cpuinfo, and a torch build that dispatches AVX-512 kernels (oneDNN)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return False
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    return bool({"avx512_bf16", "amx_bf16"} & set(flags)) and capability.startswith("AVX512") \
        and torch.backends.mkldnn.is_available()


def bf16_active(setting, device) -> bool:
    """Whether ``setting`` (false | true | auto) means bf16 autocast on ``device`` (a torch.device)."""
    setting = check_bf16_setting(setting)
    if setting != "auto":
        return setting
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def autocast(device, enabled: bool):
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


@contextlib.contextmanager
def parameters_in_bf16(module, enabled: bool = True):
    """Every float32 parameter of ``module`` is bf16 inside the context (a pure-bf16 forward, as a model loaded in
    bf16 runs; for inference only), restored exactly on exit."""
    import torch

    swapped = [(p, p.data) for p in module.parameters() if enabled and p.dtype == torch.float32]
    for p, original in swapped:
        p.data = original.to(torch.bfloat16)
    try:
        yield
    finally:
        for p, original in swapped:
            p.data = original


@contextlib.contextmanager
def frozen_weights_in_bf16(module, enabled: bool = True):
    """Frozen float32 ``nn.Linear`` weights of ``module`` are bf16 inside the context, restored exactly on exit."""
    import torch
    from torch import nn

    swapped = []
    if enabled:
        for sub in module.modules():
            weight = getattr(sub, "weight", None)
            if isinstance(sub, nn.Linear) and weight is not None and not weight.requires_grad \
                    and weight.dtype == torch.float32:
                swapped.append((weight, weight.data))
                weight.data = weight.data.to(torch.bfloat16)
    try:
        yield
    finally:
        for weight, original in swapped:
            weight.data = original
