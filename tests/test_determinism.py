"""Determinism: the same seeds on the same machine give the same predictions and metrics.

A tiny comparison runs twice with identical settings; the two runs' predictions.npz arrays must
be bit-identical and run.json's test metrics, best epochs and per-epoch curves equal (timings
aside). Three epochs, so the recipe turns augmentation on and its random draws are covered too.
"""

from __future__ import annotations

from pathlib import Path

from cnnvit import compare
from cnnvit.runs import load_run

SETTINGS = {
    "dataset": "digits",
    "cnn": "convnext-nano",
    "vit": "vit-nano",
    "image_size": 8,
    "patch_size": 2,
    "epochs": 3,
    "batch_size": 32,
    "lr": 2e-3,
    "max_train_samples": 120,
    "max_eval_samples": 40,
    "eval_batch_size": 64,
    "seed": 3,
    "split_seed": 5,
    "precision": "fp32",
}
TIMING_KEYS = {"seconds"}


def _curve(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


def test_same_seeds_give_identical_predictions_and_metrics(tmp_path: Path) -> None:
    first = load_run(compare(output=str(tmp_path / "a"), report=False, **SETTINGS))
    second = load_run(compare(output=str(tmp_path / "b"), report=False, **SETTINGS))
    assert first.manifest["ids"] == second.manifest["ids"]
    for family in ("cnn", "vit"):
        a, b = first.models[family], second.models[family]
        pa, pb = a.predictions(), b.predictions()
        # Bit-identical arrays (the zip container itself carries a write time).
        for name in ("logits", "labels", "ids"):
            assert getattr(pa, name).tobytes() == getattr(pb, name).tobytes(), (family, name)
        assert a.test == b.test
        assert a.results["best_epoch"] == b.results["best_epoch"]
        assert _curve(a.history) == _curve(b.history)
    assert first.comparison == second.comparison
