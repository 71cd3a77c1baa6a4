"""FoodEval (PyPI ``foodeval`` 0.1.1, CC-BY-NC-4.0, evaluation only): food-domain search with graded (0-3)
judgments and menu-item matching pairs. Texts are very short (dish names, menu lines)."""
from __future__ import annotations

from datasets import Dataset, DatasetDict
from mteb.abstasks.pair_classification import AbsTaskPairClassification
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

from embedgrid.evaluate.tasks import sources
from embedgrid.evaluate.tasks.common import Subsampled, task_metadata


def _meta(source: str, **fields):
    return task_metadata(reference="https://pypi.org/project/foodeval/",
                         dataset={"path": f"foodeval/data/{source}.json", "revision": "foodeval-0.1.1"},
                         date=("2024-01-01", "2025-12-31"), domains=["Web", "Written"], license="cc-by-nc-4.0",
                         annotations_creators="expert-annotated", **fields)


class _FoodEvalRetrieval(Subsampled, AbsTaskRetrieval):
    """Queries (capped by ``max_samples``) against the task's whole corpus; qrels are FoodEval's graded labels."""

    source: str

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        data = sources.foodeval(self.source)
        doc_ids = {text: f"d{i}" for i, text in enumerate(data["corpus"])}
        queries = self.pick([q for q in data["queries"] if any(v > 0 for v in q["relevance"].values())])
        self.dataset = {"default": {"test": RetrievalSplitData(
            queries=Dataset.from_dict({"id": [q["id"] for q in queries], "text": [q["query"] for q in queries]}),
            corpus=Dataset.from_dict({"id": list(doc_ids.values()), "title": [""] * len(doc_ids),
                                      "text": list(doc_ids)}),
            relevant_docs={q["id"]: {doc_ids[d]: int(r) for d, r in q["relevance"].items()} for q in queries},
            top_ranked=None,
        )}}
        self.data_loaded = True


def _retrieval(name: str, source: str, description: str) -> type:
    return type(name, (_FoodEvalRetrieval,), {
        "source": source, "__doc__": description,
        "metadata": _meta(source, name=name, description=description, type="Retrieval", main_score="ndcg_at_10"),
    })


class _FoodEvalPairs(Subsampled, AbsTaskPairClassification):
    source: str

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        pairs = self.pick(sources.foodeval(self.source)["pairs"])
        self.dataset = DatasetDict({"test": Dataset.from_dict({
            "sentence1": [p["text_a"] for p in pairs], "sentence2": [p["text_b"] for p in pairs],
            "labels": [int(p["label"]) for p in pairs]})})
        self.data_loaded = True


def _pairs(name: str, source: str, description: str) -> type:
    return type(name, (_FoodEvalPairs,), {
        "source": source, "__doc__": description,
        "metadata": _meta(source, name=name, description=description, type="PairClassification",
                          main_score="max_ap"),
    })


FoodSearchRetrieval = _retrieval(
    "FoodSearchRetrieval", "food_search",
    "FoodEval food_search: 178 dish queries against 974 dish names, graded relevance 0-3.")
FoodConceptSearchRetrieval = _retrieval(
    "FoodConceptSearchRetrieval", "concept_search",
    "FoodEval concept_search: 44 conceptual queries ('something spicy') against 301 dishes, graded 0-3.")
FoodDietSearchRetrieval = _retrieval(
    "FoodDietSearchRetrieval", "diet_search",
    "FoodEval diet_search: 35 dietary/allergen queries against 245 dishes, graded 0-3.")
FoodNoisySearchRetrieval = _retrieval(
    "FoodNoisySearchRetrieval", "noisy_search",
    "FoodEval noisy_search: 46 misspelt/abbreviated queries against 304 dishes, graded 0-3.")

FoodIndianMatchPairClassification = _pairs(
    "FoodIndianMatchPairClassification", "indian_match",
    "FoodEval indian_match: 498 Indian menu item pairs, same dish or not.")
FoodGlobalMatchPairClassification = _pairs(
    "FoodGlobalMatchPairClassification", "global_match",
    "FoodEval global_match: 318 global-cuisine menu item pairs, same dish or not.")
FoodBakeryMatchPairClassification = _pairs(
    "FoodBakeryMatchPairClassification", "bakery_match",
    "FoodEval bakery_match: 336 bakery item pairs, same item or not.")
FoodBeverageMatchPairClassification = _pairs(
    "FoodBeverageMatchPairClassification", "beverage_match",
    "FoodEval beverage_match: 295 beverage pairs, same drink or not.")
FoodNoisyMenuMatchPairClassification = _pairs(
    "FoodNoisyMenuMatchPairClassification", "noisy_menu_match",
    "FoodEval noisy_menu_match: 323 noisy menu-line pairs, same item or not.")

RETRIEVAL = [FoodSearchRetrieval, FoodConceptSearchRetrieval, FoodDietSearchRetrieval, FoodNoisySearchRetrieval]
PAIRS = [FoodIndianMatchPairClassification, FoodGlobalMatchPairClassification, FoodBakeryMatchPairClassification,
         FoodBeverageMatchPairClassification, FoodNoisyMenuMatchPairClassification]

FoodPortionSizePairClassification = _pairs(
    "FoodPortionSizePairClassification", "portion_size",
    "FoodEval portion_size: 228 pairs of menu items; the same dish in another size counts as a match.")
PAIRS.append(FoodPortionSizePairClassification)
