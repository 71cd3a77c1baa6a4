"""mteb's own benchmarks as evaluation suites (``eval=benchmark eval.benchmark=NAME``, ``eval=mteb_eng_v2``).

A benchmark's tasks are mteb's task objects as the benchmark defines them (with its language subsets: STS17 in
``MTEB(eng, v2)`` is its ``en-en`` pair only, not the whole crosslingual task), and their data is loaded by mteb.

Instructions follow the paper's convention (e5-mistral's instruction per task, on retrieval and reranking
queries and on every text of symmetric tasks, ``instruction_scope: query``): each task's instruction is the one
mteb's task metadata carries (mteb took them from e5-mistral; for a task with separate prompts, the query's),
else that of the task it was adapted from (``FEVERHardNegatives`` <- ``FEVER``), else the e5-mistral instruction
of its task type (``TYPE_INSTRUCTIONS``). An instruction the user gives in ``eval.instructions`` wins.
"""
from __future__ import annotations

import functools
import os

from embedgrid.errors import ConfigError

# e5-mistral's generic instructions per mteb task type (the STS and Summarization ones are the paper's own).
TYPE_INSTRUCTIONS = {
    "STS": "Retrieve semantically similar text.",
    "Summarization": "Given a news summary, retrieve other semantically similar summaries",
    "Retrieval": "Given a query, retrieve relevant documents that answer the query",
    "Reranking": "Given a query, retrieve relevant documents that answer the query",
    "InstructionRetrieval": "Given a query, retrieve relevant documents that answer the query",
    "InstructionReranking": "Given a query, retrieve relevant documents that answer the query",
    "Clustering": "Identify the topic or theme of the given texts",
    "Classification": "Classify the given text",
    "MultilabelClassification": "Classify the given text",
    "PairClassification": "Retrieve texts that are semantically similar to the given text",
    "BitextMining": "Retrieve parallel sentences.",
}


@functools.lru_cache(maxsize=8)
def load_benchmark(name: str):
    """mteb's benchmark object (cached: the plan composes every cell's config); a ConfigError names the valid ones."""
    import mteb

    try:
        benchmark = mteb.get_benchmark(name)
    except KeyError:
        known = ", ".join(repr(b.name) for b in mteb.get_benchmarks())
        raise ConfigError(f"eval.benchmark={name!r} is not a benchmark mteb knows; valid: {known}") from None
    not_text = sorted({t.metadata.name for t in benchmark.tasks if set(t.metadata.modalities) - {"text"}})
    if not_text:
        raise ConfigError(f"eval.benchmark={name!r} has tasks that are not text-only ({', '.join(not_text[:5])}"
                          f"{' ...' if len(not_text) > 5 else ''}); embedgrid evaluates text encoders: choose a "
                          "text benchmark such as 'MTEB(eng, v2)'")
    return benchmark


def benchmark_tasks(name: str) -> dict:
    """``{task name: mteb task object}`` of the benchmark, in its order."""
    return {task.metadata.name: task for task in load_benchmark(name).tasks}


def task_instruction(metadata) -> str:
    """The task's instruction by the paper's convention (module docstring)."""
    prompt = _prompt_text(metadata.prompt)
    for parent in metadata.adapted_from or ():
        if prompt:
            break
        prompt = _prompt_text(_metadata_of(parent).prompt) if _metadata_of(parent) is not None else None
    return prompt or TYPE_INSTRUCTIONS.get(metadata.type, TYPE_INSTRUCTIONS["STS"])


def benchmark_instructions(name: str) -> dict[str, str]:
    return {task_name: task_instruction(task.metadata) for task_name, task in benchmark_tasks(name).items()}


def _prompt_text(prompt) -> str | None:
    if isinstance(prompt, dict):
        return prompt.get("query") or None
    return prompt or None


@functools.lru_cache(maxsize=256)
def _metadata_of(task_name: str):
    import mteb

    try:
        return mteb.get_task(task_name).metadata
    except (KeyError, ValueError):
        return None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or \
        os.environ.get("HF_DATASETS_OFFLINE", "0").lower() in ("1", "true", "yes")


def dataset_cached(task) -> bool:
    """Whether the task's hub dataset (at the revision mteb pins) is in the local Hugging Face cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    dataset = task.metadata.dataset
    try:
        snapshot_download(dataset["path"], repo_type="dataset", revision=dataset.get("revision"),
                          local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        return False
    return True


def missing_datasets(tasks) -> list[str]:
    """``task: dataset@revision`` of every hub task whose data is not in the local cache."""
    missing = []
    for task in tasks:
        dataset = task.metadata.dataset or {}
        if dataset.get("path") and not getattr(task, "data_loaded", False) and not dataset_cached(task):
            missing.append(f"{task.metadata.name}: {dataset['path']}@{str(dataset.get('revision'))[:12]}")
    return missing


def missing_data_message(missing: list[str]) -> str:
    names = [m.split(":")[0] for m in missing]
    shown = "\n  ".join(missing[:50]) + ("\n  ..." if len(missing) > 50 else "")
    return (f"{len(missing)} evaluation task(s) need Hugging Face datasets that are not in the local cache, and the "
            f"hub is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE):\n  {shown}\n"
            "Fix: on a machine with network access and the same HF_HOME, run once\n"
            f"  python -c \"import mteb; [t.load_data() for t in mteb.get_tasks(tasks={names!r})]\"\n"
            "(or launch the cell online), or choose an offline suite (eval=offline).")

