"""``eval.custom``: your own files as mteb tasks (tests/fixtures/custom_eval, one task per type)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from embedgrid.errors import ConfigError
from tests.helpers import ROOT, TINY

FIXTURE = ROOT / "tests" / "fixtures" / "custom_eval"
CUSTOM = {
    "MyRetrieval": {"type": "Retrieval", "path": str(FIXTURE / "retrieval")},
    "MyReranking": {"type": "Reranking", "path": str(FIXTURE / "reranking.jsonl")},
    "MySTS": {"type": "STS", "path": str(FIXTURE / "sts.jsonl"), "min_score": 0, "max_score": 5},
    "MyPairs": {"type": "PairClassification", "path": str(FIXTURE / "pairs.jsonl")},
    "MyClassification": {"type": "Classification", "path": str(FIXTURE / "classification")},
    "MyClustering": {"type": "Clustering", "path": str(FIXTURE / "clustering.jsonl")},
}


def hydra_value(value) -> str:
    """A value in Hydra's override grammar (strings quoted, mapping keys bare)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def overrides(custom=CUSTOM) -> list[str]:
    return ["eval.tasks=[]", *(f"+eval.custom.{name}={hydra_value(node)}" for name, node in custom.items())]


def test_every_type_builds_as_mteb_s_own_task_class_with_the_files_fingerprint():
    from mteb.abstasks import AbsTaskClassification, AbsTaskClustering, AbsTaskPairClassification, AbsTaskSTS
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    from embedgrid.evaluate.tasks.custom import check_custom, custom_task, fingerprint

    bases = {"Retrieval": AbsTaskRetrieval, "Reranking": AbsTaskRetrieval, "STS": AbsTaskSTS,
             "PairClassification": AbsTaskPairClassification, "Classification": AbsTaskClassification,
             "Clustering": AbsTaskClustering}
    specs = check_custom(CUSTOM)
    assert [s.type for s in specs] == list(bases)
    for spec in specs:
        task = custom_task(spec)
        assert isinstance(task, bases[spec.type]) and task.metadata.type == spec.type
        assert task.metadata.revision == fingerprint(spec) and task.metadata.revision.startswith("sha256-")
        task.load_data()
    retrieval = custom_task(specs[0])
    retrieval.load_data()
    split = retrieval.dataset["default"]["test"]
    assert split["relevant_docs"]["q4"] == {"c6": 2, "c5": 0} and len(split["corpus"]) == 8
    assert dict(zip(split["corpus"]["id"], split["corpus"]["title"]))["c1"] == "Cats"


def test_the_fingerprint_is_the_content(tmp_path):
    from embedgrid.evaluate.tasks.custom import custom_specs, fingerprint

    shutil.copytree(FIXTURE, tmp_path / "copy")
    spec, = custom_specs({"T": {"type": "Retrieval", "path": str(tmp_path / "copy" / "retrieval")}})
    original, = custom_specs({"T": {"type": "Retrieval", "path": str(FIXTURE / "retrieval")}})
    assert fingerprint(spec) == fingerprint(original)  # same bytes elsewhere: same revision
    with open(tmp_path / "copy" / "retrieval" / "qrels" / "test.tsv", "a") as f:
        f.write("q1\tc2\t1\n")
    assert fingerprint(spec) != fingerprint(original)


@pytest.mark.parametrize("kind, file, content, message", [
    ("STS", "sts.jsonl", '{"sentence1": "a b", "sentence2": "c d", "score": 1}\n{"sentence1": "a b", "score": 2}\n',
     r"sts.jsonl:2: no 'sentence2'"),
    ("STS", "sts.jsonl", '{"sentence1": "a b", "sentence2": "c d", "score": "high"}\n',
     r"sts.jsonl:1: 'score' is str 'high', not int or float"),
    ("PairClassification", "pairs.jsonl", '{"sentence1": "a", "sentence2": "b", "label": 1}\n\n'
     '{"sentence1": "a", "sentence2": "b", "label": 2}\n', r"pairs.jsonl:3: 'label' must be 0 or 1"),
    ("Clustering", "clusters.jsonl", '{"text": "a", "label": "x"}\nnot json\n', r"clusters.jsonl:2: not valid JSON"),
    ("Reranking", "rerank.jsonl", '{"query": "q", "positive": ["p"], "negative": []}\n',
     r"rerank.jsonl:1: needs at least one positive and one negative"),
])
def test_a_bad_row_is_named_by_file_and_line(tmp_path, kind, file, content, message):
    from embedgrid.evaluate.tasks.custom import check_custom

    (tmp_path / file).write_text(content)
    with pytest.raises(ConfigError, match=message):
        check_custom({"Mine": {"type": kind, "path": str(tmp_path / file)}})


