"""Backbone loading and the attention switch: the only module that knows how transformers makes a decoder
bidirectional.

transformers 5 builds the mask from ``config.is_causal`` (``create_causal_mask`` returns the bidirectional mask
when it is False) for Qwen2, Mistral and Llama, under eager and sdpa. Setting ``module.is_causal`` on attention
layers (the llm2vec recipe) silently stays causal, and ``from_pretrained(..., is_causal=False)`` is dropped, so
the flag goes on the config object before the weights load.
"""
from __future__ import annotations

import logging

from embedgrid.attention import ATTENTION_MODES, Attention  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)


def _tiny_config(name: str):
    def build(**kwargs):
        import transformers

        return getattr(transformers, name)(**kwargs)

    return build


TINY_CONFIGS = {
    "qwen2": _tiny_config("Qwen2Config"),
    "mistral": _tiny_config("MistralConfig"),
    "llama": _tiny_config("LlamaConfig"),
}


def resolve_checkpoint(checkpoint) -> str:
    """A model's ``checkpoint`` is a path/hub id, or a ``_target_`` node that produces one (offline assets)."""
    if isinstance(checkpoint, str):
        return checkpoint
    from hydra.utils import instantiate

    return instantiate(checkpoint)


def load_backbone(path: str, attention: Attention, *, revision: str | None = None, dtype: str = "float32",
                  attn_implementation: str = "sdpa", trust_remote_code: bool = False):
    """Load a decoder as a bare ``AutoModel`` (no LM head) with the requested attention mode."""
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
        raise RuntimeError(f"{type(model).__name__} ignored is_causal={attention.is_causal}")
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
