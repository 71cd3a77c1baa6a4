"""Training data: JSONL (errors name file and line), HF datasets with a column mapping, WordNet pairs and splits."""
from __future__ import annotations

import json

import pytest

from embedgrid.data.rows import Row


# ---- JSONL -------------------------------------------------------------------------------------------------
def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_reads_rows_and_skips_blank_lines(tmp_path):
    from embedgrid.data.jsonl import jsonl_rows

    path = write_lines(tmp_path / "train.jsonl", [
        json.dumps({"query": "q1", "positive": "p1", "negatives": ["n1", "n2"]}),
        "",
        json.dumps({"query": "q2", "positive": "p2", "negatives": "n3", "instruction": "Instruct: x\nQuery: "}),
        json.dumps({"query": "q3", "positive": "p3"}),
    ])
    rows = jsonl_rows(str(path))
    assert rows == [Row("q1", "p1", ("n1", "n2")), Row("q2", "p2", ("n3",), "Instruct: x\nQuery: "), Row("q3", "p3")]
    assert jsonl_rows(str(path), limit=2) == rows[:2]


@pytest.mark.parametrize("bad_line,message", [
    ('{"query": "q", "positive": ', r"train\.jsonl:3: invalid JSON"),
    ('{"query": "q"}', r"train\.jsonl:3: 'positive' must be a non-empty string"),
    ('{"query": "q", "positive": "p", "negatives": [1]}', r"train\.jsonl:3: 'negatives' must be a list of strings"),
    ('{"query": "q", "positive": "p", "negative": "n"}', r"train\.jsonl:3: unknown fields \['negative'\]"),
    ('["q", "p"]', r"train\.jsonl:3: expected an object"),
])
def test_jsonl_malformed_row_names_file_and_line(tmp_path, bad_line, message):
    from embedgrid.data.jsonl import jsonl_rows

    good = json.dumps({"query": "q", "positive": "p"})
    path = write_lines(tmp_path / "train.jsonl", [good, good, bad_line, good])
    with pytest.raises(ValueError, match=message):
        jsonl_rows(str(path))


def test_jsonl_missing_file_is_named(tmp_path):
    from embedgrid.data.jsonl import jsonl_rows

    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        jsonl_rows(str(tmp_path / "nope.jsonl"))


def test_data_jsonl_config_instantiates(compose, tmp_path):
    from hydra.utils import instantiate

    path = write_lines(tmp_path / "t.jsonl", [json.dumps({"query": "q", "positive": "p", "negatives": ["n"]})])
    cfg = compose(["data=jsonl", f"data.loader.path={path}"])
    assert instantiate(cfg.data.loader) == [Row("q", "p", ("n",))]


# ---- HF datasets -------------------------------------------------------------------------------------------
@pytest.fixture
def saved_dataset(tmp_path):
    import datasets

    data = {"anchor": ["a1", "a2", "a3"], "pos": ["p1", "p2", "p3"], "neg_1": ["x1", "x2", None],
            "neg_2": ["y1", "y2", "y3"], "extra": [1, 2, 3]}
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict(data),
                                   "dev": datasets.Dataset.from_dict({k: v[:1] for k, v in data.items()})})
    splits.save_to_disk(str(tmp_path / "ds"))
    return str(tmp_path / "ds")


def test_hf_rows_column_mapping_from_a_saved_dataset(saved_dataset):
    from embedgrid.data.hf import hf_rows

    rows = hf_rows(saved_dataset, columns={"query": "anchor", "positive": "pos", "negatives": ["neg_1", "neg_2"]},
                   instruction="Instruct: match\nQuery: ")
    assert rows == [Row("a1", "p1", ("x1", "y1"), "Instruct: match\nQuery: "),
                    Row("a2", "p2", ("x2", "y2"), "Instruct: match\nQuery: "),
                    Row("a3", "p3", ("y3",), "Instruct: match\nQuery: ")]
    assert hf_rows(saved_dataset, split="dev", columns={"query": "anchor", "positive": "pos"}) == [Row("a1", "p1")]


def test_hf_rows_bad_mapping_names_the_columns(saved_dataset):
    from embedgrid.data.hf import hf_rows

    with pytest.raises(ValueError, match=r"no columns \['query'\]; available: \['anchor', 'pos'"):
        hf_rows(saved_dataset, columns={"query": "query", "positive": "pos"})
    with pytest.raises(ValueError, match="unknown fields \\['anchor'\\]; valid: query, positive"):
        hf_rows(saved_dataset, columns={"anchor": "anchor", "query": "anchor", "positive": "pos"})
    with pytest.raises(ValueError, match="no split 'test'; available: train, dev"):
        hf_rows(saved_dataset, split="test", columns={"query": "anchor", "positive": "pos"})


