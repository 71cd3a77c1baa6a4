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
    rows = list(jsonl_rows(str(path)))
    assert rows == [Row("q1", "p1", ("n1", "n2")), Row("q2", "p2", ("n3",), "Instruct: x\nQuery: "), Row("q3", "p3")]
    assert list(jsonl_rows(str(path), limit=2)) == rows[:2]


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
    assert list(instantiate(cfg.data.loader)) == [Row("q", "p", ("n",))]


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
    assert list(rows) == [Row("a1", "p1", ("x1", "y1"), "Instruct: match\nQuery: "),
                    Row("a2", "p2", ("x2", "y2"), "Instruct: match\nQuery: "),
                    Row("a3", "p3", ("y3",), "Instruct: match\nQuery: ")]
    dev = hf_rows(saved_dataset, split="dev", columns={"query": "anchor", "positive": "pos"})
    assert list(dev) == [Row("a1", "p1")]


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
    assert list(rows) == [Row("a", "b", ("c", "e"))]
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


# ---- lazy sources, row validation, mixtures ------------------------------------------------------------------
def jsonl_file(path, prefix: str, n: int, negatives: int = 1):
    return write_lines(path, [json.dumps({"query": f"{prefix} q{i}", "positive": f"{prefix} p{i}",
                                          "negatives": [f"{prefix} n{i}.{j}" for j in range(negatives)]})
                              for i in range(n)])


def test_jsonl_rows_are_read_lazily_by_offset_and_a_changed_file_is_refused(tmp_path):
    import os

    from embedgrid.data.jsonl import JsonlRows

    path = jsonl_file(tmp_path / "big.jsonl", "a", 50)
    rows = JsonlRows(path)
    assert len(rows) == 50 and not hasattr(rows, "_rows")
    assert rows[37] == Row("a q37", "a p37", ("a n37.0",)) and rows[-1].query == "a q49"
    assert [r.query for r in rows[3:5]] == ["a q3", "a q4"]
    assert rows.where(37) == f"{path}@byte{sum(len(line) + 1 for line in path.read_text().splitlines()[:37])}"
    with pytest.raises(IndexError):
        rows[50]
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"query": "q", "positive": "p"}) + "\n")
    os.utime(path, ns=(1, 1))
    fresh = JsonlRows(path)  # re-indexed: sees the new line
    assert len(fresh) == 51
    with pytest.raises(RuntimeError, match="changed after it was indexed"):
        rows[0]


def test_a_row_without_negatives_is_refused_before_training_naming_file_line_and_fix(tmp_path):
    from embedgrid.data.jsonl import jsonl_rows
    from embedgrid.data.rows import require_negatives
    from embedgrid.train.config import TrainConfig
    from embedgrid.train.loop import fit

    good = json.dumps({"query": "q", "positive": "p", "negatives": ["n"]})
    path = write_lines(tmp_path / "train.jsonl", [good, good, "", json.dumps({"query": "q", "positive": "p"}), good])
    rows = jsonl_rows(str(path))
    require_negatives(rows, 0)
    message = (r"train\.jsonl:4: 0 hard negatives, but train\.num_negatives=1 needs 1 on every row; give that row .*"
               r"'negatives', drop it, or set train\.num_negatives=0")
    with pytest.raises(ValueError, match=message):
        require_negatives(rows, 1)

    class Untouchable:  # fit must refuse before it touches the model
        def parameters(self):
            raise AssertionError("fit started training")

    with pytest.raises(ValueError, match=message):
        fit(Untouchable(), rows, TrainConfig(max_steps=2, batch_size=2, num_negatives=1, progress_bar=False),
            seed=0, checkpoint_dir=tmp_path / "ckpt")


def mixture_of(tmp_path, batching="per_source", weights=(1.0, 3.0)):
    """Sources a (10 rows) and b (30 rows); the files are written once per directory."""
    from embedgrid.data.mixture import mixture

    paths = {name: tmp_path / f"{name}.jsonl" for name in "ab"}
    for (name, path), n in zip(paths.items(), (10, 30)):
        if not path.exists():
            jsonl_file(path, name, n)
    return mixture({name: {"kind": "jsonl", "path": str(path), "weight": weight}
                    for (name, path), weight in zip(paths.items(), weights)}, batching=batching)


