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
    text = {i: ", ".join(synsets[i].words) for i in ids}

    def valid(candidate: str, synset_id: str, taken: list[str]) -> bool:
        if candidate == synset_id or synsets[candidate].split != split:
            return False
        words = text.get(candidate) or ", ".join(synsets[candidate].words)
        return words != text[synset_id] and words not in taken

    def pick(pool: list[str], synset_id: str, taken: list[str], count: int) -> list[str]:
        """``count`` distinct valid texts from ``pool``: exhaustive for small pools, else by rejection."""
        if len(pool) <= 64:
            options = sorted({", ".join(synsets[c].words) for c in pool if valid(c, synset_id, taken)})
            return rng.sample(options, min(count, len(options)))
        out: list[str] = []
        for _ in range(20 * count):
            candidate = rng.choice(pool)
            if len(out) < count and valid(candidate, synset_id, taken + out):
                out.append(", ".join(synsets[candidate].words))
        return out

    rows = []
    for synset_id in ids[:limit] if limit else ids:
        synset = synsets[synset_id]
        siblings = [c for p in synset.hypernyms for c in children.get(p, [])]
        negatives = pick(siblings, synset_id, [], num_negatives)
        if len(negatives) < num_negatives:
            cousins = [c for p in synset.hypernyms if p in synsets for g in synsets[p].hypernyms
                       for u in children.get(g, []) if u != p for c in children.get(u, [])]
            negatives += pick(cousins, synset_id, negatives, num_negatives - len(negatives))
        while len(negatives) < num_negatives:
            candidate = rng.choice(ids)
            if valid(candidate, synset_id, negatives):
                negatives.append(text[candidate])
        rows.append(Row(synset.definition, text[synset_id], tuple(negatives), instruction))
    return rows