def test_hf_rows_hub_id_goes_to_load_dataset(monkeypatch):
    import datasets

    from embedgrid.data.hf import hf_rows

    calls = []

    def fake_load_dataset(path, name=None, split=None, revision=None):
        calls.append((path, name, split, revision))
        return datasets.Dataset.from_dict({"q": ["a"], "d": ["b"], "n": [["c", "e"]]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = hf_rows("org/pairs", split="train", name="en", revision="abc123",
                   columns={"query": "q", "positive": "d", "negatives": "n"})
    assert rows == [Row("a", "b", ("c", "e"))]
    assert calls == [("org/pairs", "en", "train", "abc123")]


def test_hf_rows_local_jsonl_file(tmp_path):
    from embedgrid.data.hf import hf_rows

    path = write_lines(tmp_path / "pairs.jsonl", [json.dumps({"q": "a", "d": "b"}), json.dumps({"q": "c", "d": ""})])
    with pytest.raises(ValueError, match=r"pairs\.jsonl\[train\]\[1\]: 'positive' must be a non-empty string"):
        hf_rows(str(path), columns={"query": "q", "positive": "d"})


# ---- WordNet -----------------------------------------------------------------------------------------------
def test_synset_split_is_stable_and_about_one_fifth_heldout():
    """Pinned: the evaluation tasks built on WordNet use the same split; changing it would leak training pairs."""
    from embedgrid.data.wordnet import HELDOUT_PERCENT, load_synsets, synset_split

    pinned = {"00001740-a": "train", "00099341-r": "heldout", "00117624-v": "heldout", "02084071-n": "train",
              "00152727-n": "train", "00135342-s": "train"}
    assert {i: synset_split(i) for i in pinned} == pinned
    splits = [synset_split(i) for i in load_synsets()]
    assert abs(splits.count("heldout") / len(splits) - HELDOUT_PERCENT / 100) < 0.01


def _by_text():
    from embedgrid.data.wordnet import load_synsets

    synsets = load_synsets()
    definition, words = {}, {}
    for s in synsets.values():
        definition.setdefault(s.definition, set()).add(s.id)
        words.setdefault(", ".join(s.words), set()).add(s.id)
    return synsets, definition, words


def test_wordnet_rows_stay_in_their_split_and_negatives_are_hypernym_siblings():
    from embedgrid.data.wordnet import definition_synonym_rows, split_ids

    synsets, by_definition, by_words = _by_text()
    children = {}
    for s in synsets.values():
        for parent in s.hypernyms:
            children.setdefault(parent, set()).add(s.id)
    for split in ("train", "heldout"):
        members = split_ids("lemma")[split]  # the lemma holdout (default): see test_leakage.py for what it keeps out
        rows = definition_synonym_rows(split=split, num_negatives=2, limit=300)
        assert len(rows) == 300 and all(len(r.negatives) == 2 for r in rows)
        sibling_rows = 0
        for row in rows:
            query_ids = by_definition[row.query]
            assert query_ids & by_words[row.positive] & members
            for negative in row.negatives:
                assert negative != row.positive
                assert by_words[negative] & members
            parents = {p for i in query_ids for p in synsets[i].hypernyms}
            siblings = {c for p in parents for c in children.get(p, ()) if c in members
                        and c not in query_ids and ", ".join(synsets[c].words) != row.positive}
            if siblings:  # nearest first: the first negative is a synset under the same hypernym
                sibling_rows += 1
                assert any(parents & set(synsets[i].hypernyms) for i in by_words[row.negatives[0]]), row
        assert sibling_rows > 150  # most rows (nouns, verbs) have hypernyms


def test_wordnet_rows_are_deterministic():
    from embedgrid.data.wordnet import definition_synonym_rows

    assert definition_synonym_rows(limit=50, seed=1) == definition_synonym_rows(limit=50, seed=1)
    assert definition_synonym_rows(limit=50, seed=1) != definition_synonym_rows(limit=50, seed=2)
    with pytest.raises(ValueError, match="unknown WordNet split 'test'; valid: train, heldout"):
        definition_synonym_rows(split="test")
    with pytest.raises(ValueError, match="unknown WordNet holdout 'gloss'; valid: lemma, synset"):
        definition_synonym_rows(holdout="gloss")
    with pytest.raises(ValueError, match="unknown word-pair set 'simverb'; valid: wordsim353, simlex999"):
        definition_synonym_rows(exclude_pairs_of=["simverb"])
