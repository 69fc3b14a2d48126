"""The recipe of one training run: the model's row, scaled to the budget, resolved once.

A model's row (models/presets.py: `RecipeRow`) states how it trains at a full budget: AdamW's
rate and weight decay, the warm-up, and label smoothing and augmentation at full strength. A
shorter budget scales the regularisation by a strength s that grows with the logarithm of the
passes over the training set: 0 up to 2 epochs (a model that sees each image once or twice
cannot memorise, and regularisation only slows it), 1 from 20, log-linear between. That
strength is reached progressively, as EfficientNetV2's progressive learning raises
regularisation with training (Tan & Le, ICML 2021): epoch e of E trains at (e - 1) / (E - 1) of
it, none in the first epoch and all in the last. Numbers given in the config are kept, and held
constant. `resolve_recipe` builds the frozen `Recipe` that the tuner, the loop, run.json, the
model card and the report read; its measurement is in BENCHMARKS.md. A pretrained model's row
(presets.PRETRAINED_RECIPES, or PROBE_RECIPE under --adapt probe) has no regularisation to
scale, a short warm-up and, for a transformer, a layer-wise rate decay.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..config import TrainConfig
from ..data.preprocess import AugmentConfig
from ..models.presets import RecipeRow

SHORT_EPOCHS = 2.0  # at or below this many passes: no augmentation, no label smoothing
LONG_EPOCHS = 20.0  # at or above: the row's full strengths
AUTO = "auto"
# --eval-batch-size auto: a batch of about this many pixels (512 images at 64 px), a power of two
# between 8 and 512; at 224 px a batch of 512 peaked at 2.4 GB on a CPU and ran slower per
# image than batch 1 (issue 27), where 32 holds 6.4 M input floats.
EVAL_PIXELS = 512 * 64 * 64


def eval_batch_for(image_size: int) -> int:
    """The evaluation batch for `image_size`-pixel images (--eval-batch-size auto)."""
    images = EVAL_PIXELS / max(1, image_size) ** 2
    return int(min(512, max(8, 2 ** math.floor(math.log2(max(images, 1))))))


# --until-converged cools down over this share of the epochs trained at the peak rate: a fifth
# matches a cosine schedule of the same length (Hägele et al. 2024, warmup-stable-decay).
COOL_DOWN_SHARE = 0.2


@dataclass(frozen=True)
class Recipe:
    """Everything one training run follows, as numbers; `to_dict()` is what run.json records."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_fraction: float  # of all optimizer steps
    label_smoothing: float  # at full strength: the last epoch when progressive
    augment_strength: float  # likewise (0: off; 1: AugmentConfig's magnitudes)
    strength: float  # s in [0, 1], from the budget
    progressive: bool  # smoothing and augmentation rise from none at epoch 1 to full at the last
    hflip: bool = False
    grad_clip_norm: float = 1.0
    seed: int = 0
    eval_batch_size: int = 512
    compile: bool = False
    rule: str = ""
    layer_decay: float = 1.0  # each transformer block's rate is this times the next one's
    adapt: str = "full"  # probe | head | full (config.ADAPT_MODES)
    # The budget (budgets.Budget.text) and the optimizer steps the schedule is laid out over
    # (0: epochs x steps per epoch); under a time budget the steps are an estimate and training
    # stops after `deadline_seconds` of training steps.
    budget: str = "epochs"
    steps: int = 0
    deadline_seconds: float = 0.0
    # --until-converged: a constant rate after warm-up until the convergence rule holds (or the
    # cap, `epochs`, is near), then a linear cool-down over COOL_DOWN_SHARE of the epochs done.
    until_converged: bool = False

    def share(self, epoch: int) -> float:
        """The share of its regularisation epoch `epoch` (1-based) trains with."""
        if not self.progressive:
            return 1.0
        return min(1.0, (epoch - 1) / max(1, self.epochs - 1))

    def augment_config(self, share: float = 1.0) -> AugmentConfig | None:
        """The augmentation at `share` of this recipe's strength (None when it is zero)."""
        strength = self.augment_strength * share
        if strength <= 0:
            return None
        base = AugmentConfig()
        low, high = base.scale_range
        return AugmentConfig(
            max_rotation_degrees=base.max_rotation_degrees * strength,
            max_translate_fraction=base.max_translate_fraction * strength,
            scale_range=(1 - (1 - low) * strength, 1 + (high - 1) * strength),
            hflip=self.hflip,
        )

    def trial(self, epochs: int, lr: float, warmup_fraction: float) -> Recipe:
        """A tuning trial: the start of this run (none of a progressive regularisation yet)
        over `epochs`, at `lr`."""
        start = {"label_smoothing": 0.0, "augment_strength": 0.0} if self.progressive else {}
        return dataclasses.replace(self, epochs=epochs, lr=lr, warmup_fraction=warmup_fraction,
                                   progressive=False, steps=0, deadline_seconds=0.0,
                                   budget="epochs", until_converged=False, **start)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def budget_strength(epochs: float) -> float:
    """s in [0, 1]: 0 up to SHORT_EPOCHS passes, 1 from LONG_EPOCHS, log-linear between."""
    if epochs <= SHORT_EPOCHS:
        return 0.0
    return min(1.0, math.log(epochs / SHORT_EPOCHS) / math.log(LONG_EPOCHS / SHORT_EPOCHS))


