"""Which precision path a figure came from: the CPU's kernels and native bf16, named beside it."""

from __future__ import annotations

import pytest
import torch

import cnnvit.catalog as catalog
import cnnvit.measure as measure
import cnnvit.runtime as runtime_module
from cnnvit.runtime import resolve_runtime


@pytest.mark.parametrize("native", [True, False])
def test_environment_records_the_cpu_kernels_and_bf16(monkeypatch, native):
    monkeypatch.setattr(measure, "cpu_has_bf16", lambda: native)
    monkeypatch.setattr(measure, "cpu_bf16_speedup", lambda: 0.604)
    env = measure.environment(torch.device("cpu"))
    assert env["cpu_bf16"] is native
    assert env["cpu_bf16_speedup"] == (0.6 if native else None)
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_models_listing_names_an_fp32_host_without_bf16(monkeypatch):
    # A CPU without native bf16 (an AVX2-only host): auto picks fp32 and the listing says so.
    monkeypatch.setattr(runtime_module, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(catalog, "cpu_has_bf16", lambda: False)
    runtime = resolve_runtime("cpu", "auto", "auto")
    assert runtime.precision == "fp32"
    path = catalog.precision_path(runtime)
    assert "no native bf16" in path and path.endswith(", fp32")
    monkeypatch.setattr(catalog, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(catalog, "cpu_bf16_speedup", lambda: 0.6)
    path = catalog.precision_path(resolve_runtime("cpu", "bf16", "auto"))
    assert "native bf16 at 0.60x fp32's matmul speed" in path and path.endswith(", bf16")


@pytest.mark.parametrize(("speedup", "expected"), [(0.6, "fp32"), (1.1, "fp32"), (3.5, "bf16")])
def test_auto_trains_in_bf16_only_where_it_measures_faster(monkeypatch, speedup, expected):
    # AVX-512 BF16 without AMX can multiply bf16 matrices slower than fp32 ones: native support
    # alone must not pick bf16.
    monkeypatch.setattr(runtime_module, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(runtime_module, "cpu_bf16_speedup", lambda: speedup)
    assert runtime_module.resolve_precision("auto", torch.device("cpu")) == expected
    assert runtime_module.resolve_precision("bf16", torch.device("cpu")) == "bf16"  # as asked


def test_the_bf16_speedup_is_a_measured_ratio():
    runtime_module.cpu_bf16_speedup.cache_clear()
    first = runtime_module.cpu_bf16_speedup(size=128, repeats=3)
    assert 0.01 < first < 100
    assert runtime_module.cpu_bf16_speedup(size=128, repeats=3) == first  # measured once


def test_a_run_on_a_host_without_bf16_trains_and_records_fp32(monkeypatch, tmp_path):
    from conftest import MINI

    from cnnvit.pipeline import compare
    from cnnvit.runs import load_run

    monkeypatch.setattr(runtime_module, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(measure, "cpu_has_bf16", lambda: False)
    settings = {**MINI, "precision": "auto", "epochs": 1}
    run = load_run(compare(dataset="digits", output=str(tmp_path / "run"), report=False,
                           **settings))  # fmt: skip
    assert run.resolved["precision"] == "fp32"
    assert run.environment["cpu_bf16"] is False
    assert {m.results["training"]["precision"] for m in run.models.values()} == {"fp32"}
