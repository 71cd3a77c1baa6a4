"""Length-sorted batching, the one place for it: encoding (a token budget per batch), the training step (the
cheapest split by padding + per-call cost) and GradCache (fixed-size chunks), and the way back to input order.

Written here rather than taken from a library: the cost-optimal split (an exact DP over distinct lengths) and
the token budget are what make embedgrid's batches cheaper than fixed-size ones, and no library offers them.
"""
from __future__ import annotations

import torch


def length_order(lengths: list[int], longest_first: bool = False) -> list[int]:
    """Indices sorted by length (stable: equal lengths keep their input order)."""
    return sorted(range(len(lengths)), key=(lambda i: -lengths[i]) if longest_first else (lambda i: lengths[i]))


def token_budget_batches(lengths: list[int], budget: int) -> list[tuple[int, int]]:
    """(start, end) slices of ``lengths`` (sorted longest first) whose padded size, texts × the slice's longest,
    stays within ``budget`` tokens; at least one text per slice."""
    out, start = [], 0
    while start < len(lengths):
        end = min(len(lengths), start + max(1, budget // max(lengths[start], 1)))
        out.append((start, end))
        start = end
    return out


def sorted_chunks(lengths: list[int], overhead_tokens: float) -> list[list[int]]:
    """Indices in length-sorted chunks minimising padded tokens + ``overhead_tokens`` per chunk (exact DP).

    The cost of a chunk is (texts x its longest text) + the fixed per-call cost in token equivalents. An
    optimal cut never splits texts of equal length, so the DP runs over distinct lengths (<= max_length).
    """
    order = length_order(lengths)
    if not order:
        return []
    ends, values = [], []  # ends[g]: end (exclusive, in ``order``) of the g-th run of equal lengths
    for k, i in enumerate(order):
        if values and values[-1] == lengths[i]:
            ends[-1] = k + 1
        else:
            ends.append(k + 1)
            values.append(lengths[i])
    best, cut = [0.0] + [float("inf")] * len(ends), [0] * (len(ends) + 1)
    for g in range(1, len(ends) + 1):  # chunk = runs (j, g]; its longest text is values[g - 1]
        for j in range(g):
            start = ends[j - 1] if j else 0
            cost = best[j] + (ends[g - 1] - start) * values[g - 1] + overhead_tokens
            if cost < best[g]:
                best[g], cut[g] = cost, j
    chunks, g = [], len(ends)
    while g:
        j = cut[g]
        chunks.append(order[(ends[j - 1] if j else 0):ends[g - 1]])
        g = j
    return chunks[::-1]


def fixed_size_chunks(order: list[int], size: int) -> list[list[int]]:
    """``order`` cut into consecutive chunks of ``size`` indices (the last may be shorter)."""
    return [order[start:start + size] for start in range(0, len(order), size)]


def input_order(chunks: list[list[int]]) -> torch.Tensor:
    """The permutation that takes rows stacked chunk by chunk back to input order (``stacked[input_order]``)."""
    flat = torch.tensor([i for chunk in chunks for i in chunk], dtype=torch.long)
    inverse = torch.empty_like(flat)
    inverse[flat] = torch.arange(len(flat))
    return inverse
