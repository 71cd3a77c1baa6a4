"""The encoder as an mteb model: mteb calls ``encode(DataLoader, task_metadata=..., prompt_type=...)``."""
from __future__ import annotations

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction

from embedgrid.encoder import Encoder


class MtebEncoder(AbsEncoder):
    """Wraps :class:`Encoder` for ``mteb.evaluate``.

    ``instructions`` maps task names to an instruction; ``instruction_scope`` says which texts get it:
    ``query`` (retrieval-style: only texts mteb marks as queries, or every text of a task without a
    query/document split) or ``all``.
    """

    def __init__(self, encoder: Encoder, name: str, revision: str, *, instructions: dict[str, str] | None = None,
                 instruction_scope: str = "query", batch_size: int = 32, show_progress_bar: bool = True):
        self.model = encoder
        self.instructions = dict(instructions or {})
        self.instruction_scope = instruction_scope
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.mteb_model_meta = ModelMeta.create_empty(overwrites={
            "name": name, "revision": revision, "similarity_fn_name": ScoringFunction.COSINE,
            "embed_dim": encoder.dim, "max_tokens": encoder.spec.max_length, "framework": ["PyTorch"],
        })

    def instruction_for(self, task_name: str, prompt_type) -> str | None:
        instruction = self.instructions.get(task_name)
        if not instruction:
            return None
        role = getattr(prompt_type, "value", prompt_type)
        if self.instruction_scope == "all" or role in (None, "query"):
            return instruction
        return None

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        return self.model.encode(texts, batch_size=self.batch_size,
                                 instruction=self.instruction_for(task_metadata.name, prompt_type),
                                 show_progress_bar=self.show_progress_bar,
                                 desc=f"{task_metadata.name}/{getattr(prompt_type, 'value', prompt_type) or 'text'}")