def test_a_qrel_naming_an_unknown_document_is_named(tmp_path):
    from embedgrid.evaluate.tasks.custom import check_custom

    shutil.copytree(FIXTURE / "retrieval", tmp_path / "r")
    with open(tmp_path / "r" / "qrels" / "test.tsv", "a") as f:
        f.write("q1\tnowhere\t1\n")
    with pytest.raises(ConfigError, match=r"test.tsv:7: corpus-id 'nowhere' is not in corpus.jsonl"):
        check_custom({"Mine": {"type": "Retrieval", "path": str(tmp_path / "r")}})


def test_bad_specs_fail_in_the_plan_step_before_any_job(compose, tmp_path):
    from embedgrid.grid.schema import check

    from embedgrid.evaluate.tasks.custom import check_custom

    with pytest.raises(ConfigError, match=r"eval.custom.../escape: a task name is letters"):
        check_custom({"../escape": CUSTOM["MySTS"]})  # a name becomes a result file's name
    cases = [({"T": {"type": "Regression", "path": "x"}}, r"eval.custom.T.type='Regression'; valid: Retrieval"),
             ({"T": {"type": "STS", "path": str(tmp_path / "none.jsonl")}}, r"none.jsonl is missing"),
             ({"T": {"type": "STS", "path": "x", "colour": 1}}, r"unknown keys \['colour'\]"),
             ({"LeeDocumentSTS": CUSTOM["MySTS"]}, r"already has a task of this name")]
    for custom, message in cases:
        with pytest.raises(ConfigError, match=message):
            check(compose([*TINY, *overrides(custom)]))
    check(compose([*TINY, *overrides()]))


def test_in_domain_when_the_files_share_a_text_with_the_training_rows():
    from embedgrid.data.rows import Row
    from embedgrid.evaluate.config import EvalConfig
    from embedgrid.evaluate.leakage import mark_in_domain

    evaluation = EvalConfig(tasks=[], custom={**CUSTOM, "MyPairs": {**CUSTOM["MyPairs"], "in_domain": False}})
    rows = [Row(query="dogs were bred from WOLVES and are kept  to herd sheep or guard a house.", positive="x",
                negatives=["A cat is sleeping on the sofa."]),  # a corpus text and an STS / pair sentence
            Row(query="cats", positive="Bread", negatives=[])]  # short texts are vocabulary, not leaks
    marked = {name: node["in_domain"] for name, node in mark_in_domain(evaluation, rows).custom.items()}
    assert marked == {"MyRetrieval": True, "MyReranking": False, "MySTS": True, "MyPairs": False,
                      "MyClassification": False, "MyClustering": False}
    assert all(v is False for v in
               (n["in_domain"] for n in mark_in_domain(evaluation, []).custom.values()))  # zero-shot


def test_scores_of_other_file_contents_do_not_cover_the_task(tmp_path):
    from embedgrid.evaluate.config import EvalConfig
    from embedgrid.evaluate.run import scores_cover, settings_hash
    from embedgrid.evaluate.tasks.custom import custom_revisions

    shutil.copy(FIXTURE / "sts.jsonl", tmp_path / "sts.jsonl")
    evaluation = EvalConfig(tasks=[], custom={"MySTS": {"type": "STS", "path": str(tmp_path / "sts.jsonl")}})
    scores = {"MySTS": {"eval_settings": settings_hash(evaluation),
                        "dataset_revision": custom_revisions(evaluation.custom)["MySTS"]}}
    assert scores_cover(scores, evaluation)
    with open(tmp_path / "sts.jsonl", "a") as f:
        f.write('{"sentence1": "one more pair", "sentence2": "of sentences", "score": 1}\n')
    assert not scores_cover(scores, evaluation)


