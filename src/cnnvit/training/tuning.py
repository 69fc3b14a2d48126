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
it. The rate is chosen by successive halving: every rate trains a short run of L images from
the model's initial weights; the family's usual rate and its strongest challenger (the other
rate with the best validation accuracy) train again for 2L, and the first of those two by the
ranking rule below wins. The usual rate always reaches that final round, so leaving it is
decided on the longest trials: measured on Fashion-MNIST (BENCHMARKS.md), a first round of 47
steps dropped vit-micro's usual 5e-4 and sent 2.5e-4 and 2e-3 on, where the final round could
not tell 5e-4 from 2e-3. L depends only on the training budget (epochs x training images) and
the batch size, so both models get exactly the same tuning budget, recorded as `images_used`.
The tuner receives the training and validation tensors only: it never sees test data.

A trial is a few percent of the real run, so its ranking of rates is evidence about the start
of training, not its end. The bias runs both ways: a low rate can make quick early progress that
a high rate overtakes later (short-horizon bias, Wu et al. 2018, "Understanding short-horizon
bias in stochastic meta-optimization"), and a high rate can lead early and then lose, as a ViT
does when its attention grows unstable late in training. Two rules keep trials close to the run
and keep weak evidence from moving the choice:
- Warm-up keeps its real length. Each trial follows the start of the full run: its
  regularisation before the run overfits (recipe.py) and its warm-up length in steps (at most
  half the trial), then decays by the cosine to zero. Compressing the warm-up with the trial
  would start a high rate after a handful of steps, a harsher test than the real run sets it.
- The family's usual rate holds unless a trial beats it significantly. Trials are ranked by
  validation accuracy (ties by validation loss), but a rate whose accuracy is not significantly
  below the best's counts as tied with it: a two-sided z-test on the difference of two
  accuracies measured on the same n validation images, with standard error
  sqrt((p1 (1 - p1) + p2 (1 - p2)) / n) (conservative: it ignores that the images are shared),
  at 5% family-wise over the grid's three alternatives to the usual rate (Bonferroni: each at
  5%/3, |z| > 2.39). Leaving the usual rate is one decision with three ways to be wrong, and the
  trials that decide it are the winners of a first round, so their lead is biased upwards.
  Among tied rates, the one nearest the family's usual rate (`PRIOR_RATES`, in octaves) ranks
  first, and of two equally near, the higher. So tuning leaves the usual rate only on evidence
  the validation split can resolve. This is the one-standard-error rule of choosing, among
  candidates the data cannot tell apart, the one a prior favours (Breiman et al. 1984; Hastie
  et al., "The Elements of Statistical Learning", 7.10), with the band widened to that test.

Why, measured in this project (BENCHMARKS.md): on digits' 144 validation images, vit-micro's
trials (24 steps in the first round, 48 in the second, with the floor then) sat at 10-27% and
16-53% accuracy. Taking the highest rate within one standard error drew 1e-3 on two training
seeds of seven, and those seeds lost the most against the earlier fixed 5e-4 (1.4 and 2.8
points of test accuracy). With the usual rate favoured within one standard error, the default
compare's 32-step trials still put 1e-3 ahead of 5e-4 (36.8% against 29.2%, 1.4 standard
errors), and the full run at 1e-3 scored 93.3% against 96.7% at 5e-4. The usual rates are 5e-4
for the ViT (cnnvit's rate before tuning existed; on Fashion-MNIST at 2 epochs 2.5e-4 and 5e-4
beat 1e-3 and 2e-3 by 2-3 points) and 2e-3 for the CNN (what its tuning chose, or was tied
with, in most recorded digits and Fashion-MNIST runs). With a large validation split the test
resolves small differences and the evidence, not the prior, decides.

L is budget/32, so the six trials cost a quarter of the training budget, but at least 16
optimizer steps, so that a trial on a small split still warms up and decays. That floor binds
only when epochs x training images < 512 x batch size; on digits it makes tuning a third of the
budget. It was 24 steps; where trials cannot separate the rates the usual rate holds, so the
longer floor mostly cost time.

