"""eval.compile=auto: compiled encoding only where the suite's texts exceed the device's measured break-even."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from embedgrid.errors import ConfigError
from embedgrid.evaluate import autocompile


def _task(texts: int):
    return SimpleNamespace(metadata=SimpleNamespace(descriptive_stats={"test": {"num_samples": texts}}))


def never():
    raise AssertionError("the tasks were resolved although the decision did not need them")


def test_explicit_settings_pass_through_and_bad_ones_are_named():
    assert autocompile.decide(True, "cpu", 64, never)[0] is True
    assert autocompile.decide(False, "cpu", 4096, never)[0] is False
    from embedgrid.evaluate.config import EvalConfig

    assert EvalConfig(tasks=["LeeDocumentSTS"]).compile == "auto"  # the default
    with pytest.raises(ConfigError, match="eval.compile='sometimes'; valid: true, false, auto"):
        EvalConfig(tasks=["LeeDocumentSTS"], compile="sometimes")


def test_auto_compiles_only_beyond_the_break_even_with_a_compiler(monkeypatch):
    threshold = autocompile.BREAK_EVEN_TEXTS["cpu"]
    monkeypatch.setattr(autocompile, "compiler_present", lambda device: True)
    monkeypatch.setattr(autocompile, "cpu_has_native_bf16", lambda: True)
    on, why = autocompile.decide("auto", "cpu", 576, lambda: [_task(threshold), _task(1)])
    assert on and "break-even" in why
    off, why = autocompile.decide("auto", "cpu", 576, lambda: [_task(threshold // 2)])
    assert not off and f"< the cpu break-even of {threshold:,}" in why
    assert autocompile.decide("auto", "cpu", 64, never) == (
        False, f"auto: the model's width 64 < {autocompile.MIN_WIDTH} (compiled encoding measured slower per text)")
    monkeypatch.setattr(autocompile, "compiler_present", lambda device: False)  # never where a compiler is missing
    assert autocompile.decide("auto", "cpu", 576, never) == (
        False, "auto: no C++ compiler on PATH (g++, c++, clang++ or CXX)")


def test_auto_never_compiles_on_a_device_without_a_measured_break_even():
    assert autocompile.decide("auto", "cuda", 4096, never) == (False, "auto: no measured break-even for cuda devices")


def test_an_offline_tasks_texts_come_from_its_own_data():
    from embedgrid.evaluate.tasks import OFFLINE_TASKS

    small = autocompile.task_texts(OFFLINE_TASKS["LeeDocumentSTS"](max_samples=10))
    assert 0 < small < autocompile.task_texts(OFFLINE_TASKS["LeeDocumentSTS"](max_samples=50))


def test_auto_never_compiles_on_a_cpu_without_native_bf16(monkeypatch):
    """There compiled encoding was measured slower per text than eager: no number of texts pays it back."""
    monkeypatch.setattr(autocompile, "compiler_present", lambda device: True)
    monkeypatch.setattr(autocompile, "cpu_has_native_bf16", lambda: False)
    off, why = autocompile.decide("auto", "cpu", 576, never)
    assert not off and "no native bf16" in why
    assert autocompile.decide(True, "cpu", 576, never)[0] is True  # asked for explicitly: still compiled
