"""Learning rate per model, chosen on the validation split with an equal, counted budget.

One shared learning rate handicaps whichever family it suits less. From scratch, a ViT's
usable AdamW rates sit lower: transformers lose stability at high rates as attention logits grow
(Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer training
instabilities", shown on small models), and on this project's digits a vit-micro at batch 64
failed to learn at 1e-3 where 5e-4 trained. CNNs with batch norm tolerate higher rates (their
convolution weights are scale-invariant, so the effective step shrinks as they grow; ConvNeXt
trains with AdamW at 4e-3, Liu et al. 2022).
So each family gets a log grid of four rates a factor of two apart, the ViT's an octave lower
(CNN 5e-4..4e-3, ViT 2.5e-4..2e-3; a tenth of that for pretrained hub models, which are
fine-tuned). The grids share three rates, so two families that want the same rate can both get
it. The rate is chosen by successive halving: every rate trains a short run of L
images from the model's initial weights, the best two train again for 2L, and the best of those
wins. Trials are ranked by validation accuracy, ties by validation loss. Each trial uses the
full run's regularisation and its warm-up + cosine schedule compressed to the trial's length.
L depends only on the training budget (epochs x training images) and the batch size, so both
models get exactly the same tuning budget, recorded as `images_used`. The tuner receives the
training and validation tensors only: it never sees test data.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate import Accelerator

from ..config import TrainConfig
from ..data.preprocess import BatchPreprocessor
from ..runtime import Runtime
from .loop import train_model
from .recipe import fixed_recipe_config, resolve_recipe

GRIDS = {"cnn": (5e-4, 1e-3, 2e-3, 4e-3), "vit": (2.5e-4, 5e-4, 1e-3, 2e-3)}
PRETRAINED_SCALE = 0.1  # fine-tuning a hub model wants about a tenth of the from-scratch rate
KEEP = 2  # rates kept after the first round
MIN_TRIAL_STEPS = 24  # a first-round trial is at least this many optimizer steps
BUDGET_SHARE = 1 / 32  # a first-round trial is at least this share of the full training budget
MAX_TRIAL_SHARE = 1 / 4  # ... and at most this share


@dataclass(frozen=True)
class TuningResult:
    """What tuning tried and chose; `to_dict()` is what run.json records."""

    chosen_lr: float
    trials: list[dict[str, Any]] = field(default_factory=list)  # lr, round, images, val acc/loss
    images_used: int = 0  # images trained over all trials: the tuning budget spent
    method: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def trial_images(epochs: int, n_train: int, batch_size: int) -> tuple[int, int]:
    """Images trained by one first-round trial and by one second-round trial.

    A function of the budget alone, so two models trained on the same split always get the
    same tuning budget: 4 trials of L plus 2 of 2L, L = budget/32 but at least 24 steps and at
    most a quarter of the budget.
    """
    budget = epochs * n_train
    first = max(round(budget * BUDGET_SHARE), MIN_TRIAL_STEPS * batch_size)
    first = max(1, min(first, round(budget * MAX_TRIAL_SHARE)))
    return first, 2 * first


def tuning_budget(epochs: int, n_train: int, batch_size: int, candidates: int = 4) -> int:
    """Images trained over all trials (before a short split rounds them to whole epochs)."""
    first, second = trial_images(epochs, n_train, batch_size)
    return candidates * first + min(KEEP, candidates) * second


def _trial_split(
    train: tuple[torch.Tensor, torch.Tensor], images: int, seed: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
    """The training images of one trial and its epochs: `images` drawn once, or repeated.

    Training one epoch on a random subset of `images` is the first `images` steps of a run on
    the full set; when the set is smaller, the trial makes several passes over part of it.
    """
    count = len(train[1])
    epochs = max(1, math.ceil(images / count))
    size = min(count, math.ceil(images / epochs))
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:size]
    return (train[0][order], train[1][order]), epochs


def tune_learning_rate(
    make_model: Callable[[], tuple[torch.nn.Module, BatchPreprocessor]],
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    config: TrainConfig,
    accelerator: Accelerator,
    runtime: Runtime,
    log: Callable[[str], None] | None = None,
    *,
    family: str,
    pretrained: bool = False,
    name: str = "model",
) -> TuningResult:
    """Choose the peak learning rate for one model on `validation`; see the module docstring.

    `make_model` returns a fresh (model, preprocessor) with the same initial weights each call.
    A number in `config.lr` is returned as it is, with no trials.
    """
    log = log or (lambda line: None)
    if config.lr != "auto":
        return TuningResult(
            chosen_lr=float(config.lr),
            method="fixed",
            reason=f"--lr {float(config.lr):g} was given, so no rate was tuned",
        )
    grid = [lr * (PRETRAINED_SCALE if pretrained else 1.0) for lr in GRIDS[family]]
    n_train = len(train[1])
    recipe = resolve_recipe(config, n_train)
    lengths = trial_images(config.epochs, n_train, config.batch_size)
    trials: list[dict[str, Any]] = []
    candidates = grid
    for round_number, images in enumerate(lengths, start=1):
        subset, epochs = _trial_split(train, images, config.seed + 1)
        for lr in candidates:
            model, preprocess = make_model()
            trial_config = fixed_recipe_config(config, recipe, epochs=epochs, lr=lr)
            result = train_model(
                model, preprocess, subset, validation, trial_config, accelerator, runtime,
                name=f"{name} lr {lr:g}", log=lambda line: None,
            )  # fmt: skip
            best = result.history[result.best_epoch - 1]
            trials.append({
                "lr": lr,
                "round": round_number,
                "images_trained": epochs * len(subset[1]),
                "val_accuracy": best["val_accuracy"],
                "val_loss": best["val_loss"],
            })  # fmt: skip
            log(
                f"[{name}] tuning round {round_number}: lr {lr:g}, "
                f"{epochs * len(subset[1])} images -> val acc {best['val_accuracy']:.4f} "
                f"loss {best['val_loss']:.4f}"
            )
            del model, result
            accelerator.free_memory()  # drop accelerate's references to the trial's objects
        ranked = sorted(
            (t for t in trials if t["round"] == round_number),
            key=lambda t: (-t["val_accuracy"], t["val_loss"]),
        )
        candidates = [t["lr"] for t in ranked[:KEEP]]
    winner = ranked[0]
    used = sum(t["images_trained"] for t in trials)
    first, second = lengths
    return TuningResult(
        chosen_lr=winner["lr"],
        trials=trials,
        images_used=used,
        method=(
            f"successive halving on the validation split: {len(grid)} learning rates "
            f"({', '.join(f'{lr:g}' for lr in grid)}) trained for {first} images each from the "
            f"same initial weights, the best {KEEP} again for {second}; ranked by validation "
            "accuracy, ties by validation loss; trials use the full run's regularisation and "
            "its schedule compressed to their length"
        ),
        reason=(
            f"lr {winner['lr']:g} had the best validation accuracy in the last round "
            f"({winner['val_accuracy']:.2%}, loss {winner['val_loss']:.4f}); "
            f"{used} training images spent on tuning"
        ),
    )
