"""Run a suite of MTEB tasks on one cell's encoder, task by task, through mteb's own evaluator and cache.

mteb's ``ResultCache`` in ``<cell>/mteb`` with ``overwrite_strategy="only-missing"`` makes re-evaluation skip
finished tasks; evaluating one task per call means an interrupted suite resumes at the next unfinished task.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def resolve_tasks(names: list[str]):
    """Offline tasks by name first (embedgrid.evaluate.tasks), then mteb's registry (``mteb.get_tasks``)."""
    import mteb

    from embedgrid.evaluate.tasks import OFFLINE_TASKS

    tasks = []
    hub_names = [n for n in names if n not in OFFLINE_TASKS]
    hub = {t.metadata.name: t for t in mteb.get_tasks(tasks=hub_names)} if hub_names else {}
    unknown = [n for n in hub_names if n not in hub]
    if unknown:
        raise ValueError(f"unknown evaluation tasks {unknown}; offline tasks: {sorted(OFFLINE_TASKS)}, "
                         "or any name from mteb.get_tasks()")
    for name in names:
        tasks.append(OFFLINE_TASKS[name]() if name in OFFLINE_TASKS else hub[name])
    return tasks


def evaluate_tasks(model, task_names: list[str], cell_dir: str | Path, *, batch_size: int = 32,
                   show_progress_bar: bool = True) -> dict[str, dict]:
    """Evaluate each task (skipping those cached in ``<cell_dir>/mteb``); returns the ``scores.json`` mapping."""
    import mteb

    cache = mteb.ResultCache(str(Path(cell_dir) / "mteb"))
    scores: dict[str, dict] = {}
    for task in resolve_tasks(list(task_names)):
        started = time.perf_counter()
        result = mteb.evaluate(model, task, cache=cache, overwrite_strategy="only-missing",
                               encode_kwargs={"batch_size": batch_size}, show_progress_bar=show_progress_bar)
        task_result = result.task_results[0]
        name = task.metadata.name
        scores[name] = {
            "category": task.metadata.type,
            "main_score": float(task_result.get_score()),
            "main_metric": task.metadata.main_score,
            "seconds": round(time.perf_counter() - started, 3),
        }
        log.info("%s (%s): %s = %.4f", name, task.metadata.type, task.metadata.main_score, scores[name]["main_score"])
    return scores
