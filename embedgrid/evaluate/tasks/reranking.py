"""Reranking from graded human judgments that are not embedgrid's training objective (mteb reranking: a
retrieval task with ``top_ranked`` candidates per query).

FoodEval's graded search qrels (0-3) rerank each query's judged dishes mixed with as many unjudged ones (taken as
0, as FoodEval's own nDCG does); Lee's 50 news documents rerank the other 49 by their human similarity rating;
chatterbot opening utterances rerank their own replies among replies of the same topic.
"""
from __future__ import annotations

import random

from mteb.abstasks.retrieval import AbsTaskRetrieval

from embedgrid.evaluate.tasks import sources
from embedgrid.evaluate.tasks.common import Subsampled, data_file, task_metadata
from embedgrid.evaluate.tasks.foodeval import _meta as food_meta
from embedgrid.evaluate.tasks.retrieval import chatterbot_qa, retrieval_split


def _seed(*parts) -> int:
    import hashlib

    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


class _FoodEvalReranking(Subsampled, AbsTaskRetrieval):
    source: str
    min_unjudged = 10

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        data = sources.foodeval(self.source)
        doc_ids = {text: f"d{i}" for i, text in enumerate(data["corpus"])}
        queries = self.pick([q for q in data["queries"] if any(v > 0 for v in q["relevance"].values())])
        top_ranked, used = {}, set()
        for q in queries:
            judged = sorted(q["relevance"])
            pool = sorted(set(data["corpus"]) - set(judged))
            extra = random.Random(_seed(self.source, q["id"], self.sample_seed)).sample(
                pool, min(len(pool), max(self.min_unjudged, len(judged))))
            top_ranked[q["id"]] = sorted(doc_ids[d] for d in judged + extra)
            used.update(judged + extra)
        self.dataset = retrieval_split(
            {q["id"]: q["query"] for q in queries}, {doc_ids[d]: d for d in sorted(used)},
            {q["id"]: {doc_ids[d]: int(r) for d, r in q["relevance"].items()} for q in queries}, top_ranked)
        self.data_loaded = True


def _food(name: str, source: str, description: str) -> type:
    return type(name, (_FoodEvalReranking,), {
        "source": source, "__doc__": description,
        "metadata": food_meta(source, name=name, description=description, type="Reranking", main_score="ndcg_at_10"),
    })


FoodSearchReranking = _food(
    "FoodSearchReranking", "food_search",
    "FoodEval food_search reranked: each of 178 dish queries orders its graded (0-3) judged dishes mixed with as "
    "many unjudged ones (at least 10).")
FoodConceptSearchReranking = _food(
    "FoodConceptSearchReranking", "concept_search",
    "FoodEval concept_search reranked: 44 conceptual queries order their graded judged dishes among unjudged ones.")
FoodDietSearchReranking = _food(
    "FoodDietSearchReranking", "diet_search",
    "FoodEval diet_search reranked: 35 dietary queries order their graded judged dishes among unjudged ones.")
FoodNoisySearchReranking = _food(
    "FoodNoisySearchReranking", "noisy_search",
    "FoodEval noisy_search reranked: 46 misspelt queries order their graded judged dishes among unjudged ones.")


class LeeDocumentReranking(Subsampled, AbsTaskRetrieval):
    """Each Lee document reranks the other 49; relevance is the mean human rating in quarters (0-4)."""

    metadata = task_metadata(
        name="LeeDocumentReranking",
        description="Lee, Pincombe & Welsh 2005 (gensim test data): each of 50 news documents (query) reranks "
                    "the other 49 by graded relevance round(4 x mean human similarity 0-1). The same documents and "
                    "ratings as LeeDocumentSTS, scored as a ranking per document.",
        reference="https://www.researchgate.net/publication/228739475",
        dataset={"path": "gensim/test/test_data/lee.cor", "revision": "gensim-4.4.0-rerank"},
        type="Reranking", main_score="ndcg_at_10", date=("2005-01-01", "2005-12-31"), domains=["News", "Written"],
        license="lgpl", annotations_creators="human-annotated",
    )

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        docs = [d.strip() for d in data_file("gensim", "test/test_data/lee.cor").read_text(encoding="latin-1")
                .splitlines() if d.strip()]
        rows = data_file("gensim", "test/test_data/similarities0-1.txt").read_text().splitlines()
        scores = [[float(x) for x in line.split()] for line in rows if line.strip()]
        chosen = self.pick(range(len(docs)))
        qrels = {f"q{i}": {f"d{j}": round(4 * scores[i][j]) for j in range(len(docs)) if j != i} for i in chosen}
        self.dataset = retrieval_split(
            {f"q{i}": docs[i] for i in chosen}, {f"d{j}": docs[j] for j in range(len(docs))},
            {q: {d: r for d, r in rel.items() if r > 0} for q, rel in qrels.items()},
            {f"q{i}": [f"d{j}" for j in range(len(docs)) if j != i] for i in chosen})
        self.data_loaded = True


class ChatterbotAnswerReranking(Subsampled, AbsTaskRetrieval):
    max_candidates = 10
    metadata = task_metadata(
        name="ChatterbotAnswerReranking",
        description="chatterbot-corpus 1.3.3 English: an opening utterance reranks its own replies against "
                    "replies to other utterances of the same topic file (up to 10 candidates).",
        reference="https://github.com/gunthercox/chatterbot-corpus",
        dataset={"path": "chatterbot_corpus/data/english", "revision": "chatterbot-corpus-1.3.3-rerank"},
        type="Reranking", main_score="map_at_1000", date=("2016-01-01", "2026-03-24"), domains=["Spoken", "Written"],
        license="bsd-3-clause", annotations_creators="human-annotated",
    )

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        queries, corpus, qrels, topic = chatterbot_qa()
        by_topic: dict[str, set[str]] = {}
        for q, docs in qrels.items():
            by_topic.setdefault(topic[q], set()).update(docs)
        eligible = [q for q in sorted(queries)
                    if len(qrels[q]) < self.max_candidates and len(by_topic[topic[q]] - set(qrels[q])) >= 3]
        chosen = self.pick(eligible)
        top_ranked = {}
        for q in chosen:
            others = sorted(by_topic[topic[q]] - set(qrels[q]))
            rng = random.Random(_seed("chatterbot", q, self.sample_seed))
            top_ranked[q] = sorted(set(qrels[q]) | set(rng.sample(others, min(len(others),
                                                                             self.max_candidates - len(qrels[q])))))
        used = sorted({d for c in top_ranked.values() for d in c})
        self.dataset = retrieval_split({q: queries[q] for q in chosen}, {d: corpus[d] for d in used},
                                       {q: qrels[q] for q in chosen}, top_ranked)
        self.data_loaded = True


RERANKING = [FoodSearchReranking, FoodConceptSearchReranking, FoodDietSearchReranking, FoodNoisySearchReranking,
             LeeDocumentReranking, ChatterbotAnswerReranking]
