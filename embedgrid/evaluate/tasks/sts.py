"""STS: human similarity ratings shipped in gensim's test data (document level and word level)."""
from __future__ import annotations

from datasets import Dataset, DatasetDict
from mteb.abstasks.sts import AbsTaskSTS

from embedgrid.evaluate.tasks.common import Subsampled, data_file, task_metadata


def _sts_split(pairs: list[tuple[str, str, float]]) -> DatasetDict:
    s1, s2, score = zip(*pairs)
    return DatasetDict({"test": Dataset.from_dict({"sentence1": list(s1), "sentence2": list(s2),
                                                   "score": list(score)})})


class LeeDocumentSTS(Subsampled, AbsTaskSTS):
    """Lee, Pincombe & Welsh (2005): 50 news documents, every pair rated by humans; 1,225 scored pairs."""

    min_score = 0.0
    max_score = 1.0
    metadata = task_metadata(
        name="LeeDocumentSTS",
        description="Document-level similarity of 50 Australian news articles (1,225 pairs, mean human rating "
                    "0-1), Lee, Pincombe & Welsh 2005, as shipped in gensim's test data.",
        reference="https://www.researchgate.net/publication/228739475",
        dataset={"path": "gensim/test/test_data/lee.cor", "revision": "gensim-4.4.0"},
        type="STS", main_score="cosine_spearman", date=("2005-01-01", "2005-12-31"), domains=["News", "Written"],
        license="lgpl", annotations_creators="human-annotated",
        bibtex_citation="@inproceedings{lee2005empirical, title={An empirical evaluation of models of text "
                        "document similarity}, author={Lee, Michael D and Pincombe, Brandon and Welsh, Matthew}, "
                        "booktitle={Proceedings of the Annual Meeting of the Cognitive Science Society}, year={2005}}",
    )

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        docs = data_file("gensim", "test/test_data/lee.cor").read_text(encoding="latin-1")
        docs = [d.strip() for d in docs.splitlines() if d.strip()]
        rows = data_file("gensim", "test/test_data/similarities0-1.txt").read_text().splitlines()
        scores = [[float(x) for x in line.split()] for line in rows if line.strip()]
        pairs = [(docs[i], docs[j], scores[i][j]) for i in range(len(docs)) for j in range(i + 1, len(docs))]
        self.dataset = _sts_split(self.pick(pairs))
        self.data_loaded = True


class _WordPairSTS(Subsampled, AbsTaskSTS):
    """Word pairs with mean human ratings 0-10 (tab-separated, '#' comment lines)."""

    min_score = 0.0
    max_score = 10.0
    relative_path: str

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        pairs = []
        for line in data_file("gensim", self.relative_path).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                first, second, score = line.split("\t")[:3]
                pairs.append((first.strip(), second.strip(), float(score)))
        self.dataset = _sts_split(self.pick(pairs))
        self.data_loaded = True


class WordSim353STS(_WordPairSTS):
    """WordSimilarity-353 (Finkelstein et al. 2002): 353 word pairs, relatedness rated 0-10 by 13-16 people."""

    relative_path = "test/test_data/wordsim353.tsv"
    metadata = task_metadata(
        name="WordSim353STS",
        description="WordSimilarity-353: 353 English word pairs with mean human relatedness ratings (0-10), as "
                    "shipped in gensim's test data. Each 'sentence' is one word.",
        reference="http://www.cs.technion.ac.il/~gabr/resources/data/wordsim353/",
        dataset={"path": "gensim/test/test_data/wordsim353.tsv", "revision": "gensim-4.4.0"},
        type="STS", main_score="cosine_spearman", date=("2001-01-01", "2002-12-31"), domains=["Written"],
        license="lgpl", annotations_creators="human-annotated",
        bibtex_citation="@article{finkelstein2002placing, title={Placing search in context: the concept "
                        "revisited}, author={Finkelstein, Lev and others}, journal={ACM TOIS}, year={2002}}",
    )


class SimLex999STS(_WordPairSTS):
    """SimLex-999 (Hill, Reichart & Korhonen 2015): 999 pairs rated for similarity (not relatedness), 0-10."""

    relative_path = "test/test_data/simlex999.txt"
    metadata = task_metadata(
        name="SimLex999STS",
        description="SimLex-999: 999 English word pairs (nouns, verbs, adjectives) rated for genuine similarity "
                    "(0-10) by crowd workers, as shipped in gensim's test data. Each 'sentence' is one word.",
        reference="https://fh295.github.io/simlex.html",
        dataset={"path": "gensim/test/test_data/simlex999.txt", "revision": "gensim-4.4.0"},
        type="STS", main_score="cosine_spearman", date=("2014-01-01", "2015-12-31"), domains=["Written"],
        license="lgpl", annotations_creators="human-annotated",
        bibtex_citation="@article{hill2015simlex, title={SimLex-999: Evaluating semantic models with (genuine) "
                        "similarity estimation}, author={Hill, Felix and Reichart, Roi and Korhonen, Anna}, "
                        "journal={Computational Linguistics}, year={2015}}",
    )
