"""Whether an evaluation task's text occurs in a cell's training rows: such a task is marked in-domain.

The rule is the one the offline suite is held to (tests/evaluate/test_leakage.py): a text of more than three words
that occurs, case- and whitespace-insensitively, as a training query, positive or negative. Shorter texts (single
words, short names) are vocabulary, not leaked labels.
"""
from __future__ import annotations

import logging
from dataclasses import replace

from embedgrid.data.wordnet import normalise
from embedgrid.evaluate.config import EvalConfig

log = logging.getLogger(__name__)
MIN_WORDS = 4  # "more than three words"


def training_texts(rows) -> set[str]:
    """Normalised query, positive and negative texts of training rows."""
    return {normalise(t) for row in rows for t in (row.query, row.positive, *row.negatives)}


def shared_texts(texts, training: set[str]) -> set[str]:
    """The normalised ``texts`` of at least MIN_WORDS words that occur in ``training``."""
    return {n for n in (normalise(t) for t in texts if len(t.split()) >= MIN_WORDS) if n in training}


def mark_in_domain(eval_cfg: EvalConfig, rows) -> EvalConfig:
    """``eval_cfg`` with every ``in_domain: auto`` custom task decided: true when its files share a text with the
    training ``rows`` (empty for a zero-shot cell)."""
    from embedgrid.evaluate.tasks.custom import custom_specs, read_dataset, texts_of

    custom = {name: dict(node) for name, node in eval_cfg.custom.items()}
    auto = [spec for spec in custom_specs(custom) if spec.in_domain == "auto"]
    if not auto:
        return eval_cfg
    training = training_texts(rows)
    for spec in auto:
        shared = shared_texts(texts_of(read_dataset(spec)), training) if training else set()
        custom[spec.name]["in_domain"] = bool(shared)
        if shared:
            log.info("custom task %s shares %d texts with the training data: reported as in-domain", spec.name,
                     len(shared))
    return replace(eval_cfg, custom=custom)
