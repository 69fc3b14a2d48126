"""What --precision auto picks on a CPU, whatever this host's CPU is: with the capability check
patched to say "no native bf16" (an AVX2-only host) auto is fp32 and a real run records fp32;
with it patched to say "native and fast" auto is bf16. The rest of the suite pins fp32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import MINI

import cnnvit.runtime as runtime_module
from cnnvit import compare
from cnnvit.runs import load_run

CPU = torch.device("cpu")


def test_auto_without_native_bf16_is_fp32_and_the_run_records_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(runtime_module, "cpu_has_bf16", lambda: False)
    assert runtime_module.resolve_precision("auto", CPU) == "fp32"
    # A real compare, told "auto", on the patched host: one epoch of a few digits.
    settings = {**MINI, "precision": "auto", "epochs": 1, "max_train_samples": 60,
                "max_eval_samples": 30}  # fmt: skip
    run = load_run(
        compare(dataset="digits", output=str(tmp_path / "run"), report=False, **settings)
    )
    assert run.config.train.precision == "auto"  # what was asked
    assert run.resolved["precision"] == "fp32"  # what it resolved to
    assert {family: model.training["precision"] for family, model in run.models.items()} == {
        "cnn": "fp32",
        "vit": "fp32",
    }


def test_auto_with_native_fast_bf16_is_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "cpu_has_bf16", lambda: True)
    # auto also measures bf16 against fp32 on the CPU (cpu_bf16_speedup): say it is fast.
    monkeypatch.setattr(runtime_module, "cpu_bf16_speedup", lambda: 3.5, raising=False)
    assert runtime_module.resolve_precision("auto", CPU) == "bf16"
    resolved = runtime_module.resolve_runtime("cpu", "auto", "auto")
    assert (resolved.precision, resolved.attention) == ("bf16", "eager")  # eager: faster in bf16
    assert runtime_module.resolve_precision("fp32", CPU) == "fp32"  # an explicit choice stands
