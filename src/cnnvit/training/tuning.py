"""Learning rate per model: the recipe row's usual rate, or chosen on validation (`--lr auto`).

`--lr auto` is successive halving over the row's four rates an octave apart, ending in one test
against the usual rate: every rate trains L images from the model's initial weights; the usual
rate and the best other one (validation accuracy, ties by loss) train again for 2L, and the
challenger wins only if its validation accuracy beats the usual rate's by more than `TIE_Z`
standard errors of the difference of two accuracies on the same n images,
sqrt((p1 (1 - p1) + p2 (1 - p2)) / n): two-sided 5%, Bonferroni-corrected for the three rates
the challenger was picked from. L = budget / 32, at least 16 steps and at most budget / 4, so
both models get the same counted tuning budget (`images_used`); a pretrained model's row caps
L at budget / 16, so its tuning costs at most half its training. A trial is the start of the run
(`Recipe.trial`): its warm-up length in steps (at most half the trial), no regularisation yet,
then a cosine decay. The tuner never sees test data; why the rates are what they are, and what
tuning has chosen, is in BENCHMARKS.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import torch
from accelerate import Accelerator

from ..data.preprocess import BatchPreprocessor
from ..runtime import Runtime
from .loop import Hooks, train_model
from .recipe import Recipe

TIE_Z = NormalDist().inv_cdf(1 - 0.05 / (2 * 3))  # 2.39: 5% two-sided over three alternatives
MIN_TRIAL_STEPS = 16  # a first-round trial is at least this many optimizer steps
BUDGET_SHARE = 1 / 32  # a first-round trial is this share of the full training budget ...
MAX_TRIAL_SHARE = 1 / 4  # ... but at most this share


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


def untuned(option: float | str, recipe: Recipe, given: float | str | None = None) -> TuningResult:
    """The rate of `--lr usual` (the recipe row's) or of a number, with no trials; `given` is
    the whole option when `option` is this family's share of a per-family one."""
    if option == "usual":
        reason = f"--lr usual (the default): the rate of the model's recipe row, {recipe.lr:g}"
        return TuningResult(chosen_lr=recipe.lr, method="usual", reason=reason)
    if isinstance(given, str) and given not in ("auto", "usual"):  # one rate per family
        reason = f"--lr {given} was given (this family's {float(option):g}), so no rate was tuned"
    else:
        reason = f"--lr {float(option):g} was given, so no rate was tuned"
    return TuningResult(chosen_lr=float(option), method="fixed", reason=reason)


def trial_images(
    epochs: int, n_train: int, batch_size: int, max_share: float = MAX_TRIAL_SHARE
) -> tuple[int, int]:
    """Images trained by one first-round trial and by one second-round trial: a function of the
    budget alone, so two models trained on the same split get the same tuning budget.
    `max_share` caps a first-round trial (a pretrained row's 1/16: all trials cost at most
    half the training budget)."""
    budget = epochs * n_train
    first = max(round(budget * BUDGET_SHARE), MIN_TRIAL_STEPS * batch_size)
    first = max(1, min(first, math.floor(budget * max_share)))
    return first, 2 * first


def _trial_split(
    train: tuple[torch.Tensor, torch.Tensor], images: int, seed: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
    """One trial's training images and epochs: `images` drawn once (the first steps of a run on
    the full set), or, from a smaller set, several passes over part of it."""
    count = len(train[1])
    epochs = max(1, math.ceil(images / count))
    size = min(count, math.ceil(images / epochs))
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:size]
    return (train[0][order], train[1][order]), epochs


def trial_warmup(full_warmup_steps: int, images: int, epochs: int, batch_size: int) -> float:
    """A trial's warm-up fraction: the full run's warm-up steps, at most half the trial's."""
    steps = max(1, math.ceil(images / batch_size) * epochs)
    return max(1, min(full_warmup_steps, steps // 2)) / steps


def tune_learning_rate(
    make_model: Callable[[], tuple[torch.nn.Module, BatchPreprocessor]],
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    recipe: Recipe,
    grid: tuple[float, ...],
    accelerator: Accelerator,
    runtime: Runtime,
    hooks: Hooks | None = None,
    max_share: float = MAX_TRIAL_SHARE,
) -> TuningResult:
    """Choose the peak rate for `recipe` (whose `lr` is the usual one, in `grid`) on
    `validation`, as the module docstring says. `make_model` returns a fresh (model,
    preprocessor) with the same initial weights each call."""
    hooks, usual = hooks or Hooks(), recipe.lr
    if not any(math.isclose(lr, usual) for lr in grid):
        raise ValueError(f"the usual rate {usual:g} is not in the grid {grid}")
    n_train, n_val = len(train[1]), len(validation[1])
    lengths = trial_images(recipe.epochs, n_train, recipe.batch_size, max_share)
    full_warmup = round(math.ceil(n_train / recipe.batch_size) * recipe.epochs
                        * recipe.warmup_fraction)  # fmt: skip
    trials: list[dict[str, Any]] = []
    candidates = list(grid)
    for round_number, images in enumerate(lengths, start=1):
        subset, epochs = _trial_split(train, images, recipe.seed + 1)
        warmup = trial_warmup(full_warmup, len(subset[1]), epochs, recipe.batch_size)
        for lr in candidates:
            model, preprocess = make_model()
            quiet = Hooks(name=f"{hooks.name} lr {lr:g}", log=lambda line: None)
            trial_recipe = recipe.trial(epochs, lr, warmup)
            result = train_model(model, preprocess, subset, validation, trial_recipe,
                                 accelerator, runtime, quiet)  # fmt: skip
            best = result.history[result.best_epoch - 1]
            trial = {"lr": lr, "round": round_number, "images_trained": epochs * len(subset[1])}
            trials.append({**trial, "val_accuracy": best["val_accuracy"],
                           "val_loss": best["val_loss"]})  # fmt: skip
            if hooks.log is not None:
                hooks.log(f"[{hooks.name}] tuning round {round_number}: lr {lr:g}, "
                          f"{epochs * len(subset[1])} images -> val acc "
                          f"{best['val_accuracy']:.4f} loss {best['val_loss']:.4f}")  # fmt: skip
            del model, result
            accelerator.free_memory()  # drop accelerate's references to the trial's objects
        others = [t for t in trials if t["round"] == round_number
                  and not math.isclose(t["lr"], usual)]  # fmt: skip
        challenger = min(others, key=lambda t: (-t["val_accuracy"], t["val_loss"]))
        candidates = [usual, challenger["lr"]]
    held = next(t for t in trials if t["round"] == 2 and math.isclose(t["lr"], usual))
    p, q = challenger["val_accuracy"], held["val_accuracy"]
    se = math.sqrt((p * (1 - p) + q * (1 - q)) / max(n_val, 1))  # same n images: conservative
    wins = p - q > TIE_Z * se
    winner = challenger if wins else held
    used = sum(t["images_trained"] for t in trials)
    verdict = "beat" if wins else "did not beat"
    return TuningResult(
        chosen_lr=winner["lr"],
        trials=trials,
        images_used=used,
        method=(
            f"successive halving on validation over {', '.join(f'{lr:g}' for lr in grid)} "
            f"({lengths[0]} images each, then the usual rate and the best other {lengths[1]}); "
            f"the other wins only by more than {TIE_Z:.2f} standard errors"
        ),
        reason=(
            f"lr {challenger['lr']:g} ({challenger['val_accuracy']:.2%}) {verdict} the usual "
            f"{usual:g} ({held['val_accuracy']:.2%}) by {TIE_Z:.2f} standard errors "
            f"({TIE_Z * se:.2%} on {n_val} validation images), so lr {winner['lr']:g}; "
            f"{used:,} training images spent on tuning"
        ),
    )
