"""No evaluation text in training (docs/evaluation.md, "Offline evaluation data").

Builds the training rows of every shipped data preset that needs no user path, and every offline task at full
size, then checks that (a) no evaluation text of more than three words (compared case- and whitespace-
insensitively) occurs as a training text, and (b) no scored pair of an STS task sits inside one training
positive (a comma-joined synonym list). Single words and short dish names that also occur in training are
vocabulary, not leaked labels. The same check run on the earlier synset-id split must find leaks, so the test
can fail.
"""
from __future__ import annotations

from functools import lru_cache
from itertools import combinations
from pathlib import Path

import pytest

from embedgrid.data.wordnet import normalise

ROOT = Path(__file__).resolve().parents[2]
MIN_WORDS = 4  # "more than three words"


# Presets whose rows live on the hub: not checkable offline, and not built from the offline suite's sources.
HUB_PRESETS = {"ir_data": "yixuantt/ir_data (the paper's training set) is on the Hugging Face hub", "hf": "a hub id"}


def _presets() -> list[str]:
    from omegaconf import OmegaConf

    names = []
    for path in sorted((ROOT / "conf" / "data").glob("*.yaml")):
        loader = OmegaConf.load(path).loader
        needs_user_file = "path" in loader.keys() and OmegaConf.is_missing(loader, "path")  # hf/jsonl: you name it
        if not needs_user_file and path.stem not in HUB_PRESETS:
            names.append(path.stem)
    return names


@lru_cache(maxsize=None)
def _training_texts(preset: str, *overrides: str) -> tuple[frozenset[str], frozenset[frozenset[str]]]:
    """(normalised texts of every query/positive/negative, word pairs held together by one positive)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    import embedgrid  # noqa: F401  (resolvers)
    import embedgrid.grid.schema  # noqa: F401

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"data={preset}", "model=tiny", "logger=none", *overrides])
    GlobalHydra.instance().clear()
    rows = instantiate(cfg.data.loader)
    texts, pairs = set(), set()
    for row in rows:
        texts.update(normalise(t) for t in (row.query, row.positive, *row.negatives))
        items = {normalise(item) for item in row.positive.split(",")}
        pairs.update(frozenset(p) for p in combinations(sorted(items), 2))
    return frozenset(texts), frozenset(pairs)


@lru_cache(maxsize=1)
def _evaluation() -> tuple[dict[str, set[str]], dict[str, set[frozenset[str]]]]:
    """Per offline task: its normalised texts of >= MIN_WORDS words, and (STS) its scored pairs."""
    from embedgrid.evaluate.tasks import OFFLINE_TASKS

    texts, pairs = {}, {}
    for name, cls in OFFLINE_TASKS.items():
        task = cls(max_samples="all")
        task.load_data()
        found: list[str] = []
        if "default" in task.dataset:  # retrieval / reranking
            split = task.dataset["default"]["test"]
            found += list(split["queries"]["text"]) + list(split["corpus"]["text"])
        else:
            for part in task.dataset.values():
                for column in ("text", "sentences", "sentence1", "sentence2"):
                    if column in part.column_names:
                        found += [t for t in part[column] if isinstance(t, str)]
                if cls.metadata.type == "STS":
                    pairs[name] = {frozenset((normalise(a), normalise(b)))
                                   for a, b in zip(part["sentence1"], part["sentence2"])}
        texts[name] = {normalise(t) for t in found if len(t.split()) >= MIN_WORDS}
    return texts, pairs


def _leaks(training: tuple[frozenset[str], frozenset[frozenset[str]]]) -> dict[str, int]:
    train_texts, train_pairs = training
    eval_texts, eval_pairs = _evaluation()
    leaks = {f"{name} texts": len(texts & train_texts) for name, texts in eval_texts.items()}
    leaks.update({f"{name} pairs": len(p & train_pairs) for name, p in eval_pairs.items()})
    return {key: n for key, n in leaks.items() if n}


def test_every_shipped_data_preset_is_checked():
    presets = {p.stem for p in (ROOT / "conf" / "data").glob("*.yaml")}
    assert {"wordnet", "mixture"} <= set(_presets())
    assert set(HUB_PRESETS) <= presets  # a renamed hub preset must not silently leave the list


@pytest.mark.parametrize("preset", _presets())
def test_no_evaluation_text_occurs_in_training(preset):
    assert _leaks(_training_texts(preset)) == {}


def test_the_synset_split_leaks_so_the_check_can_fail():
    """The earlier split by synset id alone shares glosses, synonym lists and STS pairs with evaluation."""
    leaks = _leaks(_training_texts("wordnet", "data.loader.holdout=synset", "data.loader.exclude_pairs_of=[]"))
    assert any(k.startswith("WordNet") for k in leaks), leaks
    assert leaks.get("SimLex999STS pairs", 0) > 0, leaks


def test_the_training_split_reads_word_pairs_without_the_evaluation_package():
    import subprocess
    import sys

    code = ("import sys; from embedgrid.data.wordnet import split_ids; split_ids('lemma', ('rg65',)); "
            "print(any(m.startswith(('mteb', 'embedgrid.evaluate')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_every_word_pair_sts_task_is_kept_out_of_training(compose):
    """A new word-pair STS task must be listed in conf/data/wordnet.yaml exclude_pairs_of."""
    from embedgrid.evaluate.tasks.sts import WORD_PAIR_TASKS

    listed = set(compose(["data=wordnet"]).data.loader.exclude_pairs_of)
    assert {cls.source for cls in WORD_PAIR_TASKS} <= listed


@pytest.mark.parametrize("preset", _presets())
def test_the_shipped_custom_evaluation_fixture_shares_no_text_with_training(preset):
    """Custom tasks are held to the same rule at run time (embedgrid.evaluate.leakage marks an overlapping one
    in-domain); the shipped example must be out-of-domain for every preset."""
    from embedgrid.evaluate import leakage
    from embedgrid.evaluate.tasks.custom import custom_specs, read_dataset, texts_of

    assert leakage.MIN_WORDS == MIN_WORDS
    fixture = ROOT / "tests" / "fixtures" / "custom_eval"
    specs = custom_specs({"R": {"type": "Retrieval", "path": str(fixture / "retrieval")},
                          "K": {"type": "Reranking", "path": str(fixture / "reranking.jsonl")},
                          "S": {"type": "STS", "path": str(fixture / "sts.jsonl")},
                          "P": {"type": "PairClassification", "path": str(fixture / "pairs.jsonl")},
                          "C": {"type": "Classification", "path": str(fixture / "classification")},
                          "U": {"type": "Clustering", "path": str(fixture / "clustering.jsonl")}})
    train_texts, _ = _training_texts(preset)
    assert {s.name: leakage.shared_texts(texts_of(read_dataset(s)), train_texts) for s in specs} == \
        {s.name: set() for s in specs}
