"""What an evaluation suite will run, before it runs: its tasks by category (the dry run's listing) and, with the
hub offline, the datasets it would have to download (refused before training, named)."""
from __future__ import annotations

from embedgrid.evaluate.benchmarks import hub_offline, missing_data_message, missing_datasets
from embedgrid.evaluate.config import EvalConfig
from embedgrid.evaluate.run import resolve_tasks
from embedgrid.evaluate.tasks import OFFLINE_TASKS
from embedgrid.errors import MissingAsset


def hub_tasks(eval_cfg: EvalConfig) -> list:
    """The suite's tasks whose data mteb loads from the Hugging Face hub (not offline or mock tasks)."""
    names = [n for n in eval_cfg.tasks if n not in OFFLINE_TASKS and not n.startswith(("Mock", "LegacyMock"))]
    return resolve_tasks(names, benchmark=eval_cfg.benchmark) if names else []


def listing(eval_cfg: EvalConfig) -> str:
    """``eval <name>: N tasks`` and one line per category, then the datasets missing offline."""
    eval_cfg = EvalConfig.of(eval_cfg)
    tasks = resolve_tasks([n for n in eval_cfg.tasks if n not in OFFLINE_TASKS], benchmark=eval_cfg.benchmark)
    types = {t.metadata.name: t.metadata.type for t in tasks}
    types.update({n: OFFLINE_TASKS[n].metadata.type for n in eval_cfg.tasks if n in OFFLINE_TASKS})
    by_category: dict[str, list[str]] = {}
    for name in eval_cfg.tasks:
        by_category.setdefault(types[name], []).append(name)
    source = f" (mteb benchmark {eval_cfg.benchmark!r})" if eval_cfg.benchmark else ""
    lines = [f"eval {eval_cfg.name}{source}: {len(eval_cfg.tasks)} tasks"]
    lines += [f"  {category} ({len(names)}): {', '.join(names)}" for category, names in by_category.items()]
    if hub_offline():
        missing = missing_datasets([t for t in tasks if not t.__class__.__module__.startswith("mteb.mocks")])
        if missing:
            lines.append(f"  offline: {len(missing)} task(s) need data not in the local Hugging Face cache "
                         "(the run would stop before training):")
            lines += [f"    {m}" for m in missing]
    return "\n".join(lines)


def require_data(eval_cfg: EvalConfig) -> None:
    """With the hub offline, a MissingAsset naming every dataset the suite would download; else nothing."""
    if not hub_offline():
        return
    missing = missing_datasets(hub_tasks(EvalConfig.of(eval_cfg)))
    if missing:
        raise MissingAsset(missing_data_message(missing))
