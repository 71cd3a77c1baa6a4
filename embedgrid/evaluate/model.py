"""The encoder as an mteb model: mteb calls ``encode(DataLoader, task_metadata=..., prompt_type=...)``."""
from __future__ import annotations

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction

from embedgrid.encoder import Encoder
from embedgrid.evaluate.config import check_scope


class MtebEncoder(AbsEncoder):
    """Wraps :class:`Encoder` for ``mteb.evaluate``.

    ``instructions`` maps task names to an instruction; ``instruction_scope`` says which texts get it:
    ``query`` (retrieval/reranking queries only, and every text of a task without a query/document split),
    ``all`` (documents too), or a mapping from mteb task type to either, with a ``default`` entry:
    ``{Retrieval: query, default: all}`` is the reference code's behaviour (its reranking candidates got the
    instruction too). How the instruction is joined to a text is the encoder's (``Encoder.token_rows``).

    Embeddings are cached per task, keyed by (role, instruction, text), and texts are deduplicated within a call:
    mteb encodes STS's sentence1 and sentence2 columns separately (Lee: 2 x 1,225 texts of 50 documents) and
    classification's train and test splits separately. The role is part of the key because a query and a
    document with the same text may get different instructions (mteb #5383). The cache is dropped when the task
    changes, so memory stays bounded by one task.
    """

    def __init__(self, encoder: Encoder, name: str, revision: str, *, instructions: dict[str, str] | None = None,
                 instruction_scope: str | dict = "query", batch_size: int = 32, show_progress_bar: bool = True,
                 meta: dict | None = None):
        self.model = encoder
        self.instructions = dict(instructions or {})
        self.instruction_scope = check_scope(instruction_scope)
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.texts_encoded = 0  # texts that went through the network (cache misses), for tests and benchmarks
        self._cache_task: str | None = None
        self._cache: dict[tuple[str | None, str | None, str], np.ndarray] = {}
        self.mteb_model_meta = ModelMeta.create_empty(overwrites={
            "name": name, "revision": revision, "similarity_fn_name": ScoringFunction.COSINE,
            "embed_dim": encoder.dim, "max_tokens": encoder.spec.max_length, "framework": ["PyTorch"],
            "use_instructions": bool(self.instructions), **(meta or {}),
        })

    def instruction_for(self, task_name: str, prompt_type, task_type: str | None = None) -> str | None:
        instruction = self.instructions.get(task_name)
        if not instruction:
            return None
        role = getattr(prompt_type, "value", prompt_type)
        scope = self.instruction_scope
        if isinstance(scope, dict):
            scope = scope.get(task_type, scope["default"])
        if scope == "all" or role in (None, "query"):
            return instruction
        return None

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        role = getattr(prompt_type, "value", prompt_type)
        instruction = self.instruction_for(task_metadata.name, prompt_type, task_metadata.type)
        if self._cache_task != task_metadata.name:
            self._cache_task, self._cache = task_metadata.name, {}
        missing = list(dict.fromkeys(t for t in texts if (role, instruction, t) not in self._cache))
        if missing:
            vectors = self.model.encode(missing, batch_size=self.batch_size, instruction=instruction,
                                        show_progress_bar=self.show_progress_bar,
                                        desc=f"{task_metadata.name}/{role or 'text'}")
            self.texts_encoded += len(missing)
            self._cache.update({(role, instruction, t): v for t, v in zip(missing, vectors)})
        if not texts:
            return np.zeros((0, self.model.dim), dtype=np.float32)
        return np.stack([self._cache[(role, instruction, t)] for t in texts])
