"""Regularisation that fits the training budget: warm-up, augmentation, label smoothing, decay.

The rule. A run's budget is counted in passes over the training set (epochs: images trained /
training images). Regularisation pays only once a model can start to memorise, which takes
several passes: a run that sees each image once or twice cannot overfit, so augmentation and
label smoothing there only make the task harder and slow learning (measured in issue 8: the
long-run recipe cost both models about 12 points of Fashion-MNIST accuracy after 2 epochs).
So a strength s in [0, 1] grows with the logarithm of the number of passes:

    s = 0                                  for epochs <= 2
    s = log(epochs / 2) / log(20 / 2)      between (log: each doubling of passes adds as much)
    s = 1                                  for epochs >= 20 (where the full recipe was tuned)

and the recipe is: label smoothing 0.1 s; augmentation (random affine: rotation ±10° s,
shift ±10% s, scale 1 ± 0.1 s; off at s = 0); warm-up 10% of the steps but at most two epochs'
worth (long runs need no longer ramp; DeiT warms up 5 of 300 epochs); weight decay 0.05 at every
budget, because AdamW's decoupled decay already scales with the budget: each step shrinks the
weights by lr x wd, so its total effect grows with the number of steps, and a second schedule
on top would count the budget twice. A number given for any of these (`--label-smoothing 0.1`,
`--augment-strength 1`, ...) fixes it; only fields left at "auto" follow the rule.

Passes alone do not say when a model starts to memorise: that also depends on how large the
training set is for the model. Measured on a 9,600-image Fashion-MNIST subset (BENCHMARKS.md),
vit-micro was still underfitting after 10 epochs, and the s = 0.7 augmentation and smoothing
cost it 6 points against no regularisation. So augmentation and label smoothing left at "auto"
wait for the evidence: a run starts without them and switches them on, ramping up to strength s
(below), from the epoch after the first one whose training accuracy (measured on that epoch's
batches) exceeds its validation accuracy by more than two standard errors of the difference,
sqrt(pt (1 - pt) / n_train + pv (1 - pv) / n_val): the model has started to fit its training
images better than unseen ones. Only such an epoch in the run's first half starts them (below).
The training accuracy is a running average over an epoch in which the model improved, so it
lags the model; the test is conservative. `overfitting` is that test.

Once on, the deferred regularisation ramps up linearly, reaching strength s at the last epoch:
after the first overfitting epoch k of E, epoch e trains at (e - k) / (E - k) of it
(`ramp_fraction`). Switched on at full strength in one step, augmentation knocked vit-micro's
training accuracy on digits from 87.5% to 46% within an epoch, at a learning rate still near
its peak, and the run spent most of its remaining epochs recovering (BENCHMARKS.md). Raising
regularisation with training progress is what EfficientNetV2's progressive learning does
(Tan & Le, ICML 2021). The loop records each epoch's fraction in its history row
(`regularisation`, 0 to 1) and whether it was above zero (`regularised`). Only the affine
magnitudes and the smoothing ramp; `--hflip` flips at probability 0.5 from the first epoch
with any augmentation.

A run that first overfits in its second half is not regularised at all (`LATEST_ONSET`). At the
midpoint, with the default 10% warm-up, the cosine has brought the learning rate below 60% of
its peak and about a fifth of the run's total step size (the integral of the rate, 22%) is
left, too little for the model to learn the harder, augmented task: the ramp then only pulls a
nearly trained model away from the clean images it is judged on. In the default digits
comparison, vit-micro first overfit at epoch 15 of 20; over the ramp its training accuracy fell
from 98.5% to 77% and its validation accuracy from 94.4% to 86.1%, and the checkpoint kept was
the last one before the ramp. Without it, the runs that overfit late gained or held: on digits
the ViT +1.11 and +1.95 points on two of five such seeds (the other three kept a checkpoint from
before the ramp), the Fashion-MNIST ViT at 20 epochs +0.65; the one loss, the 10-epoch
Fashion-MNIST ResNet, was 0.35 points (7 test images; BENCHMARKS.md). Every row records its own
test (`overfitting`) and the recipe records the share (`latest_onset`), so the report can say
when a run overfit too late.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..config import TrainConfig
from ..data.preprocess import AugmentConfig

SHORT_EPOCHS = 2.0  # at or below this many passes: no augmentation, no label smoothing
LONG_EPOCHS = 20.0  # at or above: the full long-run recipe
FULL_LABEL_SMOOTHING = 0.1
FULL_WARMUP_FRACTION = 0.1
MAX_WARMUP_EPOCHS = 2.0
LATEST_ONSET = 0.5  # deferred regularisation starts only if the run overfits in its first half
WEIGHT_DECAY = 0.05
AUTO = "auto"


@dataclass(frozen=True)
class Recipe:
    """The resolved regularisation of one training run (numbers, no "auto")."""

    strength: float  # s in [0, 1], from the budget (numbers given for the fields override it)
    warmup_fraction: float  # of all optimizer steps
    label_smoothing: float
    weight_decay: float
    augment_strength: float  # 0: off; 1: AugmentConfig's default magnitudes
    rule: str  # one line: how these values were chosen
    # Label smoothing and augmentation wait until the run overfits (both were "auto", s > 0).
    deferred: bool = False
    # ... and start only if that happens within this share of the epochs (LATEST_ONSET).
    latest_onset: float = 1.0

    def ramped(self, fraction: float) -> Recipe:
        """The recipe with what is deferred at `fraction` (0 to 1) of its strength."""
        if not self.deferred:
            return self
        fraction = min(1.0, max(0.0, fraction))
        return dataclasses.replace(
            self,
            label_smoothing=self.label_smoothing * fraction,
            augment_strength=self.augment_strength * fraction,
        )

    def before_overfitting(self) -> Recipe:
        """The recipe a run follows until it overfits: without what is deferred."""
        return self.ramped(0.0)

    def augment_config(self, hflip: bool = False) -> AugmentConfig | None:
        """The augmentation at this strength: AugmentConfig's magnitudes scaled by it."""
        if self.augment_strength <= 0:
            return None
        base, s = AugmentConfig(), self.augment_strength
        low, high = base.scale_range
        return AugmentConfig(
            max_rotation_degrees=base.max_rotation_degrees * s,
            max_translate_fraction=base.max_translate_fraction * s,
            scale_range=(1 - (1 - low) * s, 1 + (high - 1) * s),
            hflip=hflip,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def budget_strength(epochs: float) -> float:
    """s in [0, 1]: 0 up to SHORT_EPOCHS passes, 1 from LONG_EPOCHS, log-linear between."""
    if epochs <= SHORT_EPOCHS:
        return 0.0
    return min(1.0, math.log(epochs / SHORT_EPOCHS) / math.log(LONG_EPOCHS / SHORT_EPOCHS))


def regularisation_for(
    epochs: float,
    n_train: int,
    batch_size: int = 64,
    *,
    warmup_fraction: float | str = AUTO,
    label_smoothing: float | str = AUTO,
    weight_decay: float | str = AUTO,
    augment_strength: float | str = AUTO,
) -> Recipe:
    """The regularisation for `epochs` passes over `n_train` images; numbers given are kept.

    `n_train` and `batch_size` give the step count, which caps warm-up at two epochs of steps
    (and at least one step, so the first update is never at the peak learning rate).
    """
    s = budget_strength(epochs)
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    total_steps = steps_per_epoch * max(1, math.ceil(epochs))
    auto_warmup = min(FULL_WARMUP_FRACTION, MAX_WARMUP_EPOCHS * steps_per_epoch / total_steps)
    auto_warmup = max(auto_warmup, 1 / total_steps)

    def pick(value: float | str, automatic: float) -> float:
        return automatic if value == AUTO else float(value)

    deferred = s > 0 and label_smoothing == AUTO and augment_strength == AUTO
    return Recipe(
        strength=s,
        warmup_fraction=pick(warmup_fraction, auto_warmup),
        label_smoothing=pick(label_smoothing, FULL_LABEL_SMOOTHING * s),
        weight_decay=pick(weight_decay, WEIGHT_DECAY),
        augment_strength=pick(augment_strength, s),
        rule=(
            f"{epochs:g} epochs: strength s = {s:.2f} (0 at <= {SHORT_EPOCHS:g} epochs, 1 at >= "
            f"{LONG_EPOCHS:g}, log-linear between); label smoothing 0.1 s, augmentation at s "
            "times its full magnitudes, warm-up 10% of steps capped at 2 epochs, weight decay "
            "0.05; values given as numbers are kept"
            + (
                "; label smoothing and augmentation start once training accuracy exceeds "
                "validation accuracy by more than two standard errors, if that happens in the "
                "first half of the run, then ramp linearly to full strength at the last epoch"
                if deferred
                else ""
            )
        ),
        deferred=deferred,
        latest_onset=LATEST_ONSET,
    )


def resolve_recipe(config: TrainConfig, n_train: int) -> Recipe:
    """The recipe a training run of `config` on `n_train` images uses ("auto" fields resolved).

    `--no-augment` turns augmentation off whatever its strength.
    """
    recipe = regularisation_for(
        config.epochs,
        n_train,
        config.batch_size,
        warmup_fraction=config.warmup_fraction,
        label_smoothing=config.label_smoothing,
        weight_decay=config.weight_decay,
        augment_strength=config.augment_strength,
    )
    if not config.augment:
        recipe = dataclasses.replace(recipe, augment_strength=0.0)
    return recipe


def overfitting(train_accuracy: float, val_accuracy: float, n_train: int, n_val: int) -> bool:
    """True when training accuracy exceeds validation accuracy by more than two standard errors
    of the difference (see the module docstring)."""
    if n_train < 1 or n_val < 1:
        return False
    pt, pv = train_accuracy, val_accuracy
    se = math.sqrt(pt * (1 - pt) / n_train + pv * (1 - pv) / n_val)
    return pt - pv > 2 * se


def ramp_fraction(
    epoch: int, overfit_epoch: int | None, epochs: int, latest_onset: float = LATEST_ONSET
) -> float:
    """The share of the deferred regularisation epoch `epoch` (1-based) of `epochs` trains
    with, when `overfit_epoch` was the first epoch that overfit (None: none yet): 0 up to it,
    then rising linearly to 1 at the last epoch; 0 throughout when it came after
    `latest_onset` of the run (the recipe's recorded share, by default the first half)."""
    if overfit_epoch is None or epoch <= overfit_epoch or overfit_epoch > latest_onset * epochs:
        return 0.0
    return min(1.0, (epoch - overfit_epoch) / max(1, epochs - overfit_epoch))


def fixed_recipe_config(config: TrainConfig, recipe: Recipe, **changes: Any) -> TrainConfig:
    """`config` with the recipe's numbers written in (no "auto" left), plus `changes`.

    Tuning trials use this so a short trial keeps the full run's regularisation instead of
    re-deriving a weaker one from its own few epochs.
    """
    return dataclasses.replace(
        config,
        warmup_fraction=recipe.warmup_fraction,
        label_smoothing=recipe.label_smoothing,
        weight_decay=recipe.weight_decay,
        augment_strength=recipe.augment_strength,
        **changes,
    )
