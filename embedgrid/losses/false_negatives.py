"""False negatives: a candidate with the same text as a row's own match is not a negative for that row."""
from __future__ import annotations

from collections import defaultdict

import torch


def same_text_mask(targets: list[str], candidates: list[str], labels: list[int]) -> torch.Tensor:
    """(len(targets), len(candidates)) bool: True where ``candidates[j]`` has the text ``targets[i]`` and
    ``j != labels[i]`` (the row's own label is never excluded)."""
    where = defaultdict(list)
    for j, text in enumerate(candidates):
        where[text].append(j)
    mask = torch.zeros(len(targets), len(candidates), dtype=torch.bool)
    for i, (text, label) in enumerate(zip(targets, labels)):
        for j in where.get(text, ()):
            if j != label:
                mask[i, j] = True
    return mask
