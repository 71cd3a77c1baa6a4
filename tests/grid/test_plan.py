"""One typed plan per cell: ``resolve_plan`` holds what the composed config says, and nothing below the cell reads
the composed config itself."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers import ROOT, TINY

CONFIGS = [
    [],                                                        # the default cell
    TINY,
    [*TINY, "design=multi_layer_bidirectional", "seed=3"],
    [*TINY, "eval.truncate_dim=32"],                           # an evaluation of a shared trained model
    [*TINY, "train.max_steps=0"],                              # zero-shot
    [*TINY, "train.max_length=48", "lora.r=4", "+logger.api_key=sk-abcdefghijklmnopqrstuvwxyz"],
    ["experiment=minilm_reference"],
    ["model=qwen2_0_5b", "train=paper", "data=mixture"],
]


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda o: " ".join(o) or "default")
def test_the_plan_holds_what_the_config_functions_return(compose, overrides):
    from embedgrid.data.fingerprint import loader_inputs
    from embedgrid.grid.cellid import base_name, cell_name, config_hash, eval_suffix, identity_version, inputs
    from embedgrid.grid.plan import encoder_spec, resolve_plan
    from embedgrid.grid.schema import eval_config, train_config
    from embedgrid.secrets import redact

    cfg = compose(overrides)
    plan = resolve_plan(cfg)
    identity = plan.identity
    assert identity.name == cell_name(cfg) and identity.config_hash == config_hash(cfg)
    assert (identity.base_name, identity.eval_suffix) == (base_name(cfg), eval_suffix(cfg))
    assert identity.design == {"model": cfg.model.name, "pooling": cfg.pooling.name,
                               "attention": cfg.attention.name, "seed": int(cfg.seed)}
    assert plan.encoder == encoder_spec(cfg) and plan.encoder.name == cell_name(cfg)
    assert plan.train == train_config(cfg) and plan.eval == eval_config(cfg)
    assert plan.prompt == {"instruction_template": cfg.instruction_template, "instruction_join": cfg.instruction_join}
    assert plan.data.name == cfg.data.name
    assert plan.data.loader == OmegaConf.to_container(cfg.data.loader, resolve=True)
    assert plan.runtime.logger == OmegaConf.to_container(cfg.logger, resolve=True)
    assert (plan.runtime.grid, plan.runtime.seed, plan.runtime.threads, plan.runtime.device) == (
        cfg.grid, int(cfg.seed), cfg.threads, cfg.device)
    assert plan.card == OmegaConf.to_container(cfg.model.card or {}, resolve=True)
    assert plan.config == redact(OmegaConf.to_container(cfg, resolve=True)), "what cell.json saved before"
    assert plan.provenance.fingerprints() == {i.name: i.fingerprint for i in inputs(cfg)}
    assert plan.provenance.identity_version == identity_version(cfg)
    assert [i.name for i in loader_inputs(plan.data.loader)] == [i.name for i in inputs(cfg)
                                                                 if i.name.startswith("data")] or not plan.trains


def test_secrets_stay_out_of_the_saved_config_and_the_plans_repr(compose):
    from embedgrid.grid.plan import resolve_plan

    plan = resolve_plan(compose([*TINY, "+logger.api_key=sk-abcdefghijklmnopqrstuvwxyz"]))
    assert plan.config["logger"]["api_key"] == "<redacted>"
    assert plan.runtime.logger["api_key"] == "sk-abcdefghijklmnopqrstuvwxyz", "the logger is given its key"
    assert "sk-abc" not in repr(plan)
    saved = plan.saved_config()
    saved["seed"] = 99
    assert plan.config["seed"] == 0, "a record edits its own copy"


def test_the_plan_is_frozen(compose):
    import dataclasses

    from embedgrid.grid.plan import resolve_plan

    plan = resolve_plan(compose(TINY))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.train = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.identity.name = "other"


def test_a_pinned_input_is_fingerprinted_only_when_the_record_asks(compose, monkeypatch):
    """The sweeper resolves a plan per cell: WordNet (pinned by code) is hashed for the record, not for the plan."""
    import embedgrid.data.fingerprint as fingerprint
    from embedgrid.grid.plan import resolve_plan

    hashed = []
    real = fingerprint.path_fingerprint
    monkeypatch.setattr(fingerprint, "path_fingerprint", lambda path: hashed.append(path) or real(path))
    plan = resolve_plan(compose(TINY))  # data=wordnet
    assert hashed == []
    assert plan.provenance.fingerprints()["data"] and hashed


# ---- nothing below the cell reads the composed config ----------------------------------------------------------------
# Modules that compose or check configs, or compute a cell's identity from one: the plan's resolver, the
# identity and the schema it calls, and the entry points that run before a cell (Hydra's launcher glue and
# callbacks, the sweeper and its cost and readiness checks, the reference generator, the mining CLI).
CONFIG_READERS = {
    "embedgrid/grid/plan.py", "embedgrid/grid/cellid.py", "embedgrid/grid/schema.py", "embedgrid/grid/launcher.py",
    "embedgrid/grid/sweeper.py", "embedgrid/grid/hydra_callbacks.py", "embedgrid/grid/reference.py",
    "embedgrid/grid/readiness.py", "embedgrid/grid/costplan.py", "embedgrid/mine.py", "embedgrid/grid/shardjobs.py",
}
# The tops of a job, which resolve the plan from the composed config they are handed: a cell, an evaluation shard.
JOB_TOPS = {"embedgrid/grid/cell.py": ("run", "cell_state"), "embedgrid/grid/shard.py": ("run_shard",)}
# Reads conf/pooling/*.yaml (the reference shapes of the pooling presets), never a cell's config.
OMEGACONF_FILES = {"embedgrid/model/pooling/sizes.py"}
# What cell.run's callees may not call: every function that reads a composed config.
READER_FUNCTIONS = {
    "embedgrid.grid.plan": {"resolve_plan", "encoder_spec"},
    "embedgrid.grid.schema": {"train_config", "eval_config", "check", "known_shape"},
    "embedgrid.grid.cellid": {"cell_name", "base_name", "eval_suffix", "config_hash", "hashed_identity", "identity",
                              "identity_inputs", "identity_version", "inputs", "model_commit",
                              "training_sees_instructions", "check_path_names"},
    "embedgrid.grid.readiness": {"blockers", "check"},
}
# The top-level keys of a composed cell config: ``<name>.model``, ``<name>["eval"]`` ... read a config.
CONFIG_KEYS = {"model", "pooling", "attention", "lora", "train", "data", "eval", "logger", "perceiver", "grid",
               "seed", "threads", "device", "instruction_template", "instruction_join", "instruction_in_pooling",
               "append_eos", "dry_run", "verbose", "design"}
CONFIG_NAMES = {"cfg", "config", "conf", "composed"}


def config_reads(source: str, path: str) -> list[str]:
    """Every place in ``source`` that takes or reads a composed cell config (see the rules above)."""
    tree = ast.parse(source)
    problems = []
    cell_module = path in JOB_TOPS
    for node in ast.walk(tree):
        where = f"{path}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            names = {a.name for a in node.names}
            for module in modules:
                top = module.split(".")[0]
                if top == "omegaconf" and path not in OMEGACONF_FILES and not (cell_module and names <= {"DictConfig"}):
                    problems.append(f"{where}: imports omegaconf ({', '.join(sorted(names))})")
                if top == "hydra" and not (cell_module and module == "hydra.utils" and names == {"instantiate"}):
                    problems.append(f"{where}: imports {module}")
                bad = names & READER_FUNCTIONS.get(module, set()) - ({"resolve_plan"} if cell_module else set())
                if bad:
                    problems.append(f"{where}: imports {', '.join(sorted(bad))} from {module}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                if arg.arg != "cfg":  # the name a composed config goes by (``config``: also transformers')
                    continue
                annotation = ast.unparse(arg.annotation) if arg.annotation is not None else None
                entry = cell_module and node.name in JOB_TOPS[path]
                if annotation is None or ("DictConfig" in annotation and not entry):
                    problems.append(f"{where}: {node.name}() takes {arg.arg}"
                                    f"{': ' + annotation if annotation else ''} (a composed config?)")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id in CONFIG_NAMES and node.attr in CONFIG_KEYS:
            problems.append(f"{where}: reads {ast.unparse(node)}")
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and \
                node.value.id in CONFIG_NAMES and isinstance(node.slice, ast.Constant) and node.slice.value in CONFIG_KEYS:
            problems.append(f"{where}: reads {ast.unparse(node)}")
    if cell_module:  # run(cfg, ...) hands its config to resolve_plan and to nothing else
        handed = {id(a) for n in ast.walk(tree) if isinstance(n, ast.Call)
                  and ast.unparse(n.func) == "resolve_plan" for a in n.args}
        tested = {id(n.left) for n in ast.walk(tree) if isinstance(n, ast.Compare)
                  and all(isinstance(op, (ast.Is, ast.IsNot)) for op in n.ops)}
        problems += [f"{path}:{n.lineno}: uses the composed config other than by resolve_plan(cfg)"
                     for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in CONFIG_NAMES
                     and isinstance(n.ctx, ast.Load) and id(n) not in handed | tested]
    return problems


def below_the_cell() -> list[Path]:
    return sorted(p for p in (ROOT / "embedgrid").rglob("*.py")
                  if str(p.relative_to(ROOT)) not in CONFIG_READERS)


def test_nothing_below_the_cell_takes_or_reads_the_composed_config():
    files = below_the_cell()
    assert {"embedgrid/grid/cell.py", "embedgrid/grid/celldir.py", "embedgrid/evaluate/meta.py",
            "embedgrid/train/loop.py", "embedgrid/secrets.py", "embedgrid/grid/designs.py"} <= \
        {str(p.relative_to(ROOT)) for p in files}
    problems = [p for path in files for p in config_reads(path.read_text(), str(path.relative_to(ROOT)))]
    assert not problems, "read the composed config in embedgrid/grid/plan.py only:\n" + "\n".join(problems)


@pytest.mark.parametrize("source, path", [
    # how the cell directory read the config before it took a plan
    ("def record(self, cfg, **fields):\n    return {'cell': cell_name(cfg)}\n", "embedgrid/grid/celldir.py"),
    ("def meta(cfg, encoder):\n    return dict(cfg.model.card or {})\n", "embedgrid/evaluate/meta.py"),
    ("def data_name(plan):\n    return str(config['data']['name'])\n", "embedgrid/evaluate/meta.py"),
    ("from omegaconf import OmegaConf\n", "embedgrid/evaluate/config.py"),
    ("from embedgrid.grid.schema import train_config\n", "embedgrid/grid/cell.py"),
    ("from embedgrid.grid.cellid import cell_name, config_hash\n", "embedgrid/grid/celldir.py"),
    ("def _train_dtype(cfg: DictConfig, train, device):\n    pass\n", "embedgrid/grid/cell.py"),
    ("def run(cfg: DictConfig, d):\n    plan = resolve_plan(cfg)\n    _setup(cfg)\n", "embedgrid/grid/cell.py"),
])
def test_the_rule_catches_a_config_read(source, path):
    assert config_reads(source, path)


def test_the_rule_lets_the_cell_hand_its_config_to_the_resolver():
    source = ("from omegaconf import DictConfig\nfrom embedgrid.grid.plan import resolve_plan\n\n"
              "def run(cfg: DictConfig, d):\n    plan = resolve_plan(cfg)\n\n"
              "def cell_state(d, cfg: DictConfig | None = None):\n    return None if cfg is None else resolve_plan(cfg)\n")
    assert config_reads(source, "embedgrid/grid/cell.py") == []
    typed = "def make_optimizer(encoder, cfg: TrainConfig):\n    return cfg.lr\n"  # a typed part may be called cfg
    assert config_reads(typed, "embedgrid/train/loop.py") == []


@pytest.mark.slow
def test_a_running_cell_hands_no_function_below_it_the_composed_config(compose, tmp_path):
    """Every embedgrid function called while a (zero-shot) cell runs, traced: only the resolver and the identity
    and schema functions it calls are given a config node."""
    import sys

    from omegaconf import DictConfig, ListConfig

    from embedgrid.grid.cell import run

    resolvers = ("embedgrid.grid.plan", "embedgrid.grid.cellid", "embedgrid.grid.schema")
    given: set[str] = set()

    def profile(frame, event, arg):
        module = frame.f_globals.get("__name__", "")
        if event != "call" or not module.startswith("embedgrid"):
            return
        code = frame.f_code
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        if any(isinstance(frame.f_locals.get(name), (DictConfig, ListConfig)) for name in names):
            given.add(f"{module}.{code.co_qualname}")

    cfg = compose([*TINY, "train.max_steps=0", "eval.max_samples=8"])
    sys.setprofile(profile)
    try:
        outcome = run(cfg, tmp_path / "cell")
    finally:
        sys.setprofile(None)
    assert outcome.status == "done"
    assert "embedgrid.grid.plan.resolve_plan" in given, "the tracer sees the resolver"
    below = sorted(name for name in given if not name.startswith(resolvers) and name != "embedgrid.grid.cell.run")
    assert not below, f"given the composed config below the cell: {below}"