class VectorTable:
    """Builds an mteb model that returns stored vectors by text: mteb's evaluators on exactly these vectors."""

    @staticmethod
    def model(vectors: dict[str, np.ndarray]):
        from mteb.models.abs_encoder import AbsEncoder
        from mteb.models.model_meta import ModelMeta, ScoringFunction

        class Table(AbsEncoder):
            def __init__(self):
                self.mteb_model_meta = ModelMeta.create_empty(overwrites={
                    "name": "test/table", "revision": "r", "similarity_fn_name": ScoringFunction.COSINE})

            def encode(self, inputs, **kwargs):
                return np.stack([vectors[t] for batch in inputs for t in batch["text"]])

        return Table()


def all_texts(task) -> list[str]:
    from embedgrid.evaluate.tasks.custom import texts_of

    task.load_data()
    texts = texts_of(task.dataset)
    if "default" in task.dataset:  # mteb encodes a document as "title text"
        corpus = task.dataset["default"]["test"]["corpus"]
        texts += [f"{title} {text}".strip() for title, text in zip(corpus["title"], corpus["text"])]
    return texts


@pytest.mark.slow
def test_a_cell_scores_custom_tasks_as_mteb_scores_the_same_vectors(compose, tmp_path):
    """The done-when check: a trained tiny cell evaluated with eval.custom (every type) gets, per task, the main
    score mteb's own evaluator gives on the vectors of the cell's saved encoder; STS and retrieval are also
    recomputed without mteb (scipy, pytrec_eval)."""
    import mteb
    import pytrec_eval
    from scipy.stats import spearmanr

    import embedgrid
    from embedgrid.evaluate.tasks.custom import custom_specs, custom_task
    from embedgrid.grid.cell import run

    cfg = compose([*TINY, "train.max_steps=2", "data.loader.limit=256", *overrides()])
    outcome = run(cfg, tmp_path)
    assert outcome.status == "done"
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert list(scores) == list(CUSTOM)
    assert {s["category"] for s in scores.values()} == {"Retrieval", "Reranking", "STS", "PairClassification",
                                                        "Classification", "Clustering"}
    assert not any(s["in_domain"] for s in scores.values())  # the fixture shares no text with WordNet rows

    encoder = embedgrid.load_encoder(tmp_path / "model")
    for spec in custom_specs(CUSTOM):
        texts = sorted(set(all_texts(custom_task(spec))))
        vectors = dict(zip(texts, encoder.encode(texts, batch_size=4)))
        result = mteb.evaluate(VectorTable.model(vectors), custom_task(spec), cache=None, show_progress_bar=False)
        theirs = result.task_results[0].get_score()
        assert scores[spec.name]["main_score"] == pytest.approx(theirs, abs=2e-6), spec.name
        assert scores[spec.name]["dataset_revision"] == custom_task(spec).metadata.revision
        if spec.type == "STS":
            rows = [json.loads(line) for line in open(spec.path)]
            cosines = [float(vectors[r["sentence1"]] @ vectors[r["sentence2"]]) for r in rows]
            assert scores["MySTS"]["main_score"] == pytest.approx(spearmanr(cosines, [r["score"] for r in rows])[0],
                                                                  abs=1e-6)
        if spec.type == "Retrieval":
            corpus = {r["_id"]: r for r in map(json.loads, open(spec.path / "corpus.jsonl"))}
            queries = {r["_id"]: r["text"] for r in map(json.loads, open(spec.path / "queries.jsonl"))}
            qrels = {}
            for line in list(open(spec.path / "qrels" / "test.tsv"))[1:]:
                q, d, s = line.split()
                qrels.setdefault(q, {})[d] = int(s)
            doc_text = {d: (f"{r['title']} {r['text']}" if r.get("title") else r["text"]) for d, r in corpus.items()}
            table = dict(zip(list(doc_text.values()) + list(queries.values()),
                             encoder.encode(list(doc_text.values()) + list(queries.values()), batch_size=4)))
            run_scores = {q: {d: float(table[queries[q]] @ table[t]) for d, t in doc_text.items()} for q in qrels}
            ndcg = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run_scores)
            assert scores["MyRetrieval"]["main_score"] == pytest.approx(
                np.mean([v["ndcg_cut_10"] for v in ndcg.values()]), abs=1e-5)

    categories = json.loads((tmp_path / "category_scores.json").read_text())
    assert set(categories["means"]) == {s["category"] for s in scores.values()}
    from analysis.collect import collect

    collected = collect(tmp_path).scores  # the analysis reads them like any task
    assert dict(zip(collected["task"], collected["category"])) == {n: s["category"] for n, s in scores.items()}
