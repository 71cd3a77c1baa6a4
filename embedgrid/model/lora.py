"""LoRA through peft, with a leaner forward for its plain Linear adapter.

peft owns the adapter: its config, injection, saving, loading and merging. Only the per-call arithmetic of its
``lora.Linear`` is replaced (``LeanLoraLinear``), for two costs peft's generic forward pays on every call:

- Dropout. ``nn.Dropout`` on a CPU draws a float Bernoulli mask (torch's ``bernoulli_``, ~5 ns per element on
  one Sapphire Rapids core, more than the rank-16 matmul it gates). A 31-bit integer draw compared with
  ``round(p * 2^31)`` is the same Bernoulli distribution (keep probability exact to 2^-32, finer than the float
  draw's 24 bits) at a third of the cost. On other devices torch's fused dropout is used.
- Arithmetic. ``base(x) + B(A(dropout(x))) * scaling`` is six kernels besides the mask; here the scaling and the
  dropout's 1/(1-p) rescale fold into one ``addmm`` that also does the add: three matmuls and a multiply by the
  0/1 mask.

The adapter's math is unchanged: the same weights, the same output up to float rounding, each input element
dropped with probability p. Any case but the plain one (adapters disabled or merged, several active adapters,
DoRA and other variants, extra arguments, a dtype mismatch outside autocast) goes to peft's own forward.
"""
from __future__ import annotations

import contextlib
import logging
import os

import torch
import torch.nn.functional as F
from torch import nn

INT31 = 2 ** 31
log = logging.getLogger(__name__)


def attach_lora(backbone: nn.Module, spec) -> nn.Module:
    """A fresh adapter from ``spec.lora`` (peft ``get_peft_model``) with the lean forward."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(r=spec.lora.r, lora_alpha=spec.lora.alpha, lora_dropout=spec.lora.dropout,
                        target_modules=list(spec.lora.target_modules), bias="none",
                        task_type=TaskType.FEATURE_EXTRACTION)
    return use_lean_forward(get_peft_model(backbone, config))


def load_lora(backbone: nn.Module, adapter_dir: str | os.PathLike) -> nn.Module:
    """A saved adapter (peft ``PeftModel.from_pretrained``, safetensors) with the lean forward."""
    from peft import PeftModel

    return use_lean_forward(PeftModel.from_pretrained(backbone, str(adapter_dir)))


@contextlib.contextmanager
def merged_for_inference(model: nn.Module):
    """Inside the context the adapter is merged into the base weights (peft's ``merge_adapter``), so a forward
    costs what the plain model's does: no rank-r side path per projection. Unmerged on exit (peft's
    ``unmerge_adapter``; the base weights come back to within float32 rounding). Only for inference.

    Merged only where it is exact to float32 rounding: an adapter whose base weights are all float32. Into bf16 or
    float16 weights the small update would be rounded away in part, changing the trained model, so those stay
    unmerged (logged). Yields whether it merged."""
    layers = [m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]
    if not layers or not hasattr(model, "merge_adapter") or any(layer.merged for layer in layers):
        yield False
        return
    dtypes = {layer.base_layer.weight.dtype for layer in layers}
    if dtypes != {torch.float32}:
        log.info("LoRA left unmerged for inference: base weights are %s (merging would round the update)",
                 ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes)))
        yield False
        return
    with torch.no_grad():
        model.merge_adapter()
    try:
        yield True
    finally:
        with torch.no_grad():
            model.unmerge_adapter()


def use_lean_forward(model: nn.Module) -> nn.Module:
    """Give every plain peft ``lora.Linear`` in ``model`` the lean forward (a subclass swap; state unchanged)."""
    from peft.tuners.lora.layer import Linear

    for module in model.modules():
        if type(module) is Linear:
            module.__class__ = lean_class()
    return model


def dropout_keep(shape, p: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """1 where an element is kept, 0 where dropped (P = round(p * 2^31) / 2^31), from torch's default generator.

    Written as ``dtype`` straight from the comparison: CPU kernels on bool tensors are unvectorised (a bool
    mask or ``masked_fill`` costs 4-6x a float multiply)."""
    bits = torch.empty(shape, dtype=torch.int32, device=device).random_()  # uniform on [0, 2^31)
    return torch.ge(bits, round(p * INT31), out=torch.empty(shape, dtype=dtype, device=device))


def lora_dropout_p(dropout: nn.Module) -> float:
    return dropout.p if isinstance(dropout, nn.Dropout) else 0.0


_LEAN = None


def __getattr__(name: str):
    if name == "LeanLoraLinear":  # so pickle finds the lazily built class by name
        return lean_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def lean_class():
    """``LeanLoraLinear``, built on first use so importing embedgrid does not import peft."""
    global _LEAN
    if _LEAN is None:
        from peft.tuners.lora.layer import Linear

        class LeanLoraLinear(Linear):
            """peft's ``lora.Linear`` whose plain single-adapter forward is three matmuls and a mask multiply."""

            def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
                active = self.active_adapters
                if (args or kwargs or self.disable_adapters or self.merged or len(active) != 1
                        or active[0] not in self.lora_A or self.lora_variant):
                    return super().forward(x, *args, **kwargs)
                name = active[0]
                a, b = self.lora_A[name].weight, self.lora_B[name].weight
                if x.dtype != a.dtype and not torch.is_autocast_enabled(x.device.type):
                    return super().forward(x, *args, **kwargs)
                result = self.base_layer(x)
                alpha, p = self.scaling[name], lora_dropout_p(self.lora_dropout[name])
                if self.training and p > 0:
                    if x.device.type == "cpu":
                        x = x * dropout_keep(x.shape, p, x.dtype, x.device)
                        alpha = alpha / (1.0 - p)
                    else:
                        x = F.dropout(x, p, training=True)
                hidden = F.linear(x, a)
                out = torch.addmm(result.reshape(-1, result.shape[-1]), hidden.reshape(-1, hidden.shape[-1]),
                                  b.t(), alpha=alpha)
                return out.view(result.shape)

        LeanLoraLinear.__module__ = __name__
        LeanLoraLinear.__qualname__ = "LeanLoraLinear"
        _LEAN = LeanLoraLinear
    return _LEAN