`--lr usual` skips the trials and takes the usual rates as they are: per-family rates at no
tuning cost, which is what a study's many cells use (study/grid.py).
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

from ..config import FAMILY_NAMES, TrainConfig
from ..data.preprocess import BatchPreprocessor
from ..runtime import Runtime
from .loop import train_model
from .recipe import fixed_recipe_config, resolve_recipe

GRIDS = {"cnn": (5e-4, 1e-3, 2e-3, 4e-3), "vit": (2.5e-4, 5e-4, 1e-3, 2e-3)}
PRIOR_RATES = {"cnn": 2e-3, "vit": 5e-4}  # the family's usual rate, favoured among tied trials
PRETRAINED_SCALE = 0.1  # fine-tuning a hub model wants about a tenth of the from-scratch rate
KEEP = 2  # rates kept after the first round
# A difference below TIE_Z standard errors ties: two-sided, 5% family-wise over the three rates
# of a grid that are not the usual one (Bonferroni), 2.39.
TIE_Z = NormalDist().inv_cdf(1 - 0.05 / (2 * (len(GRIDS["vit"]) - 1)))
MIN_TRIAL_STEPS = 16  # a first-round trial is at least this many optimizer steps
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
    same tuning budget: 4 trials of L plus 2 of 2L, L = budget/32 but at least 16 steps and at
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
    A number in `config.lr` is returned as it is, and "usual" returns the family's usual rate
    (`PRIOR_RATES`, scaled for a pretrained model), both with no trials.
    """
    log = log or (lambda line: None)
    scale = PRETRAINED_SCALE if pretrained else 1.0
    prior = PRIOR_RATES[family] * scale
    if config.lr == "usual":
        return TuningResult(
            chosen_lr=prior,
            method="usual",
            reason=(
                f"--lr usual (the default): the {FAMILY_NAMES.get(family, family)} family's usual "
                f"rate{' for fine-tuning a pretrained model' if pretrained else ''} ({prior:g}), "
                "not tuned"
            ),
        )
    if config.lr != "auto":
        return TuningResult(
            chosen_lr=float(config.lr),
            method="fixed",
            reason=f"--lr {float(config.lr):g} was given, so no rate was tuned",
        )
    grid = [lr * scale for lr in GRIDS[family]]
    n_train = len(train[1])
    recipe = resolve_recipe(config, n_train)
    lengths = trial_images(config.epochs, n_train, config.batch_size)
    trials: list[dict[str, Any]] = []
    candidates = grid
    n_val = len(validation[1])
    full_warmup = round(math.ceil(n_train / config.batch_size) * config.epochs
                        * recipe.warmup_fraction)  # fmt: skip
    for round_number, images in enumerate(lengths, start=1):
        subset, epochs = _trial_split(train, images, config.seed + 1)
        # A trial is the start of the run: before it overfits (recipe.py), with its warm-up.
        trial_recipe = dataclasses.replace(
            recipe.before_overfitting(),
            warmup_fraction=trial_warmup(full_warmup, len(subset[1]), epochs, config),
        )
        for lr in candidates:
            model, preprocess = make_model()
            trial_config = fixed_recipe_config(config, trial_recipe, epochs=epochs, lr=lr)
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
        ranked = rank_trials([t for t in trials if t["round"] == round_number], n_val, prior)
        candidates = finalists(ranked, prior)
    winner = ranked[0]
    best = max(ranked, key=lambda t: (t["val_accuracy"], -t["val_loss"]))
    used = sum(t["images_trained"] for t in trials)
    first, second = lengths
    return TuningResult(
        chosen_lr=winner["lr"],
        trials=trials,
        images_used=used,
        method=(
            f"successive halving on the validation split: {len(grid)} learning rates "
            f"({', '.join(f'{lr:g}' for lr in grid)}) trained for {first} images each from the "
            f"same initial weights, the family's usual rate and the best of the others again "
            f"for {second}; ranked by validation "
            "accuracy (ties by validation loss), rates not significantly below the best "
            f"(two-sided z-test on the difference of two accuracies, |z| > {TIE_Z:.2f}: 5% "
            "family-wise over the three alternatives to the usual rate) counted as tied, and "
            f"of tied rates the one nearest the family's usual rate ({prior:g}) ranked first, "
            "the higher of two equally near; trials follow the start of the full run's recipe "
            "(its regularisation before overfitting and its warm-up length in steps, at most "
            "half the trial), then a cosine decay to their end"
        ),
        reason=_reason(winner, best, n_val, prior) + f"; {used:,} training images spent on tuning",
    )


def finalists(ranked: list[dict[str, Any]], prior: float) -> list[float]:
    """The KEEP rates that train again: the usual rate (when in the grid) and its strongest
    challenger, the other rate with the best validation accuracy (ties by loss), so leaving the
    usual rate is decided on the longest trials. Without the usual rate: the first KEEP."""
    usual = [t["lr"] for t in ranked if math.isclose(t["lr"], prior)]
    if not usual:
        return [t["lr"] for t in ranked[:KEEP]]
    others = [t for t in ranked if not math.isclose(t["lr"], prior)]
    challengers = sorted(others, key=lambda t: (-t["val_accuracy"], t["val_loss"]))
    return [usual[0], *(t["lr"] for t in challengers[: KEEP - 1])]


def trial_warmup(full_warmup_steps: int, images: int, epochs: int, config: TrainConfig) -> float:
    """A trial's warm-up fraction: the full run's warm-up steps, at most half the trial's."""
    steps = max(1, math.ceil(images / config.batch_size) * epochs)
    return max(1, min(full_warmup_steps, steps // 2)) / steps


def accuracy_difference_se(p1: float, p2: float, n: int) -> float:
    """Standard error of the difference of two accuracies measured on the same n images."""
    return math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / max(n, 1))


def octaves_from(lr: float, prior: float) -> float:
    """How many factors of two `lr` lies from `prior` (rounded, so grid rates compare exactly)."""
    return round(abs(math.log2(lr / prior)), 6)


def rank_trials(trials: list[dict[str, Any]], n_val: int, prior: float) -> list[dict[str, Any]]:
    """Trials best first, ties going to the rate nearest `prior` (module docstring).

    Repeatedly: the best remaining trial by validation accuracy (ties by loss) and every trial
    within TIE_Z standard errors of it are tied; the tied rate nearest `prior` in octaves goes
    next, the higher of two equally near.
    """
    remaining = sorted(trials, key=lambda t: (-t["val_accuracy"], t["val_loss"]))
    ordered: list[dict[str, Any]] = []
    while remaining:
        top = remaining[0]
        tied = [
            t for t in remaining
            if top["val_accuracy"] - t["val_accuracy"]
            <= TIE_Z * accuracy_difference_se(top["val_accuracy"], t["val_accuracy"], n_val)
        ]  # fmt: skip
        pick = min(tied, key=lambda t: (octaves_from(t["lr"], prior), -t["lr"]))
        ordered.append(pick)
        remaining.remove(pick)
    return ordered


def _reason(winner: dict[str, Any], best: dict[str, Any], n_val: int, prior: float) -> str:
    said = f"({winner['val_accuracy']:.2%}, loss {winner['val_loss']:.4f})"
    if winner is best:
        return f"lr {winner['lr']:g} had the best validation accuracy in the last round {said}"
    se = accuracy_difference_se(best["val_accuracy"], winner["val_accuracy"], n_val)
    distance = octaves_from(winner["lr"], prior)
    if distance == 0:
        nearest = "it is the family's usual rate"
    elif distance < octaves_from(best["lr"], prior):
        nearest = f"it is nearer the family's usual rate ({prior:g})"
    else:
        nearest = f"of two rates as near the family's usual rate ({prior:g}), the higher wins"
    return (
        f"lr {winner['lr']:g} {said} was not significantly below the best last-round accuracy "
        f"(lr {best['lr']:g}, {best['val_accuracy']:.2%}; within {TIE_Z:.2f} standard errors, "
        f"{TIE_Z * se:.2%}, on {n_val} validation images), and {nearest}"
    )
