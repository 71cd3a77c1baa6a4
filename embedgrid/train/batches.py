"""Deterministic batch order: step s always gets the same rows for a given seed, so resume needs only s."""
from __future__ import annotations

import dataclasses
import random
from array import array
from collections.abc import Sequence
from functools import lru_cache

from embedgrid.data.rows import Row


@lru_cache(maxsize=2)  # a batch spans at most two epochs
def _epoch_order(size: int, seed: int, epoch: int) -> array:
    """Row order of one epoch (cached: shuffling 40k WordNet rows every step would cost ~30 ms).

    ``random.Random(seed).shuffle`` (Python 3.11's Fisher-Yates, the same random calls and hence the same order)
    run on an int64 array rather than a list: 8 bytes per row, so a million-row lazy source costs 8 MB, not 40.
    """
    order = array("q", range(size))
    randbelow = random.Random(seed * 1_000_003 + epoch)._randbelow
    for i in reversed(range(1, size)):
        j = randbelow(i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def batch_rows(rows: Sequence[Row], batch_size: int, step: int, seed: int) -> list[Row]:
    """Rows of training step ``step`` (0-based): an infinite stream of per-epoch seeded shuffles, or the
    source's own ``batch`` (a mixture's; see embedgrid/data/rows.py for the contract)."""
    if hasattr(rows, "batch"):
        return rows.batch(batch_size, step, seed)
    if not rows:
        raise ValueError("no training rows")
    out = []
    position = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(position, len(rows))
        order = _epoch_order(len(rows), seed, epoch)
        take = min(batch_size - len(out), len(rows) - offset)
        out.extend(rows[i] for i in order[offset:offset + take])
        position += take
    return out


NEGATIVE_MODES = ("first", "sample")


def choose_negatives(batch: list[Row], num_negatives: int, mode: str, seed: int, step: int) -> list[Row]:
    """The step's rows with the negatives it trains on: ``first`` keeps every row as it is (``split_batch`` takes
    its first ``num_negatives``); ``sample`` gives a row with more than ``num_negatives`` negatives a subset drawn
    afresh at every step, a pure function of (seed, step, the row's position in the step's global batch), so
    exact resume needs only the step and the draw does not depend on the number of processes.
    """
    if mode == "first" or num_negatives == 0:
        return batch
    if mode != "sample":
        raise ValueError(f"train.negatives={mode!r} is not one of {list(NEGATIVE_MODES)}")
    out = []
    for position, row in enumerate(batch):
        if len(row.negatives) > num_negatives:
            rng = random.Random(((seed * 1_000_003 + step) * 1_000_033 + position) % (2**63))
            picked = sorted(rng.sample(range(len(row.negatives)), num_negatives))
            row = dataclasses.replace(row, negatives=tuple(row.negatives[i] for i in picked))
        out.append(row)
    return out


def split_batch(rows: list[Row], num_negatives: int):
    """(queries, instructions, docs): docs are the positives, then each row's first ``num_negatives`` negatives.

    A row with fewer negatives is an error, since the loss's layout needs the same count for every query.
    """
    docs_neg = []
    for index, row in enumerate(rows):
        if len(row.negatives) < num_negatives:
            raise ValueError(f"row {index} ({row.query[:40]!r}) has {len(row.negatives)} negatives; "
                             f"train.num_negatives={num_negatives}")
        docs_neg.extend(row.negatives[:num_negatives])
    return [r.query for r in rows], [r.instruction for r in rows], [r.positive for r in rows] + docs_neg


def split_micro_batches(batch: list[Row], accumulation_steps: int, world_size: int) -> list[list[list[Row]]]:
    """``[micro][rank] -> rows``: the global batch cut into ``accumulation_steps`` consecutive micro-batches, each
    split evenly over the ranks (with one micro-batch and one rank: ``[[batch]]``)."""
    micro = len(batch) // accumulation_steps
    if micro * accumulation_steps != len(batch) or micro % world_size:
        raise ValueError(f"train.batch_size={len(batch)} must split into train.accumulation_steps="
                         f"{accumulation_steps} micro-batches of a size divisible by the {world_size} processes")
    per_rank = micro // world_size
    return [[batch[start + r * per_rank:start + (r + 1) * per_rank] for r in range(world_size)]
            for start in range(0, len(batch), micro)]
