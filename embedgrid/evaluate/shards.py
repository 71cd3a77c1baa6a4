"""Evaluation shards: a cell's tasks split into K groups of about equal encoding cost, each a job of its own.

A task's cost is the number of characters its evaluation encodes (corpus and queries, or every text of its
evaluation splits):
  * mteb's descriptive statistics of the task, where mteb ships them (``task.metadata.descriptive_stats``);
  * for a task whose data is local (the offline suite, custom tasks, mteb's mock tasks), counted from its loaded
    data;
  * a task with a sample count only (``metadata.n_samples``) is costed at the characters per sample of the tasks
    whose size is known; a task with neither gets their mean cost.
When no task's size is known at all, the shards get equal task counts, and the plan says so.
The partition is greedy longest-processing-time: deterministic for the same tasks and costs.
"""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from statistics import fmean

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardPlan:
    shards: list[list[str]]           # task names per shard, each in the suite's order
    costs: dict[str, float]           # the estimate each task was partitioned by
    basis: str                        # in words: where the costs came from

    def to_dict(self) -> dict:
        return {"shards": self.shards, "costs": self.costs, "basis": self.basis}


def stats_characters(stats) -> tuple[float | None, float | None]:
    """``(characters, samples)`` summed over the splits of mteb's descriptive statistics (None where absent)."""
    if not isinstance(stats, dict):
        return None, None
    characters = samples = None
    for split in stats.values():
        if not isinstance(split, dict):
            continue
        chars = split.get("number_of_characters")
        if not chars:  # some task types give only per-column statistics
            chars = sum(value.get("total_text_length") or 0 for key, value in split.items()
                        if key.endswith("_statistics") and isinstance(value, dict)) or None
        if chars:
            characters = (characters or 0) + float(chars)
        if split.get("num_samples"):
            samples = (samples or 0) + float(split["num_samples"])
    return characters, samples


def local_statistics(task) -> dict | None:
    """Descriptive statistics of a task with local data, counted from its loaded data (nothing is written:
    mteb's public ``calculate_descriptive_statistics`` would save them into its own package directory)."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # mteb's per-split progress bars
            if not task.data_loaded:
                task.load_data()
            return {split: task._calculate_descriptive_statistics_from_split(split)
                    for split in task.metadata.eval_splits}
    except Exception as error:  # noqa: BLE001 - an estimate: a task whose size cannot be counted is costed apart
        log.warning("%s: size not counted (%s: %s); costed as the mean task", task.metadata.name,
                    type(error).__name__, error)
        return None


def task_size(task, local: bool) -> tuple[float | None, float | None]:
    """``(characters, samples)`` of one task, from mteb's shipped statistics, else (local data) counted."""
    characters, samples = stats_characters(task.metadata.descriptive_stats)
    if characters is None and local:
        characters, samples = stats_characters(local_statistics(task))
    if samples is None and isinstance(task.metadata.n_samples, dict):
        samples = float(sum(task.metadata.n_samples.values())) or None
    return characters, samples


def estimate_costs(sizes: dict[str, tuple[float | None, float | None]]) -> tuple[dict[str, float], str]:
    """Each task's cost in characters, the gaps filled as the module docstring says; and the basis in words."""
    known = {name: chars for name, (chars, _) in sizes.items() if chars}
    if not known:
        return {name: 1.0 for name in sizes}, "equal task counts (no task's size is known)"
    per_sample = [chars / samples for chars, samples in sizes.values() if chars and samples]
    per_sample_chars = fmean(per_sample) if per_sample else None
    mean = fmean(known.values())
    costs, guessed = {}, []
    for name, (chars, samples) in sizes.items():
        if chars:
            costs[name] = float(chars)
        elif samples and per_sample_chars:
            costs[name], _ = samples * per_sample_chars, guessed.append(name)
        else:
            costs[name], _ = mean, guessed.append(name)
    basis = "characters to encode (mteb's task statistics, or counted from local data)"
    if guessed:
        basis += f"; estimated from sample counts or the mean for {', '.join(guessed)}"
    return costs, basis


def partition(costs: dict[str, float], k: int) -> list[list[str]]:
    """Greedy longest-processing-time: the costliest task first, each to the shard with the least cost so far
    (ties: the lower shard). Shards keep the tasks in the given order; no shard is empty (fewer shards than
    ``k`` when there are fewer tasks)."""
    if k < 1:
        raise ValueError(f"k={k} must be >= 1")
    order = {name: i for i, name in enumerate(costs)}
    k = min(k, len(costs))
    loads, shards = [0.0] * k, [[] for _ in range(k)]
    for name in sorted(costs, key=lambda n: (-costs[n], order[n])):
        target = min(range(k), key=lambda i: (loads[i], i))
        loads[target] += costs[name]
        shards[target].append(name)
    return [sorted(shard, key=order.__getitem__) for shard in shards]


def plan_shards(tasks: list, k: int, local: set[str]) -> ShardPlan:
    """The shard plan of resolved mteb tasks; ``local``: names of the tasks whose data is on this machine."""
    sizes = {task.metadata.name: task_size(task, task.metadata.name in local) for task in tasks}
    costs, basis = estimate_costs(sizes)
    return ShardPlan(partition(costs, k), costs, basis)