def resolve_recipe(
    config: TrainConfig,
    row: RecipeRow,
    n_train: int,
    image_size: int = 32,
    steps: int | None = None,
    budget: str = "epochs",
) -> Recipe:
    """The recipe of a run of `config` on `n_train` images for a model with `row`.

    "auto" fields follow the row and the budget; numbers are kept; `--lr auto` and `usual`
    start from the row's rate (the tuner may replace it); `--no-augment` turns augmentation off.
    `steps` (a FLOP or time budget's, training/budget.py) replaces --epochs passes: the
    strength, the warm-up and the progressive share follow the passes those steps make.
    """
    steps_per_epoch = max(1, math.ceil(n_train / config.batch_size))
    total_steps = steps or steps_per_epoch * max(1, config.epochs)
    passes = total_steps / steps_per_epoch
    s = budget_strength(passes)
    warmup = min(row.warmup_fraction, row.max_warmup_epochs * steps_per_epoch / total_steps)

    def pick(value: float | str, automatic: float) -> float:
        return automatic if value == AUTO else float(value)

    progressive = s > 0 and config.label_smoothing == AUTO and config.augment_strength == AUTO
    return Recipe(
        epochs=math.ceil(passes) if steps else config.epochs,
        batch_size=config.batch_size,
        lr=float(config.lr) if isinstance(config.lr, (int, float)) else row.lr,
        weight_decay=pick(config.weight_decay, row.weight_decay),
        warmup_fraction=pick(config.warmup_fraction, max(warmup, 1 / total_steps)),
        label_smoothing=pick(config.label_smoothing, row.label_smoothing * s),
        augment_strength=pick(config.augment_strength, row.augment_strength * s)
        if config.augment
        else 0.0,
        strength=s,
        progressive=progressive,
        hflip=config.hflip,
        grad_clip_norm=config.grad_clip_norm,
        seed=config.seed,
        eval_batch_size=eval_batch_for(image_size)
        if config.eval_batch_size == AUTO
        else int(config.eval_batch_size),
        compile=config.compile,
        layer_decay=row.layer_decay if config.adapt != "probe" else 1.0,
        adapt=config.adapt,
        budget=budget,
        steps=steps or 0,  # an epoch budget: the loop counts each process's own steps
        until_converged=config.until_converged,
        rule=(
            f"{round(passes, 2):g} epochs: strength s = {s:.2f} (0 at <= {SHORT_EPOCHS:g} epochs, "
            f"1 at >= {LONG_EPOCHS:g}, log-linear between) of the row's label smoothing and "
            "augmentation"
            + (", rising linearly from none at epoch 1 to s at the last" if progressive else "")
            + f"; warm-up {row.warmup_fraction:.0%} of steps, at most "
            f"{row.max_warmup_epochs:g} epochs"
            + (
                f"; layer-wise lr decay {row.layer_decay:g} per block"
                if row.layer_decay < 1
                else ""
            )
            + (
                f"; until converged: the peak rate after warm-up until validation accuracy "
                f"plateaus, then a linear cool-down over {COOL_DOWN_SHARE:.0%} of the epochs "
                f"trained, at most {config.epochs} epochs"
                if config.until_converged
                else ""
            )
            + "; values given as numbers are kept"
        ),
    )


def overfitting(train_accuracy: float, val_accuracy: float, n_train: int, n_val: int) -> bool:
    """True when training accuracy exceeds validation accuracy by more than two standard errors
    of the difference, sqrt(pt (1 - pt) / n_train + pv (1 - pv) / n_val)."""
    if n_train < 1 or n_val < 1:
        return False
    pt, pv = train_accuracy, val_accuracy
    se = math.sqrt(pt * (1 - pt) / n_train + pv * (1 - pv) / n_val)
    return pt - pv > 2 * se
