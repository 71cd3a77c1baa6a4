from __future__ import annotations

from datasets import Dataset, DatasetDict
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata

from embedgrid.assets import package_file

GENSIM_PIP = "pip install --no-deps gensim==4.4.0"


class LeeDocumentSTS(AbsTaskSTS):
    """Lee, Pincombe & Welsh (2005): 50 news documents, every pair rated by humans; 1,225 scored pairs."""

    min_score = 0.0
    max_score = 1.0
    metadata = TaskMetadata(
        name="LeeDocumentSTS",
        description="Document-level similarity of 50 Australian news articles (1,225 pairs, mean human rating "
                    "0-1), Lee, Pincombe & Welsh 2005, as shipped in gensim's test data.",
        reference="https://www.researchgate.net/publication/228739475",
        dataset={"path": "gensim/test/test_data/lee.cor", "revision": "gensim-4.4.0"},
        type="STS",
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score="cosine_spearman",
        date=("2005-01-01", "2005-12-31"),
        domains=["News", "Written"],
        task_subtypes=[],
        license="lgpl",
        annotations_creators="human-annotated",
        dialect=[],
        sample_creation="found",
        bibtex_citation="@inproceedings{lee2005empirical, title={An empirical evaluation of models of text "
                        "document similarity}, author={Lee, Michael D and Pincombe, Brandon and Welsh, Matthew}, "
                        "booktitle={Proceedings of the Annual Meeting of the Cognitive Science Society}, year={2005}}",
    )

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        docs = package_file("gensim", "test/test_data/lee.cor", GENSIM_PIP).read_text(encoding="latin-1")
        docs = [d.strip() for d in docs.splitlines() if d.strip()]
        matrix = package_file("gensim", "test/test_data/similarities0-1.txt", GENSIM_PIP).read_text().split("\n")
        scores = [[float(x) for x in line.split()] for line in matrix if line.strip()]
        s1, s2, score = [], [], []
        for i in range(len(docs)):
            for j in range(i + 1, len(docs)):
                s1.append(docs[i])
                s2.append(docs[j])
                score.append(scores[i][j])
        self.dataset = DatasetDict({"test": Dataset.from_dict({"sentence1": s1, "sentence2": s2, "score": score})})
        self.data_loaded = True
