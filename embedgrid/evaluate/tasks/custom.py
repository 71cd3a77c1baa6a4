"""Evaluation tasks from your own files (``eval.custom``), built at run time as mteb tasks of mteb's own classes.

``eval.custom`` maps a task name to ``{type, path}`` (plus optional ``main_score``, ``in_domain``, and for STS
``min_score``/``max_score``). The file layouts per type (docs/custom-evaluation.md):

  Retrieval            a BEIR directory: corpus.jsonl {_id, text[, title]}, queries.jsonl {_id, text},
                       qrels/test.tsv (query-id, corpus-id, score; a header line is allowed)
  Reranking            jsonl {query, positive: [text, ...], negative: [text, ...]}
  STS                  jsonl {sentence1, sentence2, score}
  PairClassification   jsonl {sentence1, sentence2, label: 0|1}
  Classification       a directory: train.jsonl and test.jsonl {text, label}
  Clustering           jsonl {text, label}

Every row is checked; a bad one is reported as ``file:line``. The dataset revision is the sha256 of the files (and
of the task's type and options), so a result cached for other file contents is never reused.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from datasets import Dataset, DatasetDict
from mteb.abstasks.classification import AbsTaskClassification
from mteb.abstasks.clustering import AbsTaskClustering
from mteb.abstasks.pair_classification import AbsTaskPairClassification
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.sts import AbsTaskSTS

from embedgrid.errors import ConfigError
from embedgrid.evaluate.tasks.common import task_metadata
from embedgrid.evaluate.tasks.retrieval import retrieval_split

MAIN_SCORES = {"Retrieval": "ndcg_at_10", "Reranking": "map_at_1000", "STS": "cosine_spearman",
               "PairClassification": "max_ap", "Classification": "accuracy", "Clustering": "v_measure"}
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")  # a task name becomes mteb's result file name
SPEC_KEYS = ("type", "path", "main_score", "in_domain", "min_score", "max_score", "description")
IN_DOMAIN = (True, False, "auto")


@dataclass(frozen=True)
class CustomSpec:
    name: str
    type: str
    path: Path
    main_score: str
    in_domain: bool | str = "auto"  # auto: in-domain when its texts overlap the cell's training texts
    min_score: float | None = None
    max_score: float | None = None
    description: str | None = None

    @property
    def files(self) -> list[Path]:
        if self.type == "Retrieval":
            return [self.path / "corpus.jsonl", self.path / "queries.jsonl", self.path / "qrels" / "test.tsv"]
        if self.type == "Classification":
            return [self.path / "train.jsonl", self.path / "test.jsonl"]
        return [self.path]


def custom_specs(custom: dict | None) -> list[CustomSpec]:
    """``eval.custom`` as specs, every key and value checked (ConfigError naming ``eval.custom.<name>.<key>``)."""
    specs = []
    for name, node in (custom or {}).items():
        key = f"eval.custom.{name}"
        if not NAME.match(str(name)):
            raise ConfigError(f"{key}: a task name is letters, digits, '_' and '-', starting with a letter (it "
                              "becomes a file name); rename it")
        if not isinstance(node, dict):
            raise ConfigError(f"{key}={node!r}: give {{type: <{'|'.join(MAIN_SCORES)}>, path: <file or directory>}}")
        stray = sorted(set(node) - set(SPEC_KEYS))
        if stray:
            raise ConfigError(f"{key} has unknown keys {stray}; valid: {', '.join(SPEC_KEYS)}")
        kind = node.get("type")
        if kind not in MAIN_SCORES:
            raise ConfigError(f"{key}.type={kind!r}; valid: {', '.join(MAIN_SCORES)}")
        if not node.get("path"):
            what = "directory" if kind in ("Retrieval", "Classification") else "jsonl file"
            raise ConfigError(f"{key}.path is not set; name the task's {what}")
        in_domain = node.get("in_domain", "auto")
        if in_domain not in IN_DOMAIN:
            raise ConfigError(f"{key}.in_domain={in_domain!r}; valid: true, false, auto")
        spec = CustomSpec(name=str(name), type=kind, path=Path(os.path.expanduser(str(node["path"]))),
                          main_score=node.get("main_score") or MAIN_SCORES[kind], in_domain=in_domain,
                          min_score=node.get("min_score"), max_score=node.get("max_score"),
                          description=node.get("description"))
        for file in spec.files:
            if not file.is_file():
                needs = ", ".join(str(f.relative_to(spec.path)) if f != spec.path else "a jsonl file"
                                  for f in spec.files)
                raise ConfigError(f"{key}.path={str(spec.path)!r}: {file} is missing or not a file; a {kind} task "
                                  f"needs {needs}")
        specs.append(spec)
    return specs


# ---- reading and checking rows --------------------------------------------------------------------------------
def _jsonl(path: Path, fields: dict[str, tuple[type, ...]], optional: dict[str, tuple[type, ...]] | None = None):
    """Rows of a jsonl file with the required ``fields`` of the given types; blank lines are skipped."""
    optional = optional or {}
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ConfigError(f"{where}: not valid JSON ({error.msg}); one JSON object per line") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{where}: a {type(row).__name__}, not a JSON object")
            for field, types in {**fields, **optional}.items():
                if field not in row:
                    if field in fields:
                        raise ConfigError(f"{where}: no '{field}' (needs {', '.join(fields)})")
                    continue
                value = row[field]
                if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
                    raise ConfigError(f"{where}: '{field}' is {type(value).__name__} {value!r}, not "
                                      f"{' or '.join(t.__name__ for t in types)}")
                if isinstance(value, str) and not value.strip():
                    raise ConfigError(f"{where}: '{field}' is empty")
                if isinstance(value, float) and value != value:
                    raise ConfigError(f"{where}: '{field}' is NaN")
            rows.append((where, row))
    if not rows:
        raise ConfigError(f"{path}: no rows")
    return rows


def _texts(rows, where: str, field: str) -> list[str]:
    for at, row in rows:
        if not all(isinstance(t, str) and t.strip() for t in row[field]):
            raise ConfigError(f"{at}: every entry of '{field}' must be a non-empty string")
    return [t for _, row in rows for t in row[field]]


def _labels(rows) -> list[str]:
    """Labels as strings (1 and "1" are one class); mteb gets them numbered by sorted name."""
    return [str(row["label"]) for _, row in rows]


def _retrieval(spec: CustomSpec) -> dict:
    corpus_file, queries_file, qrels_file = spec.files
    corpus, queries = {}, {}
    for target, file in ((corpus, corpus_file), (queries, queries_file)):
        for where, row in _jsonl(file, {"_id": (str, int), "text": (str,)}, {"title": (str,)}):
            key = str(row["_id"])
            if key in target:
                raise ConfigError(f"{where}: _id {key!r} occurs twice")
            target[key] = (row.get("title", ""), row["text"]) if target is corpus else row["text"]
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where, parts = f"{qrels_file}:{number}", line.rstrip("\n").split("\t")
            if len(parts) != 3:
                raise ConfigError(f"{where}: {len(parts)} tab-separated fields; need query-id, corpus-id, score")
            query, doc, score = parts
            if number == 1 and not score.strip().lstrip("-").isdigit():
                continue  # BEIR's header line
            if not score.strip().lstrip("-").isdigit():
                raise ConfigError(f"{where}: score {score!r} is not an integer")
            if query not in queries:
                raise ConfigError(f"{where}: query-id {query!r} is not in {queries_file.name}")
            if doc not in corpus:
                raise ConfigError(f"{where}: corpus-id {doc!r} is not in {corpus_file.name}")
            qrels.setdefault(query, {})[doc] = int(score)
    judged = [q for q, docs in qrels.items() if any(s > 0 for s in docs.values())]
    if not judged:
        raise ConfigError(f"{qrels_file}: no query has a relevant (score > 0) document")
    split = retrieval_split({q: queries[q] for q in judged}, {}, {q: qrels[q] for q in judged})
    split["default"]["test"]["corpus"] = Dataset.from_dict({  # with titles: mteb joins a title to its text
        "id": list(corpus), "title": [t for t, _ in corpus.values()], "text": [x for _, x in corpus.values()]})
    return split


def _reranking(spec: CustomSpec) -> dict:
    rows = _jsonl(spec.path, {"query": (str,), "positive": (list,), "negative": (list,)})
    docs: dict[str, str] = {}
    queries, qrels, top_ranked = {}, {}, {}
    for i, (where, row) in enumerate(rows):
        positives, negatives = _texts([(where, row)], where, "positive"), _texts([(where, row)], where, "negative")
        if not positives or not negatives:
            raise ConfigError(f"{where}: needs at least one positive and one negative")
        ids = {text: docs.setdefault(text, f"d{len(docs)}") for text in positives + negatives}
        queries[f"q{i}"] = row["query"]
        qrels[f"q{i}"] = {ids[t]: 1 for t in positives}
        top_ranked[f"q{i}"] = sorted(set(ids.values()))
    return retrieval_split(queries, {d: t for t, d in docs.items()}, qrels, top_ranked)


def _sts(spec: CustomSpec) -> DatasetDict:
    rows = _jsonl(spec.path, {"sentence1": (str,), "sentence2": (str,), "score": (int, float)})
    scores = [float(row["score"]) for _, row in rows]
    low = spec.min_score if spec.min_score is not None else min(scores)
    high = spec.max_score if spec.max_score is not None else max(scores)
    outside = next((where for where, row in rows if not low <= row["score"] <= high), None)
    if outside or high <= low:
        raise ConfigError(f"{outside or spec.path}: scores must lie in [min_score, max_score] = [{low}, {high}] "
                          f"with min_score < max_score (eval.custom.{spec.name})")
    return DatasetDict({"test": Dataset.from_dict({"sentence1": [r["sentence1"] for _, r in rows],
                                                   "sentence2": [r["sentence2"] for _, r in rows],
                                                   "score": scores})})


def _pairs(spec: CustomSpec) -> DatasetDict:
    rows = _jsonl(spec.path, {"sentence1": (str,), "sentence2": (str,), "label": (int,)})
    bad = next((where for where, row in rows if row["label"] not in (0, 1)), None)
    if bad:
        raise ConfigError(f"{bad}: 'label' must be 0 or 1")
    if len({row["label"] for _, row in rows}) < 2:
        raise ConfigError(f"{spec.path}: every pair has the same label; average precision needs both 0 and 1")
    return DatasetDict({"test": Dataset.from_dict({"sentence1": [r["sentence1"] for _, r in rows],
                                                   "sentence2": [r["sentence2"] for _, r in rows],
                                                   "labels": [r["label"] for _, r in rows]})})


def _classification(spec: CustomSpec) -> DatasetDict:
    train_file, test_file = spec.files
    fields = {"text": (str,), "label": (str, int)}
    train, test = _jsonl(train_file, fields), _jsonl(test_file, fields)
    names = sorted(set(_labels(train)) | set(_labels(test)))
    unseen = next((where for where, row in test if str(row["label"]) not in set(_labels(train))), None)
    if unseen:
        raise ConfigError(f"{unseen}: label never occurs in {train_file.name}; the classifier cannot learn it")
    if len(names) < 2:
        raise ConfigError(f"{train_file}: one label only; classification needs at least two")
    split = lambda rows: Dataset.from_dict({"text": [r["text"] for _, r in rows],  # noqa: E731
                                            "label": [names.index(x) for x in _labels(rows)]})
    return DatasetDict({"train": split(train), "test": split(test)})


def _clustering(spec: CustomSpec) -> DatasetDict:
    rows = _jsonl(spec.path, {"text": (str,), "label": (str, int)})
    names = sorted(set(_labels(rows)))
    if len(names) < 2:
        raise ConfigError(f"{spec.path}: one label only; clustering needs at least two")
    return DatasetDict({"test": Dataset.from_dict({"sentences": [r["text"] for _, r in rows],
                                                   "labels": [names.index(x) for x in _labels(rows)]})})


READERS = {"Retrieval": _retrieval, "Reranking": _reranking, "STS": _sts, "PairClassification": _pairs,
           "Classification": _classification, "Clustering": _clustering}
BASES = {"Retrieval": AbsTaskRetrieval, "Reranking": AbsTaskRetrieval, "STS": AbsTaskSTS,
         "PairClassification": AbsTaskPairClassification, "Classification": AbsTaskClassification,
         "Clustering": AbsTaskClustering}


def read_dataset(spec: CustomSpec):
    """The task's data in mteb's layout; every row checked (ConfigError with ``file:line``)."""
    return READERS[spec.type](spec)


def _stamps(spec: CustomSpec) -> tuple:
    """(size, mtime) of every file: a sweep's plan checks and hashes each task once, not once per cell."""
    return tuple((os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in spec.files)


def fingerprint(spec: CustomSpec) -> str:
    """sha256 of the task's files (name and bytes) and of what else changes its scores (type, score range)."""
    return _fingerprint(spec, _stamps(spec))


@lru_cache(maxsize=64)
def _fingerprint(spec: CustomSpec, stamps: tuple) -> str:
    digest = hashlib.sha256(json.dumps([spec.type, spec.min_score, spec.max_score]).encode())
    for file in spec.files:
        digest.update(f"\0{file.name}\0".encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return f"sha256-{digest.hexdigest()[:16]}"


def texts_of(dataset) -> list[str]:
    """Every text of a task's data (queries, documents, sentences), for the training-overlap check."""
    if "default" in dataset:
        split = dataset["default"]["test"]
        return list(split["queries"]["text"]) + list(split["corpus"]["text"])
    found = []
    for part in dataset.values():
        for column in ("text", "sentences", "sentence1", "sentence2"):
            if column in part.column_names:
                found += list(part[column])
    return found


def check_custom(custom: dict | None, taken: set[str] = frozenset()) -> list[CustomSpec]:
    """Every custom task's spec and rows, before any job starts; ``taken``: task names already in the suite."""
    specs = custom_specs(custom)
    for spec in specs:
        if spec.name in taken:
            raise ConfigError(f"eval.custom.{spec.name}: the suite already has a task of this name (eval.tasks or "
                              "an offline task); rename the custom task")
        _validate(spec, _stamps(spec))
    return specs


@lru_cache(maxsize=64)
def _validate(spec: CustomSpec, stamps: tuple) -> None:
    read_dataset(spec)


def custom_revisions(custom: dict | None) -> dict[str, str]:
    """Task name -> the fingerprint its files have now (what a cached score must have been computed on)."""
    return {spec.name: fingerprint(spec) for spec in custom_specs(custom)}


def custom_task(spec: CustomSpec):
    """An instance of an mteb task class for ``spec``, its revision the files' fingerprint."""
    base = BASES[spec.type]
    attributes = {
        "__doc__": f"eval.custom task {spec.name} ({spec.type}) from {spec.path}",
        "in_domain": spec.in_domain is True,
        "metadata": task_metadata(
            name=spec.name, type=spec.type, main_score=spec.main_score,
            description=spec.description or f"Custom {spec.type} task from {spec.path.name}",
            dataset={"path": str(spec.path), "revision": fingerprint(spec)}, annotations_creators="derived"),
        "load_data": _load_data(spec),
    }
    if spec.type == "Clustering":  # every document, not mteb's default 4 % of a small set
        attributes.update(max_fraction_of_documents_to_embed=None, max_document_to_embed=None)
    if spec.type == "STS":
        attributes.update(min_score=spec.min_score, max_score=spec.max_score)
    task = type(spec.name, (base,), attributes)()
    if spec.type == "STS" and (spec.min_score is None or spec.max_score is None):
        task.load_data()
        scores = task.dataset["test"]["score"]
        task.min_score = spec.min_score if spec.min_score is not None else min(scores)
        task.max_score = spec.max_score if spec.max_score is not None else max(scores)
    return task


def _load_data(spec: CustomSpec):
    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        self.dataset = read_dataset(spec)
        self.data_loaded = True

    return load_data
