"""Every config composes; the paper's designs map to the right pooling x attention; bad input fails at compose."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from tests.helpers import ROOT

GROUPS = ("model", "pooling", "attention", "train", "data", "eval", "logger", "design", "experiment")
DESIGNS = {
    "eos_causal": ("eos_last", "causal"),
    "last_layer_causal": ("last_layer_trainable", "causal"),
    "multi_layer_causal": ("multi_layer_trainable", "causal"),
    "last_layer_bidirectional": ("last_layer_trainable", "bidirectional"),
    "multi_layer_bidirectional": ("multi_layer_trainable", "bidirectional"),
}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes(compose, group):
    assert options(group), f"conf/{group}/ is empty"
    for option in options(group):
        cfg = compose([f"{group}={option}"])
        assert cfg.grid and cfg.model.name and cfg.pooling.name and cfg.attention.name, (group, option)


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_design_selects_pooling_and_attention(compose, design):
    cfg = compose([f"design={design}"])
    assert (cfg.pooling.name, cfg.attention.name) == DESIGNS[design]


def test_paper_grid_sweeps_the_five_designs(compose):
    cfg = compose(["experiment=paper_grid"], return_hydra_config=True)
    assert cfg.grid == "paper_grid"
    assert sorted(cfg.hydra.sweeper.params.design.split(",")) == sorted(DESIGNS) == options("design")
    assert cfg.hydra.sweeper._target_.endswith("GridSweeper")


def test_full_grid_sweeps_every_pooling_and_attention(compose):
    cfg = compose(["experiment=full_grid"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params.pooling == "glob(*)" and cfg.hydra.sweeper.params.attention == "glob(*)"


def test_cell_dirs_come_from_the_config_not_timestamps(compose):
    a = compose(["model=tiny", "design=eos_causal"], return_hydra_config=True)
    b = compose(["model=tiny", "pooling=eos_last", "attention=causal"], return_hydra_config=True)
    c = compose(["model=tiny", "pooling=eos_last", "attention=causal", "seed=1"], return_hydra_config=True)
    assert a.hydra.sweep.subdir == b.hydra.sweep.subdir, "a design is the same cell as its pooling x attention"
    assert a.hydra.sweep.subdir.startswith("tiny-eos_last-causal-seed0-")
    assert c.hydra.sweep.subdir.startswith("tiny-eos_last-causal-seed1-")
    assert a.hydra.sweep.dir == "multirun/default" and a.hydra.run.dir == f"outputs/{a.hydra.sweep.subdir}"
    evaluated_more = compose(["model=tiny", "design=eos_causal", "eval.batch_size=7"], return_hydra_config=True)
    assert evaluated_more.hydra.sweep.subdir == a.hydra.sweep.subdir, "eval settings are not the cell's identity"


@pytest.mark.parametrize("launcher", ["local_slurm", "slurm_cluster", "local_processes"])
def test_launcher_presets_compose_against_the_plugin_schema(compose, launcher):
    cfg = compose([f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher.cpus_per_task >= 1
    if "slurm" in launcher:
        assert cfg.hydra.launcher.max_num_timeout > 0, "resume makes requeue safe: allow it"
        assert cfg.hydra.launcher.timeout_min > 10, "<= 10 min makes every preemption count as a timeout"
        assert cfg.hydra.launcher.partition and cfg.hydra.launcher.array_parallelism >= 1


@pytest.mark.parametrize("override, valid", [
    ("design=eos_bidirectional", "multi_layer_bidirectional"),
    ("experiment=paper", "paper_grid"),
    ("pooling=cls", "last_layer_trainable"),
    ("hydra/launcher=slurm", "local_slurm"),
])
def test_unknown_option_names_the_bad_value_and_the_valid_ones(compose, override, valid):
    with pytest.raises(ConfigCompositionException) as error:
        compose([override], return_hydra_config=True)
    message = str(error.value)
    assert override.split("=")[1] in message and valid in message


@pytest.mark.parametrize("override", ["seed=abc", "threads=two", "train.max_steps=ten", "lora.r=x",
                                      "dry_run=maybe"])
def test_schema_rejects_bad_types_at_compose_time(compose, override):
    with pytest.raises((ConfigCompositionException, ValidationError)) as error:
        compose([override])
    assert override.split("=")[0].split(".")[-1] in str(error.value) + str(error.value.__cause__)


def test_schema_rejects_misspelt_keys(compose):
    with pytest.raises(ConfigCompositionException):
        compose(["train.learning_rate=1e-3"])


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, embedgrid; print(sorted(m for m in ('torch', 'transformers', 'mteb', 'peft') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(ROOT)).stdout
    assert out.strip() == "[]", f"`import embedgrid` loaded heavy libraries: {out}"


# What the issue-13 report's cells were trained with before h14 (issue 14): the WordNet split by synset id alone
# (no holdout / exclude_pairs_of keys) and 12 steps at lr 2e-4. Both changed on purpose -- the old split leaks
# evaluation text into training and 12 steps barely move the scores -- so every paper-grid cell rehashes.
BEFORE_ISSUE_14 = ["~data.loader.holdout", "~data.loader.exclude_pairs_of", "train.max_steps=12", "train.lr=2e-4",
                   "train.warmup_steps=2"]


def test_cell_names_of_the_committed_report_still_resolve(compose):
    """Cell names are hashes of the identity config: a change that silently rehashes every cell would make
    relaunched sweeps redo finished cells. docs/reports/paper_grid_smollm2 was produced by real cells (the five
    designs, seeds 0-2, today's defaults): every cell in it must keep its name."""
    import csv

    from embedgrid.grid.cellid import cell_name

    with open(ROOT / "docs" / "reports" / "paper_grid_smollm2" / "tables.csv") as handle:
        reported = {(row["pooling"], row["attention"], int(row["seed"])): row["cell"]
                    for row in csv.DictReader(handle)}
    by_pooling_attention = {v: k for k, v in DESIGNS.items()}
    assert {(p, a) for p, a, _ in reported} == set(by_pooling_attention)   # every design has a cell
    for (pooling, attention, seed), name in sorted(reported.items()):
        overrides = [f"design={by_pooling_attention[(pooling, attention)]}", "experiment=paper_grid",
                     "model=smollm2_135m", f"seed={seed}", "threads=1", "logger=none"]
        assert cell_name(compose(overrides)) == name, (pooling, attention, seed)


def test_cell_names_of_the_issue_13_report_resolve_under_its_settings(compose):
    """The issue-13 report's cells (tests/fixtures/paper_grid_smollm2_issue13_cells.csv) were renamed on purpose by
    three changes, so old results are never reused as the new design: the WordNet split by lemma and the longer
    default training (issue 14, BEFORE_ISSUE_14 restores the old settings), designs 2 and 4
    (``last_layer_trainable``) became the paper's Perceiver instead of NV-Embed latent attention, and the
    false-negative mask (``train.false_negative_mask``, default true) changed every cell's objective. With the old
    settings and the mask off, designs 1, 3 and 5, whose computation did not change, must keep their names
    exactly; with today's defaults no cell may."""
    import csv

    from embedgrid.grid.cellid import cell_name

    with open(ROOT / "tests" / "fixtures" / "paper_grid_smollm2_issue13_cells.csv") as handle:
        reported = {(row["pooling"], row["attention"]): row["cell"] for row in csv.DictReader(handle)}
    assert len(reported) == len(DESIGNS)
    for design, pooling_attention in DESIGNS.items():
        base = [f"design={design}", "experiment=paper_grid", "model=smollm2_135m", "eval.max_samples=50",
                "threads=1", "logger=none"]
        assert cell_name(compose(base)) != reported[pooling_attention], design
        old = cell_name(compose([*base, *BEFORE_ISSUE_14, "train.false_negative_mask=false"]))
        if pooling_attention[0] == "last_layer_trainable":
            assert old != reported[pooling_attention], f"{design}: a new architecture needs a new name"
        else:
            assert old == reported[pooling_attention], design
            synset_split = [o for o in BEFORE_ISSUE_14 if not o.startswith("~")] + ["data.loader.holdout=synset",
                                                                                     "train.false_negative_mask=false"]
            assert cell_name(compose([*base, *synset_split])) != reported[pooling_attention], design
            # issue 17: train.bf16 keeps its default false and train.length_sorted is a runtime key, so the names
            # hold; bf16=auto is another training on a bf16 CPU and names another cell
            auto = [*base, *BEFORE_ISSUE_14, "train.false_negative_mask=false", "train.bf16=auto"]
            assert cell_name(compose(auto)) != reported[pooling_attention], design


def test_bf16_true_is_renamed_because_its_meaning_on_cpu_changed(compose):
    """bf16=true meant 'autocast on GPU only' (float32 on CPU); now it is bf16 everywhere, so it hashes anew."""
    import hashlib
    import json

    from embedgrid.grid.cellid import config_hash, identity

    cfg = compose(["model=tiny", "train.bf16=true"])
    old = identity(cfg)
    old["train"]["bf16"] = True  # the identity as hashed before issue 17
    old_hash = hashlib.sha256(json.dumps(old, sort_keys=True, default=str).encode()).hexdigest()[:10]
    assert config_hash(cfg) != old_hash
    assert len({config_hash(compose(["model=tiny", f"train.bf16={v}"])) for v in ("true", "false", "auto")}) == 3
    assert config_hash(compose(["model=tiny", "train.length_sorted=false"])) == config_hash(compose(["model=tiny"]))


def test_new_switches_rename_a_cell_only_when_they_change_what_it_trains(compose):
    from embedgrid.grid.cellid import cell_name, identity

    base = ["model=tiny", "design=multi_layer_causal", "train.false_negative_mask=false"]
    default = compose(base)
    assert cell_name(compose(base + ["train.accumulation_steps=1", "perceiver.mask_padding=true"])) == \
        cell_name(default)
    for changed in ["train.accumulation_steps=2", "perceiver.normalize_layers=false", "perceiver=paper",
                    "perceiver.layer_embedding_std=1.0", "train.false_negative_mask=true"]:
        assert cell_name(compose(base + [changed])) != cell_name(default), changed
    # the instruction template reaches training only through rows that carry instructions
    assert "prompt" not in identity(default)
    assert cell_name(compose(base + ["instruction_join=paper"])) != cell_name(default)
    with_instruction = compose(base + ["data.loader.instruction=define"])
    assert identity(with_instruction)["prompt"]["instruction_join"] == "template"
    jsonl = compose(["model=tiny", "data=jsonl", "data.loader.path=x.jsonl"])
    assert "prompt" in identity(jsonl)


def test_paper_reference_sets_the_reference_values_and_the_command_line_wins(compose):
    cfg = compose(["experiment=paper_reference", "design=last_layer_bidirectional"], return_hydra_config=True)
    head = cfg.pooling.head
    assert (head.num_latents, head.num_heads, head.head_dim) == (768, 32, 2048)
    assert head.mask_padding is False and head.causal_input == "eos" and head.latent_init_std == 1.0
    assert cfg.model.max_length == 512 and cfg.instruction_join == "paper"
    assert cfg.train.false_negative_mask is False
    assert dict(cfg.eval.instruction_scope) == {"Retrieval": "query", "default": "all"}
    assert sorted(cfg.hydra.sweeper.params.design.split(",")) == sorted(DESIGNS)
    multi = compose(["experiment=paper_reference", "design=multi_layer_causal"]).pooling.head
    assert multi.normalize_layers is False and multi.layer_embedding_std == 1.0
    assert compose(["experiment=paper_reference", "model.max_length=64"]).model.max_length == 64
    grid = compose(["experiment=paper_grid", "design=last_layer_causal"])
    assert grid.pooling.head.mask_padding is True and grid.pooling.head.causal_input == "tokens"
    assert grid.train.false_negative_mask is True and grid.instruction_join == "template"


def test_train_presets_are_the_reference_regime_and_the_gradcache_one(compose):
    from embedgrid.train.loop import candidates_per_query
    from embedgrid.train.config import TrainConfig
    from omegaconf import OmegaConf

    paper = TrainConfig(**OmegaConf.to_container(compose(["train=paper"]).train))
    assert (paper.batch_size, paper.accumulation_steps, paper.grad_cache) == (2048, 256, False)
    assert candidates_per_query(paper) == 16  # 8 queries x (positive + hard negative)
    cached = TrainConfig(**OmegaConf.to_container(compose(["train=paper_gradcache"]).train))
    assert (cached.batch_size, cached.accumulation_steps, cached.grad_cache) == (2048, 1, True)
    assert candidates_per_query(cached) == 4096
    assert compose(["train=paper"]).model.max_length == compose([]).model.max_length, "train sets no model keys"


def test_append_eos_changes_the_cell_only_when_turned_off(compose):
    from embedgrid.grid.cellid import cell_name, identity

    default = compose(["model=tiny"])
    assert "append_eos" not in identity(default)
    assert cell_name(compose(["model=tiny", "append_eos=true"])) == cell_name(default)
    assert cell_name(compose(["model=tiny", "append_eos=false"])) != cell_name(default)
