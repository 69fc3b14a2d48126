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
    env = measure.environment(torch.device("cpu"))
    assert env["cpu_bf16"] is native
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
    assert "native bf16" in catalog.precision_path(resolve_runtime("cpu", "bf16", "auto"))
