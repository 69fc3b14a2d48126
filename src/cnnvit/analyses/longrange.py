"""Long-range probe: a synthetic task that only a model relating distant regions can solve.

Each image holds small binary patterns in its four corners on a noisy background; the label
says whether the top-left and bottom-right patterns are the same, so neither corner alone
carries any information, and the other two corners are distractors. Same-different relations
between distant parts are known to be hard for CNNs (Kim, Ricci & Serre, "Not-so-CLEVR",
Interface Focus 2018) and are what global self-attention should find easy. Fresh models of
the run's presets are trained on it with the run's recipe (augmentation off: shifts would move
the patterns out of their corners), both on the same images, and scored on a held-out set, with
Wilson intervals and McNemar's exact test on the paired predictions. The task is kept small
(16 px, 1,024 training images, 6 epochs) to fit the time budget.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ..evaluation import mcnemar_p_value, predict
from ..models.build import build_model
from ..models.presets import PRESETS, default_pair_for
from ..runtime import make_accelerator, place_model
from ..training import Hooks, train_model
from ..training.recipe import resolve_recipe
from .context import ProbeContext, recipe_for_probe

IMAGE_SIZE = 16  # pixels; a multiple of every preset's stride
PATTERN_SIDE = 4  # pixels: the corner patterns
PATTERNS = 8  # distinct patterns (64 ordered pairs)
TRAIN_IMAGES, VALIDATION_IMAGES, TEST_IMAGES = 1024, 256, 512
EPOCHS = 6


def make_task(
    count: int, seed: int, pattern_seed: int = 0, image_size: int = IMAGE_SIZE
) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` uint8 images (N, 3, S, S) and labels (1: corner patterns equal, 0: different).

    `pattern_seed` fixes the set of patterns (the task); `seed` draws the images from it, so
    train, validation and test splits share patterns but not images. Labels are balanced.
    Background noise is uniform 0..40 and patterns are white on black, one greyscale picture
    copied to three channels.
    """
    patterns = (
        torch.rand(
            PATTERNS,
            PATTERN_SIDE,
            PATTERN_SIDE,
            generator=torch.Generator().manual_seed(pattern_seed),
        )
        < 0.5
    )
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 2
    labels = labels[torch.randperm(count, generator=generator)]
    first = torch.randint(PATTERNS, (count,), generator=generator)
    # A different pattern: shift the first by 1..PATTERNS-1 (mod PATTERNS), uniformly.
    shift = torch.randint(1, PATTERNS, (count,), generator=generator)
    second = torch.where(labels == 1, first, (first + shift) % PATTERNS)
    # Distractors: patterns from the same set in the other two corners, unrelated to the label,
    # so "are two corners alike" is not enough; the two that matter must be compared.
    distractors = torch.randint(PATTERNS, (count, 2), generator=generator)
    images = torch.randint(0, 41, (count, image_size, image_size), generator=generator)
    images = images.to(torch.uint8)
    side, far = PATTERN_SIDE, image_size - PATTERN_SIDE
    images[:, :side, :side] = patterns[first].to(torch.uint8) * 255
    images[:, far:, far:] = patterns[second].to(torch.uint8) * 255
    images[:, :side, far:] = patterns[distractors[:, 0]].to(torch.uint8) * 255
    images[:, far:, :side] = patterns[distractors[:, 1]].to(torch.uint8) * 255
    return images.unsqueeze(1).repeat(1, 3, 1, 1), labels.long()


def _preset_for(name: str, family: str, image_size: int) -> str:
    """The run's preset if it is one (and fits the task's size), else the micro preset."""
    preset = PRESETS.get(name)
    if preset is not None and preset.family == family and image_size % preset.stride == 0:
        return name
    cnn, vit = default_pair_for("micro")
    return cnn if family == "cnn" else vit


def run(context: ProbeContext) -> dict[str, Any]:
    """Train fresh CNN and ViT presets on the same-different task; test accuracy of each."""
    from scipy.stats import binomtest

    seed = context.seed
    # One pattern set (the task), three disjoint draws of images from it.
    train = make_task(TRAIN_IMAGES, 3 * seed + 1, pattern_seed=seed)
    validation = make_task(VALIDATION_IMAGES, 3 * seed + 2, pattern_seed=seed)
    test_images, test_labels = make_task(TEST_IMAGES, 3 * seed + 3, pattern_seed=seed)
    runtime = context.runtime
    models: dict[str, Any] = {}
    right: dict[str, torch.Tensor] = {}
    for family, probed in context.models.items():
        spec = _preset_for(probed.name, family, IMAGE_SIZE)
        built = build_model(spec, family, ["different", "same"], IMAGE_SIZE, runtime.attention,
                            seed)  # fmt: skip
        model, preprocess = place_model(built, runtime)
        config = recipe_for_probe(context.train_config, probed.training, epochs=EPOCHS,
                                  augment=False, compile=False, report_to="none")  # fmt: skip
        recipe = resolve_recipe(config, built.recipe, len(train[1]))
        start = time.perf_counter()
        result = train_model(model, preprocess, train, validation, recipe,
                             make_accelerator(runtime), runtime,
                             Hooks(name=f"longrange-{family}", log=lambda line: None))  # fmt: skip
        seconds = time.perf_counter() - start
        with runtime.autocast():
            logits, _ = predict(result.model, preprocess, test_images, test_labels, 512)
        right[family] = logits.argmax(1) == test_labels
        correct = int(right[family].sum())
        interval = binomtest(correct, len(test_labels)).proportion_ci(method="wilson")
        models[family] = {
            "preset": spec,
            "accuracy": correct / len(test_labels),
            "ci95": [float(interval.low), float(interval.high)],
            "best_epoch": result.best_epoch,
            "best_validation_accuracy": max(r["val_accuracy"] for r in result.history),
            "train_seconds": seconds,
        }
    comparison = None
    if len(right) == 2:
        only_cnn = int((right["cnn"] & ~right["vit"]).sum())
        only_vit = int((right["vit"] & ~right["cnn"]).sum())
        comparison = {
            "accuracy_difference_vit_minus_cnn": models["vit"]["accuracy"]
            - models["cnn"]["accuracy"],
            "only_cnn_correct": only_cnn,
            "only_vit_correct": only_vit,
            "mcnemar_p_value": mcnemar_p_value(only_cnn, only_vit),
        }
    return {
        "settings": {
            "task": "same/different binary patterns in the top-left and bottom-right corners, "
            "distractor patterns in the other two",
            "image_size": IMAGE_SIZE,
            "pattern_side": PATTERN_SIDE,
            "patterns": PATTERNS,
            "train_images": TRAIN_IMAGES,
            "validation_images": VALIDATION_IMAGES,
            "test_images": TEST_IMAGES,
            "epochs": EPOCHS,
            "recipe": "the run's (lr, batch size, optimiser, schedule, label smoothing), "
            "augmentation off",
            "chance_accuracy": 0.5,
            "interval": "Wilson 95% (scipy binomtest)",
        },
        "models": models,
        "comparison": comparison,
        "claims": {"long_range_accuracy": {f: m["accuracy"] for f, m in models.items()}},
        "figures": [],
    }
