"""Evaluation settings (``conf/eval/*.yaml``): the typed schema of the ``eval`` group and what the runner reads."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional

from embedgrid.errors import ConfigError
from embedgrid.evaluate.benchmarks import benchmark_instructions, benchmark_tasks

INSTRUCTION_SCOPES = ("query", "all")


def check_scope(scope):
    """``query`` | ``all`` | ``{<mteb task type>: query|all, ..., default: query|all}``, else a ConfigError."""
    if isinstance(scope, dict):
        bad = {k: v for k, v in scope.items() if v not in INSTRUCTION_SCOPES}
        if bad or "default" not in scope:
            raise ConfigError(f"eval.instruction_scope={scope}: every value must be one of "
                              f"{', '.join(INSTRUCTION_SCOPES)} and a 'default' entry is required")
        return dict(scope)
    if scope not in INSTRUCTION_SCOPES:
        raise ConfigError(f"unknown eval.instruction_scope={scope!r}; valid: {', '.join(INSTRUCTION_SCOPES)} or a "
                          "mapping {<task type>: query|all, default: query|all}")
    return scope


@dataclass
class EvalConfig:
    """``tasks``: offline task names, mteb mock names or mteb names; ``max_samples`` caps every offline task
    (None: whole task), ``task_samples`` caps single tasks; ``instruction_scope``: ``query`` (retrieval and
    reranking queries + every text of symmetric tasks), ``all`` (every text), or per mteb task type with a
    ``default`` (``{Retrieval: query, default: all}``: the reference code's behaviour)."""

    name: str = "offline"
    tasks: List[str] = field(default_factory=list)
    benchmark: Optional[str] = None  # an mteb benchmark ('MTEB(eng, v2)'): its tasks and instructions (benchmarks.py)
    max_samples: Optional[int] = None
    task_samples: Dict[str, int] = field(default_factory=dict)
    sample_seed: int = 0
    instruction_scope: Any = "query"  # str or {task type: str, default: str}
    batch_size: int = 32
    batch_tokens: Optional[int] = None  # padded tokens per encode batch; None: Encoder's rule (batch_token_budget)
    compile: Any = "auto"  # true | false | auto: torch.compile the backbone for encoding where the suite's texts
    #                        exceed the device's measured break-even (embedgrid/evaluate/autocompile.py)
    progress_bar: bool = True
    instructions: Dict[str, str] = field(default_factory=dict)
    custom: Dict[str, Any] = field(default_factory=dict)  # your own tasks: {name: {type, path, ...}} (tasks/custom.py)
    truncate_dim: Optional[int] = None  # evaluate the first k dimensions (renormalised); null: all of them
    shards: int = 1  # >1: after training, the sweeper scores the tasks in this many jobs of their own (scale.md)

    def __post_init__(self):
        self.instruction_scope = check_scope(self.instruction_scope)
        if self.compile is not True and self.compile is not False and self.compile != "auto":
            raise ConfigError(f"eval.compile={self.compile!r}; valid: true, false, auto")
        if self.batch_size < 1:
            raise ConfigError(f"eval.batch_size={self.batch_size} must be >= 1")
        if self.batch_tokens is not None and self.batch_tokens < 1:
            raise ConfigError(f"eval.batch_tokens={self.batch_tokens} must be >= 1 or null (automatic)")
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError(f"eval.max_samples={self.max_samples} must be >= 1 or null (whole task)")
        if self.truncate_dim is not None and self.truncate_dim < 1:
            raise ConfigError(f"eval.truncate_dim={self.truncate_dim} must be >= 1 or null (every dimension)")
        if isinstance(self.shards, bool) or not isinstance(self.shards, int) or self.shards < 1:
            raise ConfigError(f"eval.shards={self.shards!r} must be an integer >= 1 (1: evaluate in the training "
                              "job; K: K evaluation jobs of their own after training)")
        bad = {k: v for k, v in self.task_samples.items() if v < 1}
        if bad:
            raise ConfigError(f"eval.task_samples {bad}: every cap must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def all_tasks(self) -> list[str]:
        """``tasks`` then the ``custom`` task names: the suite a cell evaluates."""
        return list(self.tasks) + [name for name in self.custom if name not in self.tasks]

    @classmethod
    def of(cls, value) -> "EvalConfig":
        """An EvalConfig from itself or a plain dict (unknown keys fail, named)."""
        if isinstance(value, cls):
            return value
        data = dict(value)
        known = {f.name for f in fields(cls)}
        stray = sorted(set(data) - known)
        if stray:
            raise ConfigError(f"unknown eval keys {stray}; valid: {', '.join(sorted(known))}")
        if data.get("benchmark") in (None, "", "???") and data.get("name") == "benchmark":
            raise ConfigError("eval=benchmark needs eval.benchmark=NAME, e.g. eval.benchmark='MTEB(eng, v2)' "
                              "(python -c \"import mteb; print([b.name for b in mteb.get_benchmarks()])\" lists them)")
        if data.get("benchmark"):
            data = with_benchmark(data)
        if not data.get("tasks") and not data.get("custom"):
            raise ConfigError("eval.tasks is empty; name at least one task (e.g. eval=offline_small) or your own "
                              "in eval.custom")
        return cls(**data)


def with_benchmark(data: dict) -> dict:
    """``eval.benchmark`` expanded: its tasks (``eval.tasks``, when given, must be a subset: those are run) and
    its instructions under the user's own ``eval.instructions``."""
    name = data["benchmark"]
    tasks = benchmark_tasks(name)
    chosen = list(data.get("tasks") or [])
    stray = [t for t in chosen if t not in tasks]
    if stray:
        raise ConfigError(f"eval.tasks {stray} are not tasks of eval.benchmark={name!r}; leave eval.tasks empty to "
                          f"run all {len(tasks)}, or name some of: {', '.join(tasks)}")
    instructions = {**benchmark_instructions(name), **dict(data.get("instructions") or {})}
    return {**data, "tasks": [t for t in tasks if not chosen or t in chosen], "instructions": instructions}
