"""The encoder as an mteb model: mteb calls ``encode(DataLoader, task_metadata=..., prompt_type=...)``."""
from __future__ import annotations

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction

from embedgrid.errors import ConfigError
from embedgrid.model.encoder import Encoder
from embedgrid.evaluate.config import check_scope
from embedgrid.train.distributed import World, gather_from_all

UNCACHED_ROLES = ("document",)  # mteb encodes each corpus chunk once; caching it would hold the whole corpus


class MtebEncoder(AbsEncoder):
    """Wraps :class:`Encoder` for ``mteb.evaluate``.

    ``instructions`` maps task names to an instruction; ``instruction_scope`` says which texts get it:
    ``query`` (retrieval/reranking queries only, and every text of a task without a query/document split),
    ``all`` (documents too), or a mapping from mteb task type to either, with a ``default`` entry:
    ``{Retrieval: query, default: all}`` is the reference code's behaviour (its reranking candidates got the
    instruction too). How the instruction is joined to a text is the encoder's (``Encoder.token_rows``).

    Memory is bounded by one call (one corpus chunk of mteb's, 50,000 documents by default), never by a corpus:
    texts are deduplicated within a call, and only texts mteb encodes more than once are kept across calls,
    keyed by (role, instruction, text): symmetric tasks' texts (mteb encodes STS's sentence1 and sentence2
    columns, and classification's train and test splits, separately; Lee: 2 x 1,225 texts of 50 documents)
    and queries. Documents are never kept: mteb encodes each corpus chunk once and scores it before the next.
    The cache holds at most ``cache_max_texts`` vectors and is dropped when the task changes. The role is part
    of the key because a query and a document with the same text may get different instructions (mteb #5383).
    """

    def __init__(self, encoder: Encoder, name: str, revision: str, *, instructions: dict[str, str] | None = None,
                 instruction_scope: str | dict = "query", batch_size: int = 32, show_progress_bar: bool = True,
                 meta: dict | None = None, cache_max_texts: int = 50_000, batch_tokens: int | None = None,
                 compile: bool = False, truncate_dim: int | None = None,
                 world: World = World()):
        if truncate_dim is not None and not 1 <= truncate_dim <= encoder.dim:
            raise ConfigError(f"eval.truncate_dim={truncate_dim} is outside 1..{encoder.dim}, the encoder's "
                              "dimension; choose a prefix length it has, or null")
        self.model = encoder
        self.truncate_dim = truncate_dim
        self.dim = truncate_dim or encoder.dim
        self.world = world  # several ranks: each encode call's texts are split over them (shares), then gathered
        self.instructions = dict(instructions or {})
        self.instruction_scope = check_scope(instruction_scope)
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.compile = compile
        self.show_progress_bar = show_progress_bar
        self.cache_max_texts = cache_max_texts
        self.texts_encoded = 0  # texts that went through the network (cache misses), for tests and benchmarks
        self._cache_task: str | None = None
        self._cache: dict[tuple[str | None, str | None, str], np.ndarray] = {}
        self.mteb_model_meta = ModelMeta.create_empty(overwrites={
            "name": name, "revision": revision, "similarity_fn_name": ScoringFunction.COSINE,
            "embed_dim": self.dim, "max_tokens": encoder.spec.max_length, "framework": ["PyTorch"],
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
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        role = getattr(prompt_type, "value", prompt_type)
        instruction = self.instruction_for(task_metadata.name, prompt_type, task_metadata.type)
        if self._cache_task != task_metadata.name:
            self._cache_task, self._cache = task_metadata.name, {}
        position: dict[str, int] = {}
        inverse = np.fromiter((position.setdefault(t, len(position)) for t in texts), dtype=np.int64,
                              count=len(texts))
        cacheable = role not in UNCACHED_ROLES
        cached = {i: self._cache[(role, instruction, t)] for t, i in position.items()
                  if cacheable and (role, instruction, t) in self._cache}
        missing = [t for t, i in position.items() if i not in cached]
        if cached:
            vectors = np.empty((len(position), self.dim), dtype=np.float32)
            for i, vector in cached.items():
                vectors[i] = vector
        if missing:
            encoded = self._encode(missing, instruction, desc=f"{task_metadata.name}/{role or 'text'}")
            if self.truncate_dim is not None:
                encoded = truncate(encoded, self.truncate_dim)
            self.texts_encoded += len(missing)
            if cached:
                vectors[[position[t] for t in missing]] = encoded
            else:
                vectors = encoded  # position order is first-occurrence order, the order ``missing`` has
            if cacheable:
                room = max(0, self.cache_max_texts - len(self._cache))
                for t in missing[:room]:
                    self._cache[(role, instruction, t)] = vectors[position[t]].copy()
        if len(position) == len(texts):
            return vectors  # no duplicates: inverse is the identity, so no second copy of the chunk
        return vectors[inverse]

    def _encode(self, texts: list[str], instruction: str | None, desc: str) -> np.ndarray:
        """The encoder's vectors of ``texts``; with several ranks each encodes its share (``shares``) and every
        rank gets all vectors, so mteb scores the same matrix everywhere. Memory: this call's texts, one chunk."""
        def encode(part):
            return self.model.encode(part, batch_size=self.batch_size, batch_tokens=self.batch_tokens,
                                     compile=self.compile, instruction=instruction,
                                     show_progress_bar=self.show_progress_bar, desc=desc)

        if not self.world.enabled:
            return encode(texts)
        parts: list[list[int]] = []

        def local():  # everything a rank does alone, so a failure anywhere in it reaches the others at the gather
            truncated = self.model.truncated  # counted once, by the rank that encodes the text
            lengths = [len(row) for row in self.model.token_rows(texts, instruction)[0]]
            self.model.truncated = truncated
            parts[:] = shares(lengths, self.world.size)
            mine = parts[self.world.rank]
            return encode([texts[i] for i in mine]) if mine else np.zeros((0, self.model.dim), dtype=np.float32)

        blocks = gather_from_all(local, self.world, what=f"encoding {desc}")
        vectors = np.empty((len(texts), self.model.dim), dtype=np.float32)
        for part, block in zip(parts, blocks):
            if part:
                vectors[part] = block
        return vectors


def truncate(vectors: np.ndarray, dim: int) -> np.ndarray:
    """The first ``dim`` dimensions, L2-renormalised: a Matryoshka prefix (sentence-transformers' ``truncate_dim``
    followed by normalisation)."""
    prefix = vectors[:, :dim]
    return prefix / np.maximum(np.linalg.norm(prefix, axis=1, keepdims=True), 1e-12)


def shares(lengths: list[int], ranks: int) -> list[list[int]]:
    """Indices of texts per rank, balanced by token count: longest first, each to the rank with the fewest tokens
    so far (ties: the lowest rank); deterministic, so every rank computes the same split."""
    totals, parts = [0] * ranks, [[] for _ in range(ranks)]
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        rank = min(range(ranks), key=lambda r: (totals[r], r))
        parts[rank].append(i)
        totals[rank] += lengths[i]
    return [sorted(part) for part in parts]
