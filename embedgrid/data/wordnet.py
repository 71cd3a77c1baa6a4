"""WordNet 3.0 (Debian ``wordnet-base``) as real offline text: synsets, glosses, hypernym siblings.

Training pairs are definition ↔ synonyms; hard negatives are sibling synsets under the same hypernym (then
cousins, then random synsets of the same split).
Synsets are split deterministically by a hash of their id, so evaluation tasks built on the held-out split
(see embedgrid/evaluate/tasks) never see training synsets.
"""
from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from embedgrid.assets import MissingAsset
from embedgrid.data.rows import Row

WORDNET_DIR = os.environ.get("WORDNET_DIR", "/usr/share/wordnet")
INSTALL = "sudo apt-get install -y wordnet-base"
POS_FILES = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "s": "data.adj", "r": "data.adv"}
SPLITS = ("train", "heldout")
HELDOUT_PERCENT = 20


@dataclass(frozen=True)
class Synset:
    id: str  # "<offset>-<pos>"
    lexname: int
    words: tuple[str, ...]
    definition: str
    examples: tuple[str, ...]
    hypernyms: tuple[str, ...]

    @property
    def split(self) -> str:
        return synset_split(self.id)


def synset_split(synset_id: str) -> str:
    bucket = int(hashlib.sha256(synset_id.encode()).hexdigest()[:8], 16) % 100
    return "heldout" if bucket < HELDOUT_PERCENT else "train"


def _parse_gloss(gloss: str) -> tuple[str, tuple[str, ...]]:
    parts = [p.strip() for p in gloss.split(";")]
    definition = "; ".join(p for p in parts if p and not p.startswith('"'))
    examples = tuple(p.strip('"') for p in parts if p.startswith('"'))
    return definition, examples


def _parse_line(line: str) -> Synset:
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    offset, lexname, pos = fields[0], int(fields[1]), fields[2]
    n_words = int(fields[3], 16)
    words = tuple(fields[4 + 2 * i].replace("_", " ") for i in range(n_words))
    rest = fields[4 + 2 * n_words:]
    n_ptrs = int(rest[0])
    hypernyms = []
    for i in range(n_ptrs):
        symbol, target, target_pos = rest[1 + 4 * i], rest[2 + 4 * i], rest[3 + 4 * i]
        if symbol in ("@", "@i"):
            hypernyms.append(f"{target}-{target_pos}")
    definition, examples = _parse_gloss(gloss.strip())
    return Synset(f"{offset}-{pos}", lexname, words, definition, examples, tuple(hypernyms))


@lru_cache(maxsize=1)
def load_synsets(directory: str = WORDNET_DIR) -> dict[str, Synset]:
    root = Path(directory)
    synsets: dict[str, Synset] = {}
    for name in sorted(set(POS_FILES.values())):
        path = root / name
        if not path.exists():
            raise MissingAsset(f"WordNet file {path} is missing; install it with: {INSTALL}")
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):  # licence header
                    continue
                synset = _parse_line(line)
                synsets[synset.id] = synset
    return synsets


def siblings_index(synsets: dict[str, Synset]) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {}
    for synset in synsets.values():
        for parent in synset.hypernyms:
            children.setdefault(parent, []).append(synset.id)
    return children


def definition_synonym_rows(split: str = "train", num_negatives: int = 1, seed: int = 0,
                            limit: int | None = None, instruction: str | None = None) -> list[Row]:
    """Rows (definition → its synonyms) over synsets with ≥2 words of one split.

    Hard negatives come from the same split, nearest first: sibling synsets under the same hypernym, then
    cousins (under a sibling of the hypernym), then random synsets (adjectives and adverbs have no hypernyms).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown WordNet split '{split}'; valid: {', '.join(SPLITS)}")
    synsets = load_synsets()
    children = siblings_index(synsets)
    rng = random.Random(seed)
    ids = sorted(s.id for s in synsets.values() if len(s.words) >= 2 and s.split == split and s.definition)
    rng.shuffle(ids)
    rows = []
    for synset_id in ids[:limit] if limit else ids:
        synset = synsets[synset_id]
        positive = ", ".join(synset.words)
        siblings = {c for p in synset.hypernyms for c in children.get(p, [])}
        cousins = {c for p in synset.hypernyms for g in synsets[p].hypernyms if p in synsets
                   for u in children.get(g, []) for c in children.get(u, [])} - siblings
        negatives: list[str] = []
        for tier in (siblings, cousins):
            texts = sorted({", ".join(synsets[c].words) for c in tier
                            if c != synset_id and synsets[c].split == split} - {positive})
            negatives += rng.sample(texts, min(len(texts), num_negatives - len(negatives)))
        while len(negatives) < num_negatives:
            text = ", ".join(synsets[rng.choice(ids)].words)
            if text != positive and text not in negatives:
                negatives.append(text)
        rows.append(Row(synset.definition, positive, tuple(negatives), instruction))
    return rows
