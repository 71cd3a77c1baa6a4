"""eval.shards: the cost estimate and the balanced partition of a cell's tasks (pure), the setting's checks, and
that it changes neither the cell's name nor the evaluation-settings hash."""
from __future__ import annotations

import pytest

from embedgrid.evaluate.shards import estimate_costs, partition, plan_shards, stats_characters


def test_partition_is_greedy_longest_first_and_balanced():
    costs = {"a": 5.0, "b": 4.0, "c": 3.0, "d": 3.0, "e": 2.0, "f": 1.0}
    shards = partition(costs, 2)
    assert shards == [["a", "d", "f"], ["b", "c", "e"]]  # LPT: a|b, c->b(4), d->a(5), e->b... loads 9 and 9
    assert sorted(sum(costs[t] for t in s) for s in shards) == [9.0, 9.0]
    assert partition(costs, 2) == shards, "deterministic"
    reverse = partition(dict(reversed(list(costs.items()))), 2)  # ties go by the suite's order
    assert reverse == [["f", "c", "a"], ["e", "d", "b"]]


def test_partition_keeps_the_suite_order_and_never_makes_an_empty_shard():
    assert partition({"x": 1.0, "y": 1.0, "z": 1.0}, 2) == [["x", "z"], ["y"]]
    assert partition({"x": 1.0, "y": 2.0}, 5) == [["y"], ["x"]]
    assert partition({"only": 3.0}, 1) == [["only"]]
    with pytest.raises(ValueError):
        partition({"x": 1.0}, 0)


def test_one_huge_task_gets_a_shard_of_its_own():
    costs = {"MSMARCO": 1e9, **{f"STS{i}": 1e5 for i in range(6)}}
    shards = partition(costs, 3)
    assert ["MSMARCO"] in shards and sorted(len(s) for s in shards) == [1, 3, 3]


def test_stats_characters_reads_mtebs_statistics_of_every_split():
    retrieval = {"test": {"num_samples": 400, "number_of_characters": 18540}}
    classification = {"test": {"num_samples": 200, "text_statistics": {"total_text_length": 76723}},
                       "train": {"num_samples": 4000, "text_statistics": {"total_text_length": 1587412}}}
    assert stats_characters(retrieval) == (18540.0, 400.0)
    assert stats_characters(classification) == (76723.0 + 1587412.0, 4200.0)
    assert stats_characters(None) == (None, None) and stats_characters({"test": {}}) == (None, None)


def test_unknown_sizes_are_filled_in_and_said_so():
    costs, basis = estimate_costs({"a": (1000.0, 10.0), "b": (None, 20.0), "c": (None, None)})
    assert costs == {"a": 1000.0, "b": 2000.0, "c": 1000.0}  # 100 characters per sample; the mean
    assert "b, c" in basis
    costs, basis = estimate_costs({"a": (None, None), "b": (None, 5.0)})
    assert costs == {"a": 1.0, "b": 1.0} and basis.startswith("equal task counts")


def test_plan_of_offline_tasks_counts_their_local_data():
    from embedgrid.evaluate.run import resolve_tasks

    names = ["LeeDocumentSTS", "WordSim353STS", "FoodSearchReranking"]
    tasks = resolve_tasks(names, max_samples=24)
    plan = plan_shards(tasks, 2, local=set(names))
    assert all(plan.costs[n] > 0 for n in names) and "counted from local data" in plan.basis
    assert plan.costs["LeeDocumentSTS"] > plan.costs["FoodSearchReranking"] > plan.costs["WordSim353STS"]
    assert plan.shards == [["LeeDocumentSTS"], ["WordSim353STS", "FoodSearchReranking"]]
    plan = plan_shards(resolve_tasks(names, max_samples=24), 2, local=set())  # nothing known: equal counts
    assert plan.basis.startswith("equal task counts") and sorted(map(len, plan.shards)) == [1, 2]


def test_hub_tasks_are_costed_from_mtebs_shipped_statistics():
    import mteb

    tasks = [mteb.get_task(name) for name in ("SciFact", "STS12", "BIOSSES")]
    plan = plan_shards(tasks, 2, local=set())
    assert plan.costs["SciFact"] > plan.costs["STS12"] > plan.costs["BIOSSES"] > 0
    assert plan.shards == [["SciFact"], ["STS12", "BIOSSES"]]


@pytest.mark.parametrize("value", ["0", "-2"])
def test_a_bad_shard_count_is_refused_naming_key_value_and_fix(compose, value):
    from embedgrid.errors import ConfigError
    from embedgrid.grid.schema import check

    with pytest.raises(ConfigError) as error:
        check(compose(["model=tiny", "logger=none", "eval=offline_small", f"eval.shards={value}"]))
    assert "eval.shards=" in str(error.value) and "integer >= 1" in str(error.value)


def test_a_shard_count_that_is_no_integer_fails_at_compose_time(compose):
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import ValidationError

    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose(["model=tiny", "eval.shards=two"])


def test_shards_change_neither_the_cell_nor_the_evaluation_settings(compose):
    from embedgrid.grid.schema import eval_config
    from embedgrid.evaluate.run import settings_hash
    from embedgrid.grid.cellid import cell_name

    plain, sharded = compose(["model=tiny"]), compose(["model=tiny", "eval.shards=4"])
    assert eval_config(sharded).shards == 4 and eval_config(plain).shards == 1
    assert cell_name(plain) == cell_name(sharded)
    assert settings_hash(eval_config(plain)) == settings_hash(eval_config(sharded))
