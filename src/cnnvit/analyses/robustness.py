"""Robustness probe: accuracy under common corruptions, occlusion and patch shuffling.

Both models see the same seeded test subset under every corruption of corruptions.py: the
eight CIFAR-10-C corruptions at five severities (Hendrycks & Dietterich, ICLR 2019), occlusion
of 15-75% of the image and patch shuffling on 2x2 and 4x4 grids (Naseer et al., NeurIPS 2021).
Corrupted images are rounded back to 8-bit pixels, as CIFAR-10-C stores them. Reported per model:
accuracy per corruption and severity, the mean corruption accuracy over the 40 CIFAR-10-C
conditions, relative robustness (that mean divided by clean accuracy on the same images) and
the accuracy lost to patch shuffling. The difference in relative robustness between the models
gets a paired percentile-bootstrap interval over test images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .context import ProbeContext, batched_logits, save_figure
from .corruptions import (
    ALL_CORRUPTIONS,
    COMMON_CORRUPTIONS,
    SEVERITIES,
    corrupt,
    severity_label,
)

BOOTSTRAP_RESAMPLES = 2000
# 48 conditions x 2 models: the probe's cost is 96 passes over this many images. 128 keeps the
# default run's robustness probe near 12 s on 2 cores; the mean over 40 conditions still rests
# on 5,120 classifications per model.
ROBUSTNESS_IMAGES = 128


def run(context: ProbeContext) -> dict[str, Any]:
    """Accuracy of both models on every corruption and severity over one test subset."""
    index = context.test_subset(min(ROBUSTNESS_IMAGES, context.max_test_images))
    labels = context.test_labels[index]
    # Per family, per condition: a bool per image (right or wrong); "clean" is condition zero.
    correct: dict[str, dict[str, np.ndarray]] = {}
    corrupted_cache: dict[tuple[int, str, int], torch.Tensor] = {}
    for family, probed in context.models.items():
        clean = probed.test_images[index].float() / 255
        rows: dict[str, np.ndarray] = {"clean": _right(probed, clean, labels, context)}
        for name in ALL_CORRUPTIONS:
            for severity in range(1, SEVERITIES[name] + 1):
                # Models with the same input geometry share corrupted images (and their cost).
                key = (id(probed.test_images), name, severity)
                if key not in corrupted_cache:
                    corrupted_cache[key] = corrupt(clean, name, severity, context.seed)
                rows[f"{name}/{severity}"] = _right(probed, corrupted_cache[key], labels, context)
        correct[family] = rows

    models = {family: _summary(rows) for family, rows in correct.items()}
    difference = _bootstrap_difference(correct, context.seed) if len(correct) == 2 else None
    figure = _figure(models, context)
    return {
        "settings": {
            "test_images": len(index),
            "test_images_available": len(context.test_labels),
            "common_corruptions": list(COMMON_CORRUPTIONS),
            "severities": {
                name: [severity_label(name, s) for s in range(1, SEVERITIES[name] + 1)]
                for name in ALL_CORRUPTIONS
            },
            "mean_corruption_accuracy_over": "8 CIFAR-10-C corruptions x 5 severities",
            "pixels": "corrupted images rounded to 8 bits",
        },
        "models": models,
        "relative_robustness_difference_vit_minus_cnn": difference,
        "claims": {
            metric: {family: m[metric] for family, m in models.items()}
            for metric in (
                "relative_robustness",
                "mean_corruption_accuracy",
                "patch_shuffle_drop",
                "clean_accuracy",
            )
        },  # fmt: skip
        "figures": [figure] if figure else [],
    }


def _right(probed: Any, x: torch.Tensor, labels: torch.Tensor, context: ProbeContext) -> np.ndarray:
    """Whether the model classifies each image right; x float in [0, 1]."""
    pixels = (x * 255).round()  # 8-bit pixels, still float for the preprocessor
    logits = batched_logits(probed, pixels, context.runtime)
    return (logits.argmax(1) == labels).numpy()


def _summary(rows: dict[str, np.ndarray]) -> dict[str, Any]:
    clean = float(rows["clean"].mean())
    per_corruption: dict[str, list[float]] = {}
    for name in ALL_CORRUPTIONS:
        per_corruption[name] = [
            float(rows[f"{name}/{s}"].mean()) for s in range(1, SEVERITIES[name] + 1)
        ]
    common = [a for name in COMMON_CORRUPTIONS for a in per_corruption[name]]
    mean_corruption = float(np.mean(common))
    shuffled_4x4 = per_corruption["patch_shuffle"][-1]
    return {
        "clean_accuracy": clean,
        "accuracy": per_corruption,  # {corruption: [accuracy at severity 1..S]}
        "mean_accuracy_per_corruption": {n: float(np.mean(a)) for n, a in per_corruption.items()},
        "mean_corruption_accuracy": mean_corruption,
        "relative_robustness": mean_corruption / clean if clean > 0 else float("nan"),
        "occlusion_mean_accuracy": float(np.mean(per_corruption["occlusion"])),
        "patch_shuffle_accuracy": {
            "2x2": per_corruption["patch_shuffle"][0],
            "4x4": shuffled_4x4,
        },  # fmt: skip
        # Accuracy points (as a fraction) lost when the 4x4 grid of cells is shuffled.
        "patch_shuffle_drop": clean - shuffled_4x4,
    }


def _bootstrap_difference(correct: dict[str, dict[str, np.ndarray]], seed: int) -> dict | None:
    """ViT minus CNN relative robustness, 95% paired percentile bootstrap over test images."""
    from scipy.stats import bootstrap

    keys = [f"{n}/{s}" for n in COMMON_CORRUPTIONS for s in range(1, SEVERITIES[n] + 1)]

    def per_image(family: str) -> tuple[np.ndarray, np.ndarray]:
        rows = correct[family]
        return rows["clean"].astype(float), np.mean([rows[k] for k in keys], axis=0)

    cnn_clean, cnn_corrupt = per_image("cnn")
    vit_clean, vit_corrupt = per_image("vit")

    def statistic(cc: np.ndarray, cm: np.ndarray, vc: np.ndarray, vm: np.ndarray,
                  axis: int = -1) -> np.ndarray:  # fmt: skip
        with np.errstate(divide="ignore", invalid="ignore"):
            return vm.mean(axis) / vc.mean(axis) - cm.mean(axis) / cc.mean(axis)

    point = float(statistic(cnn_clean, cnn_corrupt, vit_clean, vit_corrupt))
    if not np.isfinite(point):
        return None
    result = bootstrap(
        (cnn_clean, cnn_corrupt, vit_clean, vit_corrupt),
        statistic,
        paired=True,
        vectorized=True,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return {
        "estimate": point,
        "ci95": [float(low), float(high)],
        "method": f"paired percentile bootstrap over test images, {BOOTSTRAP_RESAMPLES} resamples",
    }


def _figure(models: dict[str, Any], context: ProbeContext) -> str | None:
    path = context.figure_path("robustness-severity.png")
    if path is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(ALL_CORRUPTIONS)
    columns = 5
    rows = (len(names) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 2.5 * rows), sharey=True)
    for ax, name in zip(axes.flat, names, strict=False):
        levels = list(range(0, SEVERITIES[name] + 1))
        for family, result in models.items():
            curve = [result["clean_accuracy"], *result["accuracy"][name]]
            label = f"{family.upper()} {context.models[family].name}"
            ax.plot(levels, curve, "o-", markersize=3, label=label)
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.set_xticks(levels)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    axes.flat[0].set_ylabel("accuracy")
    axes.flat[0].legend(fontsize=7)
    figure.supxlabel("severity (0 = clean)", fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)
