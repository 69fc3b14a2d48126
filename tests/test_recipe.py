"""The recipe (a model's row, scaled to the budget, resolved once) and the learning-rate tuner.

The recipe tests check the rule against hand computations (log-linear strength between 2 and 20
epochs, the row's values at a full budget, capped warm-up, the progressive share per epoch) and
that numbers given are kept. The tuner tests train nano presets for a few steps on 8-px digits
(it reads the validation split only and spends the same counted budget on both families), and
check its one final test with trials whose accuracies are set.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from scipy.stats import norm

from cnnvit.config import DataConfig, TrainConfig
from cnnvit.data import prepare_data
from cnnvit.models import build_model
from cnnvit.models.presets import CNN_RECIPE, PRESETS, PRETRAINED_RECIPES, VIT_RECIPE, RecipeRow
from cnnvit.runtime import make_accelerator, place_model, resolve_runtime
from cnnvit.training import Hooks, train_model
from cnnvit.training.recipe import budget_strength, overfitting, resolve_recipe
from cnnvit.training.tuning import (
    trial_images,
    trial_warmup,
    tune_learning_rate,
    untuned,
)

EPOCHS = [1, 2, 3, 5, 8, 10, 15, 20, 40, 300]


def test_strength_is_zero_short_one_long_and_log_linear_between() -> None:
    assert budget_strength(1) == 0 and budget_strength(2) == 0
    assert budget_strength(20) == pytest.approx(1) and budget_strength(300) == 1
    # Halfway on the log scale between 2 and 20 epochs is 2 * sqrt(10).
    assert budget_strength(2 * math.sqrt(10)) == pytest.approx(0.5)
    assert budget_strength(10) == pytest.approx(math.log(5) / math.log(10))


def test_every_preset_row_states_its_recipe_and_pretrained_rows_their_own() -> None:
    for preset in PRESETS.values():
        row = preset.recipe
        assert row is (CNN_RECIPE if preset.family == "cnn" else VIT_RECIPE)
        assert row.lr in row.lr_grid and len(row.lr_grid) == 4
        assert all(
            b == pytest.approx(2 * a) for a, b in zip(row.lr_grid, row.lr_grid[1:], strict=False)
        )
    assert (CNN_RECIPE.lr, VIT_RECIPE.lr) == (2e-3, 5e-4)
    for family, row in (("cnn", CNN_RECIPE), ("vit", VIT_RECIPE)):
        tuned = PRETRAINED_RECIPES[family]
        assert tuned.lr < row.lr and tuned.lr in tuned.lr_grid and len(tuned.lr_grid) == 4
        assert (tuned.label_smoothing, tuned.augment_strength) == (0, 0)


def test_the_recipe_is_the_row_at_a_full_budget_and_scales_down_with_fewer_epochs() -> None:
    row = RecipeRow(lr=1e-3, lr_grid=(1e-3,), weight_decay=0.02, label_smoothing=0.2,
                    augment_strength=0.5)  # fmt: skip
    recipes = [resolve_recipe(TrainConfig(epochs=e), row, 9600) for e in EPOCHS]
    full = recipes[EPOCHS.index(20)]
    assert (full.lr, full.weight_decay) == (1e-3, 0.02)
    assert (full.label_smoothing, full.augment_strength) == pytest.approx((0.2, 0.5))
    for epochs, recipe in zip(EPOCHS, recipes, strict=True):
        s = budget_strength(epochs)
        assert recipe.strength == s and recipe.progressive == (s > 0)
        assert recipe.label_smoothing == pytest.approx(0.2 * s)
        assert recipe.augment_strength == pytest.approx(0.5 * s)
        steps_per_epoch = math.ceil(9600 / 64)
        assert 0 < recipe.warmup_fraction <= 0.1
        assert recipe.warmup_fraction * steps_per_epoch * epochs <= 2 * steps_per_epoch + 1e-6
    assert recipes[0].augment_config() is None
    assert recipes[EPOCHS.index(300)].warmup_fraction == pytest.approx(2 / 300)


def test_progressive_regularisation_rises_from_none_to_full_and_numbers_stay_constant() -> None:
    recipe = resolve_recipe(TrainConfig(epochs=5), VIT_RECIPE, 1000)
    assert [recipe.share(e) for e in range(1, 6)] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    half = recipe.augment_config(0.5)
    s = recipe.augment_strength * 0.5
    assert half is not None and half.max_rotation_degrees == pytest.approx(10 * s)
    assert half.max_translate_fraction == pytest.approx(0.1 * s)
    assert half.scale_range == pytest.approx((1 - 0.1 * s, 1 + 0.1 * s))
    assert recipe.augment_config(0) is None
    numbers = TrainConfig(epochs=5, label_smoothing=0.3, augment_strength=2, warmup_fraction=0.2,
                          weight_decay=0.0)  # fmt: skip
    fixed = resolve_recipe(numbers, VIT_RECIPE, 1000)
    assert not fixed.progressive and [fixed.share(e) for e in (1, 5)] == [1.0, 1.0]
    assert (fixed.label_smoothing, fixed.augment_strength) == (0.3, 2.0)
    assert (fixed.warmup_fraction, fixed.weight_decay) == (0.2, 0.0)
    off = resolve_recipe(TrainConfig(epochs=40, augment=False), CNN_RECIPE, 500)
    assert off.augment_strength == 0.0 and off.label_smoothing == pytest.approx(0.1)
    # A trial is the run's start: none of a progressive schedule, the numbers given as they are.
    assert recipe.trial(1, 1e-3, 0.5).label_smoothing == 0.0
    assert recipe.trial(1, 1e-3, 0.5).augment_config() is None
    assert fixed.trial(1, 1e-3, 0.5).label_smoothing == 0.3
    assert (
        TrainConfig().lr == "usual"
        and resolve_recipe(TrainConfig(lr=3e-4), VIT_RECIPE, 9).lr == 3e-4
    )


def test_overfitting_means_train_above_validation_by_two_standard_errors() -> None:
    # se = sqrt(.95 * .05 / 1000 + .9 * .1 / 200) = 0.0223: a 5-point gap is over 2 se,
    # a 3-point gap is not.
    assert overfitting(0.95, 0.90, 1000, 200)
    assert not overfitting(0.93, 0.90, 1000, 200)
    assert not overfitting(0.80, 0.85, 1000, 200)  # validation ahead: underfitting
    assert overfitting(0.93, 0.90, 100_000, 100_000)  # the same gap on many images is real


# --- a real run and the tuner ---------------------------------------------------------------


SIZE = 8  # digits at their own 8 px: the tuner's steps are what is tested, not the accuracy


@pytest.fixture(scope="module")
def tiny() -> dict:
    data = prepare_data(DataConfig(dataset="digits", max_train_samples=128, max_eval_samples=120))
    runtime = resolve_runtime("cpu", "fp32", "eager")  # fp32 on the CPU: bit-reproducible
    return {"data": data, "runtime": runtime}


@pytest.fixture(scope="module")
def cnn_tuned(tiny: dict) -> dict:
    """One tuning of the CNN, shared by the tests that read it, with every trial's recipe and
    training-set size recorded as the tuner handed them to train_model."""
    from cnnvit.training import tuning

    seen = []
    real = tuning.train_model

    def spy(model, preprocess, train, validation, recipe, *args):
        seen.append((recipe, len(train[1])))
        return real(model, preprocess, train, validation, recipe, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tuning, "train_model", spy)
        tuned = _tune(tiny, "cnn")
    return {**tuned, "seen": seen}


def test_a_run_follows_its_recipe_epoch_by_epoch_and_returns_it(tiny: dict) -> None:
    data, runtime = tiny["data"], tiny["runtime"]
    built = build_model("convnext-nano", "cnn", data.class_names, SIZE, "eager", seed=0)
    train = data.tensors("train", built.processor)
    validation = data.tensors("validation", built.processor)
    small = (train[0][:64], train[1][:64])
    recipe = resolve_recipe(TrainConfig(epochs=4, batch_size=16, lr=3e-3), built.recipe, 64)
    model, preprocess = place_model(built, runtime)
    result = train_model(model, preprocess, small, validation, recipe, make_accelerator(runtime),
                         runtime, Hooks(log=lambda line: None))  # fmt: skip
    assert result.recipe is recipe
    assert [r["regularisation"] for r in result.history] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert [r["regularised"] for r in result.history] == [False, True, True, True]
    assert [r["overfitting"] for r in result.history] == [
        overfitting(r["train_accuracy"], r["val_accuracy"], 64, len(validation[1]))
        for r in result.history
    ]
    best = max(result.history, key=lambda r: r["val_accuracy"])
    assert result.best_epoch == next(r["epoch"] for r in result.history if r is best)


def _tune(tiny: dict, family: str, validation_labels: torch.Tensor | None = None) -> dict:
    data, runtime = tiny["data"], tiny["runtime"]
    name = {"cnn": "convnext-nano", "vit": "vit-nano"}[family]

    def fresh():
        built = build_model(name, family, data.class_names, SIZE, "eager", seed=0)
        return place_model(built, runtime)

    built = build_model(name, family, data.class_names, SIZE, "eager")
    train = data.tensors("train", built.processor)
    validation = data.tensors("validation", built.processor)
    if validation_labels is not None:
        validation = (validation[0], validation_labels)
    config = TrainConfig(epochs=4, batch_size=32, eval_batch_size=128, lr="auto")
    recipe = resolve_recipe(config, built.recipe, len(train[1]))
    result = tune_learning_rate(fresh, train, validation, recipe, built.recipe.lr_grid,
                                make_accelerator(runtime), runtime)  # fmt: skip
    return {"result": result, "validation": validation, "train_size": len(train[1])}


def test_tuner_reads_validation_only(tiny: dict, cnn_tuned: dict) -> None:
    first_run = cnn_tuned
    first = first_run["result"]
    # Scramble the test labels: the tuner is never handed the test split, so nothing changes.
    data = tiny["data"]
    processor = build_model("convnext-nano", "cnn", data.class_names, SIZE).processor
    test_images, test_labels = data.tensors("test", processor)
    test_labels[:] = test_labels[torch.randperm(len(test_labels))]
    second = _tune(tiny, "cnn")["result"]
    assert second.chosen_lr == first.chosen_lr and second.trials == first.trials
    # Scramble the validation labels: what it measures changes, so validation is what it reads.
    validation = first_run["validation"]
    scrambled = validation[1][torch.randperm(len(validation[1]), generator=torch.Generator())]
    third = _tune(tiny, "cnn", validation_labels=scrambled)["result"]
    assert [t["val_accuracy"] for t in third.trials] != [t["val_accuracy"] for t in first.trials]


def test_both_families_spend_the_same_counted_budget_and_the_usual_rate_reaches_the_final(
    tiny: dict, cnn_tuned: dict
) -> None:
    cnn, vit = cnn_tuned, _tune(tiny, "vit")
    for row, tuned in ((CNN_RECIPE, cnn["result"]), (VIT_RECIPE, vit["result"])):
        assert [t["lr"] for t in tuned.trials if t["round"] == 1] == list(row.lr_grid)
        others = [t for t in tuned.trials if t["round"] == 1 and t["lr"] != row.lr]
        best_other = max(others, key=lambda t: (t["val_accuracy"], -t["val_loss"]))["lr"]
        assert [t["lr"] for t in tuned.trials if t["round"] == 2] == [row.lr, best_other]
        assert tuned.images_used == sum(t["images_trained"] for t in tuned.trials)
    assert [t["images_trained"] for t in cnn["result"].trials] == [
        t["images_trained"] for t in vit["result"].trials
    ]
    # Trials of at most the whole split are single passes: the budget is as planned.
    first, second = trial_images(4, cnn["train_size"], 32)
    assert cnn["result"].images_used == 4 * first + 2 * second


@pytest.mark.parametrize(
    ("challenger", "n", "wins"),
    [
        (0.441, 2000, False),  # 44.1% against 41.7% on 2,000 images: 1.5 SE, the usual rate holds
        (0.448, 2000, False),  # 1.98 SE: significant alone, not over three alternatives (2.39)
        (0.460, 2000, True),  # 2.7 SE: the challenger wins
        (0.420, 1_000_000, True),  # on a million images a 0.3-point lead is real
        (0.417, 2000, False),  # a tie in accuracy: the usual rate, whatever the losses
    ],
)
def test_the_challenger_wins_only_by_a_significant_lead_over_the_usual_rate(
    monkeypatch: pytest.MonkeyPatch, challenger: float, n: int, wins: bool
) -> None:
    from cnnvit.training import tuning

    accuracy = {5e-4: 0.417, 2e-3: challenger, 2.5e-4: 0.30, 1e-3: 0.29}

    def fake_train(model, preprocess, train, validation, recipe, *args):
        row = {"val_accuracy": accuracy[recipe.lr], "val_loss": 1.0 if recipe.lr == 5e-4 else 0.5}
        return SimpleNamespace(history=[row], best_epoch=1)

    monkeypatch.setattr(tuning, "train_model", fake_train)
    images = torch.zeros(640, 3, 4, 4, dtype=torch.uint8)
    train, validation = (images, torch.zeros(640)), (None, torch.zeros(n))
    recipe = resolve_recipe(TrainConfig(epochs=4), VIT_RECIPE, 640)
    accelerator = SimpleNamespace(free_memory=lambda: None)
    result = tune_learning_rate(lambda: (None, None), train, validation, recipe,
                                VIT_RECIPE.lr_grid, accelerator, None)  # fmt: skip
    p, q = challenger, 0.417
    z = (p - q) / math.sqrt((p * (1 - p) + q * (1 - q)) / n)
    assert (z > norm.ppf(1 - 0.05 / 6)) == wins  # the stated test, computed here from scratch
    assert result.chosen_lr == (2e-3 if wins else 5e-4)
    assert ("did not beat" in result.reason) != wins


def test_usual_and_numbers_are_untuned() -> None:
    recipe = resolve_recipe(TrainConfig(epochs=1), PRETRAINED_RECIPES["vit"], 100)
    usual = untuned("usual", recipe)
    assert usual.chosen_lr == pytest.approx(1e-4) and usual.method == "usual"
    fixed = untuned(3e-4, recipe)
    assert (fixed.chosen_lr, fixed.method, fixed.trials, fixed.images_used) == (
        3e-4,
        "fixed",
        [],
        0,
    )


def test_first_round_trials_are_a_32nd_of_the_budget_but_at_least_16_steps() -> None:
    # Digits (1,294 images, 20 epochs): 808 images would be 13 steps, so the floor of 16 binds.
    assert trial_images(20, 1294, 64) == (16 * 64, 32 * 64)
    # Fashion-MNIST subset (9,600 images, 10 epochs): 96,000 / 32 = 3,000 images.
    assert trial_images(10, 9600, 64) == (3000, 6000)
    # A tiny split: at most a quarter of the budget.
    assert trial_images(1, 100, 64) == (25, 50)


def test_trials_keep_the_full_runs_warmup_length_in_steps(tiny: dict, cnn_tuned: dict) -> None:
    # 150 steps of warm-up in the full run; a 47-step trial warms up for half of it (23 steps),
    # a 300-step trial for the full 150.
    assert trial_warmup(150, 3000, 1, 64) * 47 == pytest.approx(23)
    assert trial_warmup(150, 9600, 2, 64) * 300 == pytest.approx(150)
    assert trial_warmup(0, 640, 1, 64) * 10 == pytest.approx(1)  # never the peak at step 1
    seen, tuned = cnn_tuned["seen"], cnn_tuned["result"]
    full_warmup = round(math.ceil(len(tiny["data"].splits["train"].labels) / 32) * 4 * 0.1)
    assert len(seen) == len(tuned.trials)
    for recipe, images in seen:
        steps = math.ceil(images / 32) * recipe.epochs
        assert round(recipe.warmup_fraction * steps) == max(1, min(full_warmup, steps // 2))
        assert recipe.label_smoothing == 0 and recipe.augment_config() is None
        assert recipe.weight_decay == CNN_RECIPE.weight_decay  # decay is never held back
