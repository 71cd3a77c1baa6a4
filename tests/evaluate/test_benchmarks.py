"""mteb's benchmarks as evaluation presets: eval=mteb_eng_v2, eval=benchmark eval.benchmark=NAME."""
from __future__ import annotations

import pytest

from embedgrid.errors import ConfigError, MissingAsset
from tests.helpers import launch

ENG_V2 = "MTEB(eng, v2)"


def _eval(compose, *overrides):
    from embedgrid.grid.schema import eval_config

    return eval_config(compose(["model=tiny", *overrides]))


def test_mteb_eng_v2_preset_is_the_generic_benchmark_and_mtebs_41_tasks(compose):
    import mteb

    preset = _eval(compose, "eval=mteb_eng_v2")
    generic = _eval(compose, "eval=benchmark", f"eval.benchmark='{ENG_V2}'")
    assert len(preset.tasks) == 41
    assert preset.tasks == generic.tasks == [t.metadata.name for t in mteb.get_benchmark(ENG_V2).tasks]
    assert preset.instructions == generic.instructions
    assert preset.instruction_scope == "query"  # the paper's convention: queries + every text of symmetric tasks


def test_benchmark_instructions_follow_the_paper_convention(compose):
    cfg = _eval(compose, "eval=mteb_eng_v2", "+eval.instructions.STS12=mine")
    assert set(cfg.instructions) >= set(cfg.tasks)
    assert cfg.instructions["STSBenchmark"] == "Retrieve semantically similar text."  # the paper's STS instruction
    assert cfg.instructions["ArguAna"] == "Given a claim, find documents that refute the claim"  # mteb's (e5)
    assert cfg.instructions["FEVERHardNegatives"].startswith("Given a claim")  # adapted from FEVER
    assert cfg.instructions["STS12"] == "mine"  # the user's own wins


def test_benchmark_tasks_keep_the_benchmarks_language_subsets():
    from embedgrid.evaluate.run import resolve_tasks

    (task,) = resolve_tasks(["STS17"], benchmark=ENG_V2)
    assert task.hf_subsets == ["en-en"]
    (whole,) = resolve_tasks(["STS17"])
    assert len(whole.hf_subsets) > 1


def test_benchmark_errors_name_key_and_choices(compose):
    with pytest.raises(ConfigError, match=r"eval.benchmark='NoSuchBench'.*MTEB\(eng, v2\)"):
        _eval(compose, "eval=benchmark", "eval.benchmark=NoSuchBench")
    with pytest.raises(ConfigError, match=r"eval=benchmark needs eval.benchmark=NAME, e.g. eval.benchmark='MTEB"):
        _eval(compose, "eval=benchmark")
    with pytest.raises(ConfigError, match="not text-only"):
        _eval(compose, "eval=benchmark", "eval.benchmark='MIEB(lite)'")
    with pytest.raises(ConfigError, match=r"\['NotInIt'\] are not tasks of eval.benchmark"):
        _eval(compose, "eval=mteb_eng_v2", "eval.tasks=[STS12,NotInIt]")
    subset = _eval(compose, "eval=mteb_eng_v2", "eval.tasks=[STS12,ArguAna]")
    assert subset.tasks == ["ArguAna", "STS12"]  # the benchmark's order


def test_offline_missing_datasets_are_named_before_training(compose, tmp_path, monkeypatch):
    from embedgrid.evaluate.suite import require_data

    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    cfg = _eval(compose, "eval=mteb_eng_v2", "eval.tasks=[STS12,ArguAna]")
    with pytest.raises(MissingAsset, match=r"(?s)ArguAna: mteb/arguana@.*STS12: mteb/sts12-sts@.*Fix.*ArguAna.*STS12"):
        require_data(cfg)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    require_data(cfg)  # online: mteb downloads; nothing to refuse
    require_data(_eval(compose, "eval=offline_small"))  # offline tasks need no hub


@pytest.mark.slow
def test_dry_run_lists_the_benchmarks_tasks(launch_env, tmp_path):
    proc = launch(["model=tiny", "eval=mteb_eng_v2", "dry_run=true", f"hydra.run.dir={tmp_path / 'cell'}"],
                  launch_env)
    assert "MTEB(eng, v2)'): 41 tasks" in proc.stdout
    assert "STS (9): BIOSSES, SICK-R" in proc.stdout and "Summarization (1): SummEvalSummarization.v2" in proc.stdout
    assert not (tmp_path / "cell" / "cell.json").exists()
