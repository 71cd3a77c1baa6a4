"""Tasks on held-out WordNet 3.0 synsets: the split embedgrid.data.wordnet never trains on.

Reverse dictionary: a gloss (query) should find its synonym set ("w1, w2, ...") among other synsets' sets; the
reranking variant ranks the synset against its hypernym siblings (hard negatives); the pair task asks whether a
gloss and a synonym set belong together (the negative is a sibling's set). Siblings are held-out synsets too.
"""
from __future__ import annotations

from functools import lru_cache

from datasets import Dataset, DatasetDict
from mteb.abstasks.pair_classification import AbsTaskPairClassification
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

from embedgrid.data.wordnet import Synset, load_synsets, siblings_index, split_ids, words_text
from embedgrid.evaluate.tasks.common import Subsampled, sample, task_metadata

LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
    "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object "
    "noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape "
    "noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication verb.competition "
    "verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession "
    "verb.social verb.stative verb.weather adj.ppl"
).split()  # WordNet's lexnames(5WN), numbered 0-44 as in the data files
WORDNET_BIBTEX = ("@book{fellbaum1998wordnet, title={WordNet: An Electronic Lexical Database}, "
                  "editor={Fellbaum, Christiane}, publisher={MIT Press}, year={1998}}")
# "-lemma": the held-out synsets of data/wordnet.py split_ids("lemma") (de-duplicated; disjoint in lemmas and
# glosses from training). Earlier results scored the plain synset-hash split, revision "wordnet-3.0".
WORDNET_DATASET = {"path": "debian/wordnet-base/heldout", "revision": "wordnet-3.0-lemma"}


def lexname(synset: Synset) -> str:
    return LEXNAMES[synset.lexname]


@lru_cache(maxsize=1)
def heldout_synsets() -> tuple[Synset, ...]:
    """Held-out synsets with a gloss, in id order: the lemma holdout of data/wordnet.py (de-duplicated)."""
    synsets = load_synsets()
    return tuple(synsets[i] for i in sorted(split_ids("lemma")["heldout"]))


@lru_cache(maxsize=1)
def heldout_siblings() -> dict[str, list[str]]:
    """Held-out synset id -> held-out synsets sharing a hypernym (sorted ids)."""
    children, members = siblings_index(load_synsets()), split_ids("lemma")["heldout"]
    out = {}
    for s in heldout_synsets():
        out[s.id] = sorted({c for p in s.hypernyms for c in children.get(p, []) if c != s.id and c in members})
    return out


def _meta(**fields):
    return task_metadata(reference="https://wordnet.princeton.edu/", dataset=WORDNET_DATASET,
                         date=("1990-01-01", "2006-12-31"), domains=["Encyclopaedic", "Written"],
                         license="not specified", annotations_creators="expert-annotated",
                         bibtex_citation=WORDNET_BIBTEX, **fields)


class WordNetReverseDictionaryRetrieval(Subsampled, AbsTaskRetrieval):
    in_domain = True
    default_samples = 2000
    metadata = _meta(
        name="WordNetReverseDictionaryRetrieval",
        description="Reverse dictionary on held-out WordNet 3.0 synsets with >= 2 lemmas: the gloss is the query, "
                    "the comma-joined synonym set the one relevant document; the corpus holds the sampled "
                    "synsets' sets (default 2,000 of the 10,554 such synsets).",
        type="Retrieval", main_score="ndcg_at_10",
    )

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        chosen = self.pick([s for s in heldout_synsets() if len(s.words) >= 2])
        self.dataset = {"default": {"test": RetrievalSplitData(
            queries=Dataset.from_dict({"id": [f"q{s.id}" for s in chosen], "text": [s.definition for s in chosen]}),
            corpus=Dataset.from_dict({"id": [s.id for s in chosen], "title": [""] * len(chosen),
                                      "text": [words_text(s) for s in chosen]}),
            relevant_docs={f"q{s.id}": {s.id: 1} for s in chosen},
            top_ranked=None,
        )}}
        self.data_loaded = True


class WordNetSiblingReranking(Subsampled, AbsTaskRetrieval):
    """Rank a gloss's own synonym set above those of up to 9 held-out hypernym siblings."""

    in_domain = True
    max_candidates = 10
    default_samples = 1000
    metadata = _meta(
        name="WordNetSiblingReranking",
        description="Held-out WordNet 3.0 glosses (synsets with >= 3 held-out hypernym siblings; default 1,000 of "
                    "7,613) "
                    "rerank their own synonym set against up to 9 siblings' sets (same hypernym, hard negatives).",
        type="Reranking", main_score="map_at_1000",
    )

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        synsets, siblings = load_synsets(), heldout_siblings()
        chosen = self.pick([s for s in heldout_synsets() if len(siblings[s.id]) >= 3])
        top_ranked, docs = {}, {}
        for s in chosen:
            negatives = sample(siblings[s.id], self.max_candidates - 1, seed=self.sample_seed)
            candidates = sorted([s.id, *negatives])
            top_ranked[f"q{s.id}"] = candidates
            docs.update({c: words_text(synsets[c]) for c in candidates})
        self.dataset = {"default": {"test": RetrievalSplitData(
            queries=Dataset.from_dict({"id": [f"q{s.id}" for s in chosen], "text": [s.definition for s in chosen]}),
            corpus=Dataset.from_dict({"id": list(docs), "title": [""] * len(docs), "text": list(docs.values())}),
            relevant_docs={f"q{s.id}": {s.id: 1} for s in chosen},
            top_ranked=top_ranked,
        )}}
        self.data_loaded = True


class WordNetGlossPairClassification(Subsampled, AbsTaskPairClassification):
    in_domain = True
    default_samples = 2000
    metadata = _meta(
        name="WordNetGlossPairClassification",
        description="Does a held-out WordNet 3.0 gloss define this synonym set? Each sampled synset (>= 1 held-out "
                    "hypernym sibling) gives one positive pair (gloss, own set) and one negative (gloss, a "
                    "sibling's set); max_samples counts pairs.",
        type="PairClassification", main_score="max_ap",
    )

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        synsets, siblings = load_synsets(), heldout_siblings()
        n = None if self.max_samples is None else self.max_samples // 2
        chosen = sample([s for s in heldout_synsets() if siblings[s.id]], n, self.sample_seed)
        s1, s2, labels = [], [], []
        for i, s in enumerate(chosen):
            negative = synsets[siblings[s.id][i % len(siblings[s.id])]]
            s1 += [s.definition, s.definition]
            s2 += [words_text(s), words_text(negative)]
            labels += [1, 0]
        self.dataset = DatasetDict({"test": Dataset.from_dict({"sentence1": s1, "sentence2": s2, "labels": labels})})
        self.data_loaded = True