def test_per_source_batches_come_from_one_source_by_weight_and_cover_each_epoch(tmp_path):
    mix = mixture_of(tmp_path)
    assert len(mix) == 40 and mix[12] == Row("b q2", "b p2", ("b n2.0",))
    batches = [mix.batch(5, step, seed=7) for step in range(400)]
    sources = [{r.query[0] for r in b} for b in batches]
    assert all(len(s) == 1 for s in sources)  # every batch from one source
    share_b = sum(s == {"b"} for s in sources) / len(sources)
    assert 0.68 < share_b < 0.82  # weight 3:1 -> 0.75 (binomial sd 0.022 at 400 steps)
    a_stream = [r.query for b in batches if b[0].query[0] == "a" for r in b]
    for epoch in range(len(a_stream) // 10):  # each epoch of a source is a permutation: no repeats before the end
        assert sorted(a_stream[10 * epoch:10 * epoch + 10]) == sorted(f"a q{i}" for i in range(10))
    assert a_stream[:10] != a_stream[10:20]  # a new shuffle every epoch


def test_mixed_batches_split_each_batch_by_weight(tmp_path):
    mix = mixture_of(tmp_path, batching="mixed", weights=(None, None))  # null: proportional to size (10 : 30)
    batches = [mix.batch(8, step, seed=1) for step in range(200)]
    assert all(len(b) == 8 for b in batches)
    share_a = sum(r.query[0] == "a" for b in batches for r in b) / 1600
    assert 0.21 < share_a < 0.29  # 0.25, binomial sd 0.011
    assert sum(len({r.query[0] for r in b}) == 2 for b in batches) > 150


def test_mixture_batch_order_is_a_pure_function_of_seed_and_step(tmp_path):
    for batching in ("per_source", "mixed"):
        straight = mixture_of(tmp_path, batching)
        expected = [straight.batch(6, step, seed=3) for step in range(2100)]  # crosses two schedule blocks
        fresh = mixture_of(tmp_path, batching)  # a relaunched process: no memo, random access
        for step in (2099, 5, 1024, 0, 1500):
            assert fresh.batch(6, step, seed=3) == expected[step]
        assert straight.batch(6, 5, seed=4) != expected[5]


def test_mixture_errors_name_the_source_and_valid_choices(tmp_path):
    from embedgrid.data.mixture import mixture

    path = str(jsonl_file(tmp_path / "a.jsonl", "a", 3))
    with pytest.raises(ValueError, match=r"sources\.x\.kind: unknown 'csv'; valid: jsonl, hf, parquet, wordnet"):
        mixture({"x": {"kind": "csv", "path": path}})
    with pytest.raises(ValueError, match=r"sources\.x\.weight must be > 0"):
        mixture({"x": {"kind": "jsonl", "path": path, "weight": 0}})
    with pytest.raises(ValueError, match=r"batching: unknown 'round_robin'; valid: per_source, mixed"):
        mixture({"x": {"kind": "jsonl", "path": path}}, batching="round_robin")
    with pytest.raises(ValueError, match=r"sources\.x \(jsonl\): .*unexpected keyword argument 'columns'"):
        mixture({"x": {"kind": "jsonl", "path": path, "columns": {}}})


def test_data_mixture_config_of_two_jsonl_files_wordnet_and_parquet(compose, tmp_path):
    import datasets
    from hydra.utils import instantiate

    a, b = jsonl_file(tmp_path / "a.jsonl", "a", 10), jsonl_file(tmp_path / "b.jsonl", "b", 20)
    datasets.Dataset.from_dict({"q": ["c q0", "c q1"], "d": ["c p0", "c p1"], "n": ["c n0", "c n1"]}).to_parquet(
        str(tmp_path / "c.parquet"))
    cfg = compose(["data=mixture", "data.loader.sources.wordnet.limit=50",
                   f"+data.loader.sources.a={{kind: jsonl, path: '{a}', weight: 1}}",
                   f"+data.loader.sources.b={{kind: jsonl, path: '{b}', weight: 2}}",
                   f"+data.loader.sources.c={{kind: parquet, path: '{tmp_path / 'c.parquet'}', weight: 0.5, "
                   "columns: {query: q, positive: d, negatives: [n]}}"])
    mix = instantiate(cfg.data.loader)
    assert mix.names == ["wordnet", "a", "b", "c"] and len(mix) == 50 + 10 + 20 + 2
    assert mix.probabilities.tolist() == pytest.approx([1 / 4.5, 1 / 4.5, 2 / 4.5, 0.5 / 4.5])
    assert mix[80] == Row("c q0", "c p0", ("c n0",))
    assert mix.fewest_negatives()[0] == 1


def test_ir_data_preset_maps_the_paper_columns_and_reads_a_local_parquet_copy(compose, tmp_path, monkeypatch):
    import datasets
    from hydra.utils import instantiate

    cfg = compose(["data=ir_data"])
    assert (cfg.data.loader.path, cfg.data.loader.split) == ("yixuantt/ir_data", "train")
    calls = []

    def fake_load_dataset(path, name=None, split=None, revision=None):
        calls.append(path)
        return datasets.Dataset.from_dict({"query": ["q"], "positive": ["p"], "negative": ["n"]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert list(instantiate(cfg.data.loader)) == [Row("q", "p", ("n",))] and calls == ["yixuantt/ir_data"]
    monkeypatch.undo()

    local = tmp_path / "ir_data.parquet"  # the hub set's schema: three string columns
    datasets.Dataset.from_dict({"query": ["what is a dosa", "define idli"], "positive": ["a crepe", "a cake"],
                                "negative": ["a drink", None]}).to_parquet(str(local))
    rows = instantiate(compose(["data=ir_data", f"data.loader.path={local}"]).data.loader)
    assert list(rows) == [Row("what is a dosa", "a crepe", ("a drink",)), Row("define idli", "a cake")]
    assert rows.fewest_negatives() == (0, f"{local}[train][1]")


MIXTURE_CELL_SCRIPT = """
import sys, time, torch
torch.set_num_threads(1)
sys.path.insert(0, {root!r})
from hydra import compose, initialize_config_dir
import embedgrid, embedgrid.grid.schema
import embedgrid.train.loop as loop
from embedgrid.grid.cell import run

with initialize_config_dir(config_dir={conf!r}, version_base="1.3"):
    cfg = compose("config", overrides={overrides!r})
if sys.argv[2] == "hang":  # block before the step-4 checkpoint (steps 3-4 ran in memory) until killed
    real_save = loop.save_checkpoint

    def save(directory, encoder, optimizer, scheduler, step, meta):
        if step == 4:
            print("HANGING", flush=True)
            time.sleep(600)
        return real_save(directory, encoder, optimizer, scheduler, step, meta)

    loop.save_checkpoint = save
outcome = run(cfg, sys.argv[1])
import json
print("TRAIN", json.dumps(json.load(open(sys.argv[1] + "/cell.json"))["train"]), flush=True)
"""


@pytest.mark.slow
def test_a_mixture_of_two_jsonl_files_and_wordnet_trains_a_cell_and_resumes_exactly_after_sigkill(tmp_path):
    """The issue's bar: data=mixture (two JSONL files + WordNet, per-source batches) trains a tiny cell; killed
    with SIGKILL mid-training and launched again it ends with the same weights as an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys

    from safetensors.torch import load_file

    from tests.conftest import ROOT, TINY

    a, b = jsonl_file(tmp_path / "a.jsonl", "alpha", 12), jsonl_file(tmp_path / "b.jsonl", "beta", 20)
    overrides = [*TINY, "train.max_steps=6", "train.checkpoint_every=2", "lora.dropout=0.1", "data=mixture",
                 "data.loader.sources.wordnet.limit=40",
                 f"+data.loader.sources.a={{kind: jsonl, path: '{a}', weight: 1}}",
                 f"+data.loader.sources.b={{kind: jsonl, path: '{b}', weight: 1}}"]
    script = tmp_path / "cell.py"
    script.write_text(MIXTURE_CELL_SCRIPT.format(root=str(ROOT), conf=str(ROOT / "conf"), overrides=overrides))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(cell, mode):
        return subprocess.run([sys.executable, str(script), str(cell), mode], env=env, capture_output=True,
                              text=True, timeout=600)

    straight = run(tmp_path / "straight", "plain")
    assert straight.returncode == 0, straight.stderr[-3000:]
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "killed"), "hang"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "HANGING"
        assert json.loads((tmp_path / "killed" / "checkpoints" / "last" / "meta.json").read_text())["step"] == 2
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    resumed = run(tmp_path / "killed", "plain")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    train = json.loads(resumed.stdout.split("TRAIN ", 1)[1])
    assert train["start_step"] == 2 and train["steps"] == 6
    files = sorted(p.relative_to(tmp_path / "straight") for p in (tmp_path / "straight" / "model").rglob(
        "*.safetensors"))
    tensors = 0
    for name in files:  # the LoRA adapter (and the pooling head's file, empty for mean pooling)
        x, y = load_file(tmp_path / "straight" / name), load_file(tmp_path / "killed" / name)
        assert x.keys() == y.keys()
        tensors += len(x)
        assert all(float((x[k] - y[k]).abs().max()) <= 1e-6 for k in x), name
    assert tensors > 0, "the cell saved no weights"


def test_epoch_order_is_random_shuffle_in_eight_bytes_a_row():
    """Pinned: the array shuffle must give exactly random.Random.shuffle's order, so every existing cell's batches
    (and a resume of one started before) stay the same."""
    import random

    from embedgrid.train.batches import _epoch_order

    for size, seed, epoch in ((1, 0, 0), (7, 3, 1), (1000, 5, 2), (40_000, 0, 0)):
        expected = list(range(size))
        random.Random(seed * 1_000_003 + epoch).shuffle(expected)
        order = _epoch_order(size, seed, epoch)
        assert list(order) == expected and order.itemsize == 8
