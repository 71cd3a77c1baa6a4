"""Run a suite of MTEB tasks on one cell's encoder, task by task, through mteb's own evaluator and cache.

mteb's ``ResultCache`` in the results directory the caller gives (a cell's ``mteb/``) with ``overwrite_strategy="only-missing"`` makes re-evaluation skip
finished tasks; evaluating one task per call means an interrupted suite resumes at the next unfinished task.
The model revision written there includes a hash of the evaluation settings that change scores (subset sizes,
sampling seed, instructions), so results of another subset or instruction set are never reused by mistake.
mteb's result files are written atomically here (``atomic_task_results``) and read back through
``cached_result``: a torn one is named, moved aside (``<file>.corrupt-<time>``) and its task re-evaluated.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import time
from pathlib import Path
from statistics import fmean

from embedgrid.errors import ConfigError
from embedgrid.evaluate.autocompile import decide
from embedgrid.evaluate.config import EvalConfig
from embedgrid.io import atomic_write, move_aside
from embedgrid.model.lora import merged_for_inference
from embedgrid.train.distributed import World, broadcast_from_main

log = logging.getLogger(__name__)
FILE_ONLY = {"console": False}  # launch.log only (embedgrid/console.py)

# The paper's seven MTEB categories in its column order (the analysis uses the same); a category with no task in
# the suite is reported as not evaluated.
CATEGORIES = ("STS", "Classification", "Retrieval", "Clustering", "Reranking", "PairClassification",
              "Summarization")
NO_OFFLINE_SUMMARIZATION = ("no summarization set with human scores is available offline from the package "
                            "registries (docs/evaluation.md); never substituted")
SCORE_SETTINGS = ("instructions", "instruction_scope", "max_samples", "task_samples", "sample_seed")


def resolve_tasks(names: list[str], *, max_samples: int | None = None, task_samples: dict | None = None,
                  sample_seed: int = 0, custom: dict | None = None, benchmark: str | None = None):
    """Custom tasks (``eval.custom``), offline tasks by name (embedgrid.evaluate.tasks), then mteb's mock tasks,
    then ``mteb.get_tasks``.

    Offline tasks are subsampled to ``task_samples[name]`` or else ``max_samples`` (None: whole task). With a
    ``benchmark``, its own task objects come first (a copy each: they carry the benchmark's language subsets).
    """
    import copy

    from embedgrid.evaluate.benchmarks import benchmark_tasks
    from embedgrid.evaluate.tasks import OFFLINE_TASKS

    from embedgrid.evaluate.tasks.custom import custom_specs, custom_task

    own = {spec.name: spec for spec in custom_specs(custom)}
    task_samples = dict(task_samples or {})
    stray = sorted(set(task_samples) - set(OFFLINE_TASKS))
    if stray:
        raise ValueError(f"eval.task_samples names {stray}, which are not offline tasks; "
                         f"offline tasks: {sorted(OFFLINE_TASKS)}")
    mocks = _mock_registry() if any(n.startswith(("Mock", "LegacyMock")) for n in names) else {}
    external = [n for n in names if n not in OFFLINE_TASKS and n not in mocks and n not in own]
    hub = {n: copy.deepcopy(t) for n, t in (benchmark_tasks(benchmark) if benchmark else {}).items() if n in external}
    hub.update(_hub_tasks([n for n in external if n not in hub]))
    _refuse_unknown([n for n in external if n not in hub])
    tasks = []
    for name in names:
        if name in own:
            tasks.append(custom_task(own[name]))
        elif name in OFFLINE_TASKS:
            tasks.append(OFFLINE_TASKS[name](max_samples=task_samples.get(name, max_samples),
                                             sample_seed=sample_seed))
        elif name in mocks:
            tasks.append(mocks[name]())
        else:
            tasks.append(hub[name])
    return tasks


def _hub_tasks(names: list[str]) -> dict:
    import mteb

    hub = {}
    for name in names:  # one by one: get_tasks raises on the first unknown name, naming only that one
        try:
            hub.update({t.metadata.name: t for t in mteb.get_tasks(tasks=[name])})
        except KeyError:
            pass
    return hub


def _refuse_unknown(unknown: list[str]) -> None:
    from embedgrid.evaluate.tasks import OFFLINE_TASKS

    if unknown:
        raise ConfigError(f"eval.tasks: unknown evaluation tasks {unknown}; offline tasks: {sorted(OFFLINE_TASKS)}, "
                          "mteb mock tasks (eval=mteb_mock), or any name from mteb.get_tasks()")


@functools.lru_cache(maxsize=64)
def check_task_names(names: tuple[str, ...]) -> None:
    """Every name of ``eval.tasks`` resolves (offline, mock or mteb registry), before any training; raises
    ConfigError naming the unknown ones. Cached: a sweep resolves each distinct task list once."""
    from embedgrid.evaluate.tasks import OFFLINE_TASKS

    rest = [n for n in names if n not in OFFLINE_TASKS]
    mocks = _mock_registry() if any(n.startswith(("Mock", "LegacyMock")) for n in rest) else {}
    rest = [n for n in rest if n not in mocks]
    hub = _hub_tasks(rest) if rest else {}
    _refuse_unknown([n for n in rest if n not in hub])


def _mock_registry() -> dict:
    from mteb.mocks import MOCK_TASK_REGISTRY

    return MOCK_TASK_REGISTRY


def settings_hash(eval_cfg: EvalConfig | dict, prompt: dict | None = None) -> str:
    """Hash of the evaluation settings that change scores (not the task list: adding tasks reuses results).

    ``prompt`` is how the encoder joins instructions to texts (``instruction_template``, ``instruction_join``):
    it changes every instructed text, so results under another joining are never reused.
    """
    settings = EvalConfig.of(eval_cfg).to_dict()
    relevant = {key: settings[key] for key in SCORE_SETTINGS}
    if settings.get("truncate_dim") is not None:  # only when set: hashes of untruncated results stay as they were
        relevant["truncate_dim"] = settings["truncate_dim"]
    if settings.get("benchmark"):  # a benchmark's task may be a subset of mteb's (its languages); absent: as before
        relevant["benchmark"] = settings["benchmark"]
    relevant["prompt"] = dict(prompt or {})
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:10]


def scores_cover(scores: dict, eval_cfg: EvalConfig | dict, prompt: dict | None = None) -> bool:
    """Whether ``scores.json`` holds every requested task, scored under these evaluation settings (and a custom
    task on the current content of its files)."""
    return not unscored_tasks(scores, eval_cfg, prompt)


def unscored_tasks(scores: dict, eval_cfg: EvalConfig | dict, prompt: dict | None = None) -> list[str]:
    """The requested tasks that ``scores`` does not hold scored under these settings, in the suite's order."""
    eval_cfg = EvalConfig.of(eval_cfg)
    wanted = settings_hash(eval_cfg, prompt)
    revisions = {}
    if eval_cfg.custom:
        from embedgrid.evaluate.tasks.custom import custom_revisions

        revisions = custom_revisions(eval_cfg.custom)
    return [t for t in eval_cfg.all_tasks
            if not (scores.get(t, {}).get("eval_settings") == wanted
                    and (t not in revisions or scores[t].get("dataset_revision") == revisions[t]))]


def evaluate_tasks(model, task_names: list[str], results_dir: str | Path, *, batch_size: int = 32,
                   show_progress_bar: bool = True, max_samples: int | None = None, task_samples: dict | None = None,
                   sample_seed: int = 0, custom: dict | None = None, benchmark: str | None = None,
                   tasks: list | None = None) -> dict[str, dict]:
    """Evaluate each task (skipping those cached in ``results_dir``, mteb's result cache); returns the
    ``scores.json`` mapping. ``tasks``: the resolved task objects of ``task_names`` when the caller has them
    (loaded data is reused)."""
    import mteb
    from tqdm.auto import tqdm

    from embedgrid import console

    atomic_task_results()
    cache = mteb.ResultCache(str(results_dir))
    if tasks is None:
        tasks = resolve_tasks(list(task_names), max_samples=max_samples, task_samples=task_samples,
                              sample_seed=sample_seed, custom=custom, benchmark=benchmark)
    scores: dict[str, dict] = {}
    bar = tqdm(tasks, desc="evaluate", unit="task", disable=not show_progress_bar)  # explicit: wins over TQDM_DISABLE
    world = getattr(model, "world", World())
    for task in bar:
        bar.set_postfix_str(task.metadata.name, refresh=True)
        started = time.perf_counter()
        encode_kwargs = {"batch_size": batch_size, "show_progress_bar": console.is_verbose()}
        if world.enabled:  # every rank evaluates; rank 0 alone reads and writes the cache
            result = _evaluate_on_ranks(model, task, cache, world, encode_kwargs)
            if result is None:
                continue  # scored by rank 0 from its cache; every rank gets rank 0's scores at the end
        else:
            result = mteb.evaluate(model, task, cache=cache, overwrite_strategy=_strategy(cache, model, task),
                                   encode_kwargs=encode_kwargs, show_progress_bar=False)
        task_result = result.task_results[0]
        name = task.metadata.name
        scores[name] = {
            "category": task.metadata.type,
            "main_score": round(float(task_result.get_score()), 6),  # as mteb stores it: reruns read the same
            "main_metric": task.metadata.main_score,
            "dataset_revision": task_result.dataset_revision,
            "evaluation_time_s": task_result.evaluation_time,
            "in_domain": bool(getattr(task, "in_domain", False)),  # text from a training source (WordNet, custom)
        }
        log.info("%s (%s): %s = %.4f  [%.1f s]", name, task.metadata.type, task.metadata.main_score,
                 scores[name]["main_score"], time.perf_counter() - started, extra=FILE_ONLY)
    return scores


def atomic_task_results() -> None:
    """mteb writes a result with ``open(path, "w")``: a full disk leaves a torn file. Route ``TaskResult.to_disk``
    through embedgrid's atomic write (temp file + rename), once per process."""
    from mteb.results.task_result import TaskResult

    if getattr(TaskResult.to_disk, "atomic", False):
        return
    plain = TaskResult.to_disk

    def to_disk(self, path) -> None:
        atomic_write(path, lambda tmp: plain(self, Path(tmp)))

    to_disk.atomic = True
    TaskResult.to_disk = to_disk


def cached_result(cache, task_name: str, model, revision: str | None = None):
    """The cached result of a task (``model``: mteb's ModelMeta, or a name with ``revision``), None if absent;
    a torn or unreadable one is named, moved aside and None returned, so the task is evaluated again."""
    try:
        return cache.load_task_result(task_name, model, revision)
    except (ValueError, OSError) as error:  # JSONDecodeError, UnicodeDecodeError and pydantic's are ValueErrors
        path = Path(cache.get_task_result_path(task_name, model, revision))
        aside = move_aside(path) if path.exists() else None
        log.warning("%s: cached result %s is unreadable (%s: %s); moved to %s, re-evaluating", task_name, path,
                    type(error).__name__, str(error).splitlines()[0][:200], aside)
        return None


def _evaluate_on_ranks(model, task, cache, world, encode_kwargs):
    """One task on every rank: rank 0 decides from its cache whether the task is already scored (then it alone
    reads the result, encoding any part mteb finds missing by itself) or every rank evaluates it, each encode
    call's texts split over the ranks (MtebEncoder.shares), only rank 0 writing the result. None on the other
    ranks for a cached task."""
    import mteb

    strategy = _strategy(cache, model, task) if world.is_main else None
    cached = strategy == "only-missing" and cached_result(cache, task.metadata.name, model.mteb_model_meta) \
        is not None if world.is_main else None
    if broadcast_from_main(cached, world):
        if not world.is_main:
            return None
        model.world = World()  # a partly cached result is completed by rank 0 alone
        try:
            return mteb.evaluate(model, task, cache=cache, overwrite_strategy="only-missing",
                                 encode_kwargs=encode_kwargs, show_progress_bar=False)
        finally:
            model.world = world
    return mteb.evaluate(model, task, cache=cache if world.is_main else None,
                         overwrite_strategy="always" if world.is_main else "only-missing",
                         encode_kwargs=encode_kwargs, show_progress_bar=False)


def _strategy(cache, model, task) -> str:
    """``only-missing`` reuses a complete cached result whatever data it scored; a cached result of another
    dataset revision (another subset of an offline task) is re-evaluated instead."""
    cached = cached_result(cache, task.metadata.name, model.mteb_model_meta)
    if cached is not None and cached.dataset_revision != task.metadata.revision:
        log.warning("%s: cached result scored dataset revision %s, not %s; re-evaluating", task.metadata.name,
                    cached.dataset_revision, task.metadata.revision)
        return "always"
    return "only-missing"


def _ordered(categories) -> list[str]:
    """The paper's column order (CATEGORIES), then other task types alphabetically (as the analysis orders them)."""
    categories = set(categories)
    return [c for c in CATEGORIES if c in categories] + sorted(categories - set(CATEGORIES))


def _means(by_category: dict[str, list[float]]) -> dict:
    order = _ordered(by_category)
    tasks = [score for c in order for score in by_category[c]]
    return {"means": {c: fmean(by_category[c]) for c in order},
            "tasks_per_category": {c: len(by_category[c]) for c in order},
            "average_of_category_means": fmean(fmean(by_category[c]) for c in order) if order else None,
            "mean_of_tasks": fmean(tasks) if tasks else None}


def category_scores(scores: dict[str, dict], offline_only: bool, suite: str | None = None) -> dict:
    """Per-category means of main scores, split as the analysis splits them: out-of-domain tasks give ``means``
    and the two averages (the cell's primary result); tasks whose text is in the training data
    (``in_domain``) are reported apart under ``in_domain``. ``not_evaluated`` says in words why a category has
    no out-of-domain mean."""
    out_domain: dict[str, list[float]] = {}
    in_domain: dict[str, list[float]] = {}
    for entry in scores.values():
        (in_domain if entry.get("in_domain") else out_domain).setdefault(entry["category"], []).append(
            entry["main_score"])
    suite_words = f" (eval={suite})" if suite else ""
    not_evaluated = {}
    for category in _ordered(set(CATEGORIES) | set(in_domain)):
        if category in out_domain:
            continue
        if category in in_domain:
            not_evaluated[category] = ("only in-domain tasks (their text is in the training data), reported "
                                       "apart")
        elif offline_only and category == "Summarization":
            not_evaluated[category] = NO_OFFLINE_SUMMARIZATION
        else:
            not_evaluated[category] = f"no task of this category in eval.tasks{suite_words}"
    return {**_means(out_domain), "in_domain": _means(in_domain), "not_evaluated": not_evaluated}


def evaluate_encoder(encoder, eval_cfg: EvalConfig | dict, results_dir: str | Path, *, name: str,
                     revision: str, meta: dict | None = None, world: World = World()) -> tuple[dict, dict]:
    """Evaluate a cell's encoder on ``eval_cfg`` (the typed ``eval`` group; a plain dict is typed first).

    ``results_dir`` is mteb's result cache (a cell's ``mteb/``). Returns ``(scores, category_scores)``; the
    caller records them (the cell writes ``scores.json`` and ``category_scores.json``). With a ``world`` of
    several ranks every rank must call this: all of them encode (each encode call split over the ranks), rank 0
    alone writes the result cache, and every rank returns the same scores.
    """
    from embedgrid import console
    from embedgrid.evaluate.model import MtebEncoder

    eval_cfg = EvalConfig.of(eval_cfg)
    log.info("evaluating %d tasks (%s)", len(eval_cfg.all_tasks), eval_cfg.name)
    spec = encoder.spec
    settings = settings_hash(eval_cfg, {"instruction_template": spec.instruction_template,
                                        "instruction_join": spec.instruction_join})
    tasks = []

    def resolved():  # once: the tasks auto-compile counted (their data loaded) are the ones evaluated
        tasks[:] = tasks or resolve_tasks(list(eval_cfg.all_tasks), max_samples=eval_cfg.max_samples,
                                          task_samples=eval_cfg.task_samples, sample_seed=eval_cfg.sample_seed,
                                          custom=eval_cfg.custom, benchmark=eval_cfg.benchmark)
        return tasks

    width = int(getattr(encoder.backbone.config, "hidden_size", 0) or 0)
    compile, why = decide(eval_cfg.compile, encoder.device, width, resolved)
    log.info("compiled encoding %s (%s)", "on" if compile else "off", why)
    model = MtebEncoder(encoder, name=name, revision=f"{revision}-e{settings}", instructions=eval_cfg.instructions,
                        instruction_scope=eval_cfg.instruction_scope, batch_size=eval_cfg.batch_size,
                        batch_tokens=eval_cfg.batch_tokens, compile=compile,
                        show_progress_bar=eval_cfg.progress_bar and console.is_verbose(),  # per-role bars
                        meta=meta, truncate_dim=eval_cfg.truncate_dim, world=world)
    # eager: the adapter merged once for the whole evaluation (the compiled copy merges its own)
    with contextlib.nullcontext(False) if compile else merged_for_inference(encoder.backbone) as merged:
        if merged:
            log.info("LoRA merged into the weights for evaluation", extra=FILE_ONLY)
        scores = evaluate_tasks(model, eval_cfg.all_tasks, results_dir, batch_size=eval_cfg.batch_size,
                                show_progress_bar=eval_cfg.progress_bar, max_samples=eval_cfg.max_samples,
                                task_samples=eval_cfg.task_samples, sample_seed=eval_cfg.sample_seed,
                                custom=eval_cfg.custom, benchmark=eval_cfg.benchmark, tasks=resolved())
    scores = broadcast_from_main(scores, world)  # several ranks: rank 0's (it alone read the cached tasks)
    for entry in scores.values():
        entry["eval_settings"] = settings  # CellDir.state: a done cell evaluated under other settings is partial
    return scores, suite_categories(scores, eval_cfg)


def suite_categories(scores: dict[str, dict], eval_cfg: EvalConfig) -> dict:
    """``category_scores.json`` of a suite's scores (the whole suite's: evaluated at once or in shards)."""
    from embedgrid.evaluate.tasks import OFFLINE_TASKS

    return category_scores(scores, offline_only=all(n in OFFLINE_TASKS or n in eval_cfg.custom
                                                    for n in eval_cfg.all_tasks), suite=eval_cfg.name)
