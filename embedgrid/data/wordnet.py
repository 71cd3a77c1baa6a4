"""WordNet 3.0 (Debian ``wordnet-base``) as real offline text: synsets, glosses, hypernym siblings.

Training pairs are definition ↔ synonyms; hard negatives are sibling synsets under the same hypernym (then
cousins, then random synsets of the same split).
Held-out synsets are chosen by a hash of their id; evaluation tasks (embedgrid/evaluate/tasks) are built on them.
``holdout="lemma"`` (the default) also keeps their text out of training: a training synset shares no lemma and no
gloss with any held-out synset and holds no scored word pair of the word-similarity STS tasks; held-out synsets
whose gloss or synonym list repeats another's are dropped (duplicate documents would make labels noise).
``holdout="synset"`` is the old split by synset id alone, which leaks (docs/evaluation.md, "Offline evaluation data").
"""
from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from embedgrid.errors import MissingAsset
from embedgrid.data.rows import Row

WORDNET_DIR = os.environ.get("WORDNET_DIR", "/usr/share/wordnet")
INSTALL = "sudo apt-get install -y wordnet-base"
POS_FILES = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "s": "data.adj", "r": "data.adv"}
SPLITS = ("train", "heldout")
HOLDOUTS = ("lemma", "synset")
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
        """The hash bucket of the id; :func:`split_ids` decides what is actually trained and evaluated on."""
        return synset_split(self.id)


def synset_split(synset_id: str) -> str:
    bucket = int(hashlib.sha256(synset_id.encode()).hexdigest()[:8], 16) % 100
    return "heldout" if bucket < HELDOUT_PERCENT else "train"


# The word-similarity sets the offline STS tasks score: no training synset may hold one of their pairs. The
# default of every WordNet training source (data=wordnet states it too, data=mixture's wordnet source inherits it).
SCORED_PAIR_SOURCES = ("wordsim353", "simlex999", "men", "mturk287", "rareword", "rg65")


def normalise(text: str) -> str:
    """Case- and whitespace-insensitive form used to compare texts across splits."""
    return " ".join(text.lower().split())


def words_text(synset: Synset) -> str:
    return ", ".join(synset.words)


@lru_cache(maxsize=None)
def split_ids(holdout: str = "lemma", exclude_pairs_of: tuple[str, ...] = ()) -> dict[str, frozenset[str]]:
    """Synset ids of each split (``SPLITS``) under a holdout policy (``HOLDOUTS``).

    ``exclude_pairs_of`` names word-pair sources (embedgrid.data.word_pairs.WORD_PAIR_SOURCES) whose
    scored pairs no training synset may hold together; used with ``holdout="lemma"`` only.
    """
    if holdout not in HOLDOUTS:
        raise ValueError(f"unknown WordNet holdout '{holdout}'; valid: {', '.join(HOLDOUTS)}")
    synsets = load_synsets()
    if holdout == "synset":
        return {split: frozenset(i for i, s in synsets.items() if s.split == split) for split in SPLITS}
    hashed_heldout = sorted(i for i, s in synsets.items() if s.split == "heldout" and s.definition)
    train = {i for i, s in synsets.items() if s.split == "train"}
    heldout, seen = [], set()
    for i in hashed_heldout:  # id order: the first synset of a repeated gloss or synonym list stays
        keys = {("gloss", normalise(synsets[i].definition)), ("words", normalise(words_text(synsets[i])))}
        if not keys & seen:
            heldout.append(i)
        seen |= keys
    held_lemmas = {w.lower() for i in hashed_heldout for w in synsets[i].words}
    held_glosses = {normalise(synsets[i].definition) for i in hashed_heldout}
    pairs = set()
    if exclude_pairs_of:
        from embedgrid.data.word_pairs import word_pairs

        pairs = {frozenset((a.lower(), b.lower())) for name in exclude_pairs_of for a, b, _ in word_pairs(name)}

    def trainable(synset: Synset) -> bool:
        lemmas = {w.lower() for w in synset.words}
        if lemmas & held_lemmas or normalise(synset.definition) in held_glosses:
            return False
        return not any(frozenset((a, b)) in pairs for a in lemmas for b in lemmas if a < b)

    return {"train": frozenset(i for i in train if trainable(synsets[i])), "heldout": frozenset(heldout)}


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
                            limit: int | None = None, instruction: str | None = None, holdout: str = "lemma",
                            exclude_pairs_of: list[str] | tuple[str, ...] = SCORED_PAIR_SOURCES) -> list[Row]:
    """Rows (definition → its synonyms) over synsets with ≥2 words of one split (see :func:`split_ids`).

    Hard negatives come from the same split, nearest first: sibling synsets under the same hypernym, then
    cousins (under a sibling of the hypernym), then random synsets (adjectives and adverbs have no hypernyms).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown WordNet split '{split}'; valid: {', '.join(SPLITS)}")
    synsets = load_synsets()
    members = split_ids(holdout, tuple(exclude_pairs_of))[split]
    children = siblings_index(synsets)
    rng = random.Random(seed)
    ids = sorted(i for i in members if len(synsets[i].words) >= 2 and synsets[i].definition)
    rng.shuffle(ids)
    text = {i: ", ".join(synsets[i].words) for i in ids}

    def valid(candidate: str, synset_id: str, taken: list[str]) -> bool:
        if candidate == synset_id or candidate not in members:
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
