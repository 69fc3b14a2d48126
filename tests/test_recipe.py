"""The budget-scaled recipe and the per-model learning-rate tuner (issue 8).

The recipe tests check the stated rule against hand computations (log-linear strength between
2 and 20 epochs, scaled magnitudes, capped warm-up) and that fixed numbers are kept. The tuner
tests train nano presets for a few steps on 16-px digits: they check that the tuner reads the
validation split only (scrambling test labels changes nothing; scrambling validation labels
changes its measurements), spends the same counted budget on both families, and chooses the
best trial of its last round.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from cnnvit.config import DataConfig, TrainConfig
from cnnvit.data import prepare_data
from cnnvit.errors import CnnvitError
from cnnvit.models import build_model
from cnnvit.runtime import make_accelerator, place_model, resolve_runtime
from cnnvit.training import train_model
from cnnvit.training.recipe import budget_strength, regularisation_for, resolve_recipe
from cnnvit.training.tuning import GRIDS, KEEP, tune_learning_rate, tuning_budget

EPOCHS = [1, 2, 3, 5, 8, 10, 15, 20, 40, 300]


def test_strength_is_zero_short_one_long_and_log_linear_between() -> None:
    assert budget_strength(1) == 0 and budget_strength(2) == 0
    assert budget_strength(20) == pytest.approx(1) and budget_strength(300) == 1
    # Halfway on the log scale between 2 and 20 epochs is 2 * sqrt(10).
    assert budget_strength(2 * math.sqrt(10)) == pytest.approx(0.5)
    assert budget_strength(10) == pytest.approx(math.log(5) / math.log(10))


def test_regularisation_grows_with_the_budget_and_stays_bounded() -> None:
    recipes = [regularisation_for(e, 9600, 64) for e in EPOCHS]
    smoothing = [r.label_smoothing for r in recipes]
    augment = [r.augment_strength for r in recipes]
    assert smoothing == sorted(smoothing) and augment == sorted(augment)
    assert smoothing[0] == 0 and augment[0] == 0 and recipes[0].augment_config() is None
    assert max(smoothing) == pytest.approx(0.1) and max(augment) == pytest.approx(1)
    assert {r.weight_decay for r in recipes} == {0.05}
    for epochs, recipe in zip(EPOCHS, recipes, strict=True):
        steps_per_epoch = math.ceil(9600 / 64)
        warmup_steps = recipe.warmup_fraction * steps_per_epoch * epochs
        assert 0 < recipe.warmup_fraction <= 0.1
        assert warmup_steps <= 2 * steps_per_epoch + 1e-6  # at most two epochs of warm-up
    assert recipes[EPOCHS.index(300)].warmup_fraction == pytest.approx(2 / 300)


def test_augmentation_magnitudes_scale_with_strength() -> None:
    half = regularisation_for(2 * math.sqrt(10), 1000).augment_config(hflip=True)
    assert half is not None and half.hflip
    assert half.max_rotation_degrees == pytest.approx(5.0)
    assert half.max_translate_fraction == pytest.approx(0.05)
    assert half.scale_range == pytest.approx((0.95, 1.05))


def test_numbers_given_are_kept_and_no_augment_wins() -> None:
    fixed = regularisation_for(
        1, 500, warmup_fraction=0.2, label_smoothing=0.3, weight_decay=0.0, augment_strength=2
    )
    assert (fixed.warmup_fraction, fixed.label_smoothing) == (0.2, 0.3)
    assert (fixed.weight_decay, fixed.augment_strength) == (0.0, 2.0)
    config = TrainConfig(epochs=40, label_smoothing=0.0, augment=False)
    recipe = resolve_recipe(config, 500)
    assert recipe.label_smoothing == 0.0 and recipe.augment_strength == 0.0
    assert resolve_recipe(TrainConfig(epochs=40), 500).label_smoothing == pytest.approx(0.1)


# --- the tuner ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> dict:
    data = prepare_data(DataConfig(dataset="digits", max_train_samples=256, max_eval_samples=120))
    runtime = resolve_runtime("cpu", "fp32", "eager")  # fp32 on the CPU: bit-reproducible
    return {"data": data, "runtime": runtime}


def _tune(tiny: dict, family: str, validation_labels: torch.Tensor | None = None) -> dict:
    data, runtime = tiny["data"], tiny["runtime"]
    name = {"cnn": "resnet-nano", "vit": "vit-nano"}[family]

    def fresh():
        built = build_model(name, family, data.class_names, 16, "eager", seed=0)
        return place_model(built, runtime)

    processor = build_model(name, family, data.class_names, 16, "eager").processor
    train = data.tensors("train", processor)
    validation = data.tensors("validation", processor)
    if validation_labels is not None:
        validation = (validation[0], validation_labels)
    config = TrainConfig(epochs=4, batch_size=32, eval_batch_size=128)
    accelerator = make_accelerator(runtime)
    result = tune_learning_rate(
        fresh, train, validation, config, accelerator, runtime, family=family, name=name
    )
    return {"result": result, "validation": validation, "train_size": len(train[1])}


def test_tuner_reads_validation_only(tiny: dict) -> None:
    first_run = _tune(tiny, "cnn")
    first = first_run["result"]
    # Scramble the test labels: the tuner is never handed the test split, so nothing changes.
    data = tiny["data"]
    processor = build_model("resnet-nano", "cnn", data.class_names, 16).processor
    test_images, test_labels = data.tensors("test", processor)
    test_labels[:] = test_labels[torch.randperm(len(test_labels))]
    second = _tune(tiny, "cnn")["result"]
    assert second.chosen_lr == first.chosen_lr and second.trials == first.trials
    # Scramble the validation labels: what it measures changes, so validation is what it reads.
    validation = first_run["validation"]
    scrambled = validation[1][torch.randperm(len(validation[1]), generator=torch.Generator())]
    third = _tune(tiny, "cnn", validation_labels=scrambled)["result"]
    assert [t["val_accuracy"] for t in third.trials] != [t["val_accuracy"] for t in first.trials]


def test_equal_counted_budgets_and_the_best_last_round_trial_wins(tiny: dict) -> None:
    cnn, vit = _tune(tiny, "cnn"), _tune(tiny, "vit")
    n_train = cnn["train_size"]
    for family, tuned in (("cnn", cnn["result"]), ("vit", vit["result"])):
        assert [t["lr"] for t in tuned.trials if t["round"] == 1] == list(GRIDS[family])
        assert len([t for t in tuned.trials if t["round"] == 2]) == KEEP
        assert tuned.images_used == sum(t["images_trained"] for t in tuned.trials)
        last = [t for t in tuned.trials if t["round"] == 2]
        best = max(last, key=lambda t: (t["val_accuracy"], -t["val_loss"]))
        assert tuned.chosen_lr == best["lr"]
        assert set(tuned.to_dict()) >= {"chosen_lr", "trials", "images_used", "method", "reason"}
    assert cnn["result"].images_used == vit["result"].images_used
    assert [t["images_trained"] for t in cnn["result"].trials] == [
        t["images_trained"] for t in vit["result"].trials
    ]
    # Trials of at most the whole split are single passes: the budget is as planned.
    assert cnn["result"].images_used == tuning_budget(4, n_train, 32)


def test_a_number_for_lr_is_kept_and_train_model_refuses_auto(tiny: dict) -> None:
    config = TrainConfig(epochs=1, lr=3e-4)
    result = tune_learning_rate(
        lambda: (_ for _ in ()).throw(AssertionError("no model needed")), (None, None),
        (None, None), config, None, tiny["runtime"], family="vit",
    )  # fmt: skip
    assert result.chosen_lr == 3e-4 and result.trials == [] and result.images_used == 0
    runtime = tiny["runtime"]
    built = build_model("vit-nano", "vit", ["a", "b"], 16, "eager")
    model, preprocess = place_model(built, runtime)
    images = torch.zeros(4, 3, 16, 16, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 0, 1])
    auto = dataclasses.replace(config, lr="auto")
    with pytest.raises(CnnvitError, match="needs a number for lr"):
        train_model(model, preprocess, (images, labels), (images, labels), auto,
                    make_accelerator(runtime), runtime)  # fmt: skip
