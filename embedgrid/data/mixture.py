"""A mixture of training sources with sampling weights (``data=mixture``).

Each source is ``{kind, weight, ...its loader's arguments}`` with ``kind`` one of ``SOURCE_KINDS``. Batching:

- ``per_source`` (the E5 / tevatron convention): every global batch comes from one source, drawn by weight, so
  in-batch negatives are from the same dataset;
- ``mixed``: every row of a batch is drawn from a source by weight (a multinomial split of the batch).

A weight of ``null`` means the source's size (sampling proportional to rows). Within a source, rows come in
seeded per-epoch permutations, so no row repeats before the source is exhausted. The batch of step s is a pure
function of (seed, s): the per-step source counts come from blocks of steps seeded with (seed, block), and each
source's position in its stream is their running sum. Resume therefore needs only the step.
"""
from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Sequence

import numpy as np

from embedgrid.data.rows import Row, fewest_negatives

log = logging.getLogger(__name__)

BATCHING = ("per_source", "mixed")
BLOCK = 1024  # steps whose source counts are drawn together


def _wordnet(**kwargs):
    from embedgrid.data.wordnet import definition_synonym_rows

    return definition_synonym_rows(**kwargs)


def _jsonl(**kwargs):
    from embedgrid.data.jsonl import jsonl_rows

    return jsonl_rows(**kwargs)


def _hf(**kwargs):
    from embedgrid.data.hf import hf_rows

    return hf_rows(**kwargs)


def _parquet(**kwargs):
    from embedgrid.data.hf import parquet_rows

    return parquet_rows(**kwargs)


SOURCE_KINDS = {"jsonl": _jsonl, "hf": _hf, "parquet": _parquet, "wordnet": _wordnet}


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([k % 2**64 for k in keys])  # SeedSequence takes non-negative ints only


class Mixture(Sequence):
    """Several ``Sequence[Row]`` sources as one, with ``batch(batch_size, step, seed)`` for the training loop."""

    def __init__(self, sources: dict[str, Sequence], weights: dict[str, float | None], batching: str = "per_source"):
        if batching not in BATCHING:
            raise ValueError(f"data.loader.batching: unknown '{batching}'; valid: {', '.join(BATCHING)}")
        if not sources:
            raise ValueError("data.loader.sources: a mixture needs at least one source")
        self.names = list(sources)
        self.sources = [sources[n] for n in self.names]
        self.batching = batching
        sizes = np.array([len(s) for s in self.sources], dtype=np.float64)
        raw = []
        for name, size in zip(self.names, sizes):
            weight = weights.get(name)
            weight = size if weight is None else float(weight)
            if not weight > 0:
                raise ValueError(f"data.loader.sources.{name}.weight must be > 0 (or null: its size), got {weight}")
            raw.append(weight)
        self.probabilities = np.array(raw) / sum(raw)
        self._offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self._keys = [zlib.crc32(n.encode()) for n in self.names]  # a source's stream follows its name
        self._schedules: dict[tuple[int, int], list[np.ndarray]] = {}
        self._orders: list[dict[tuple[int, int], np.ndarray]] = [{} for _ in self.sources]  # <= 2 epochs each

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = int(index) + (len(self) if int(index) < 0 else 0)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        k = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return self.sources[k][index - int(self._offsets[k])]

    def fewest_negatives(self) -> tuple[int, str] | None:
        found = [f for f in (fewest_negatives(s) for s in self.sources) if f is not None]
        return min(found, key=lambda f: f[0]) if found else None

    def describe(self) -> str:
        return ", ".join(f"{n} ({len(s)} rows, p={p:.3f})" for n, s, p in zip(self.names, self.sources,
                                                                          self.probabilities))

    def _order(self, k: int, seed: int, epoch: int) -> np.ndarray:
        """Source k's row order in ``epoch``: a seeded permutation, 8 bytes per row, at most two epochs kept."""
        orders = self._orders[k]
        if (seed, epoch) not in orders:
            if len(orders) >= 2:
                del orders[min(orders, key=lambda key: key[1])]
            orders[(seed, epoch)] = _rng(seed, self._keys[k], epoch).permutation(len(self.sources[k]))
        return orders[(seed, epoch)]

    def _block(self, batch_size: int, seed: int, block: int) -> np.ndarray:
        """Rows taken from each source at each step of a block: (BLOCK, K) counts summing to batch_size."""
        rng = _rng(seed, block, len(self.sources))
        if self.batching == "mixed":
            return rng.multinomial(batch_size, self.probabilities, size=BLOCK).astype(np.int64)
        counts = np.zeros((BLOCK, len(self.sources)), dtype=np.int64)
        counts[np.arange(BLOCK), rng.choice(len(self.sources), size=BLOCK, p=self.probabilities)] = batch_size
        return counts

    def _counts(self, batch_size: int, step: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows of each source at ``step``, rows of each source taken before ``step``)."""
        blocks = self._schedules.setdefault((batch_size, seed), [])  # (counts, taken before) per block
        block, within = divmod(step, BLOCK)
        while len(blocks) <= block:
            counts = self._block(batch_size, seed, len(blocks))
            start = blocks[-1][1][-1] + blocks[-1][0][-1] if blocks else np.zeros(len(self.sources), np.int64)
            blocks.append((counts, start + np.cumsum(counts, axis=0) - counts))
        counts, before = blocks[block]
        return counts[within], before[within]

    def _stream(self, k: int, position: int, count: int, seed: int) -> list[Row]:
        """Rows ``position .. position+count`` of source k's endless stream of seeded epoch permutations."""
        source, size, out = self.sources[k], len(self.sources[k]), []
        while count:
            epoch, offset = divmod(position, size)
            take = min(count, size - offset)
            order = self._order(k, seed, epoch)
            out.extend(source[int(i)] for i in order[offset:offset + take])
            position, count = position + take, count - take
        return out

    def batch(self, batch_size: int, step: int, seed: int) -> list[Row]:
        counts, before = self._counts(batch_size, step, seed)
        rows = []
        for k in np.flatnonzero(counts):
            rows.extend(self._stream(int(k), int(before[k]), int(counts[k]), seed))
        if self.batching == "mixed":  # interleave, so every rank's slice of the batch mixes sources too
            random.Random(seed * 1_000_003 + step).shuffle(rows)
        return rows


def mixture(sources: dict, batching: str = "per_source") -> Mixture:
    """Build each source from ``{kind, weight, **loader arguments}`` (``kind``: jsonl | hf | parquet | wordnet)."""
    built, weights = {}, {}
    for name, spec in (sources or {}).items():
        spec = dict(spec)
        kind = spec.pop("kind", None)
        if kind not in SOURCE_KINDS:
            raise ValueError(f"data.loader.sources.{name}.kind: unknown '{kind}'; valid: {', '.join(SOURCE_KINDS)}")
        weights[name] = spec.pop("weight", None)
        try:
            built[name] = SOURCE_KINDS[kind](**spec)
        except TypeError as error:
            raise ValueError(f"data.loader.sources.{name} ({kind}): {error}") from None
    mix = Mixture(built, weights, batching)
    log.info("data mixture (%s batches): %s", batching, mix.describe())
    return mix
