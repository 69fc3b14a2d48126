"""Probes: hand-computed calibration figures, a constructed attention map, Grad-CAM on a model
that can only use one half of its images, faithfulness against random maps, and independence of
probes (a failing one leaves the others' results intact)."""

from __future__ import annotations

import itertools
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cnnvit.analyses import (
    CLAIM_METRICS,
    PROBES,
    ProbeContext,
    ProbedModel,
    calibration,
    explanations,
    locality,
    longrange,
    robustness,
    run_probes,
)
from cnnvit.config import DataConfig, TrainConfig
from cnnvit.data import prepare_data
from cnnvit.data.preprocess import BatchPreprocessor
from cnnvit.models.build import build_model
from cnnvit.runtime import make_accelerator, place_model, resolve_runtime
from cnnvit.training import Hooks, train_model
from cnnvit.training.recipe import resolve_recipe

RECIPE = dict(epochs=8, batch_size=32, lr=1e-3, weight_decay=0.05, warmup_fraction=0.1,
              label_smoothing=0.0, seed=0, eval_batch_size=256)  # fmt: skip


def _recipe(**changes) -> TrainConfig:
    names = TrainConfig.__dataclass_fields__
    values = {k: v for k, v in {**RECIPE, **changes}.items() if k in names}
    if "augment_strength" in names:
        values.setdefault("augment_strength", 1.0)
    return TrainConfig(**values)


def _train(spec, family, class_names, train, validation, runtime, size=16, **changes):
    built = build_model(spec, family, class_names, size, runtime.attention, seed=0)
    model, preprocess = place_model(built, runtime)
    recipe = resolve_recipe(_recipe(**changes), built.recipe, len(train[1]))
    result = train_model(model, preprocess, train, validation, recipe, make_accelerator(runtime),
                         runtime, Hooks(name=spec, log=lambda line: None))  # fmt: skip
    model = result.model.eval()
    return built, model, preprocess


@pytest.fixture(scope="module")
def runtime():
    return resolve_runtime("cpu", "fp32", "eager")  # fp32 on every host: the same figures


@pytest.fixture(scope="module")
def digits_context(runtime, tmp_path_factory) -> ProbeContext:
    """Nano CNN and ViT trained for a few epochs on 300 digits at 16 px."""
    data = prepare_data(DataConfig(dataset="digits", max_train_samples=300, max_eval_samples=100))
    names = data.class_names
    models = {}
    for family, spec in (("cnn", "convnext-nano"), ("vit", "vit-nano")):
        processor = build_model(spec, family, names, 16).processor
        train = data.tensors("train", processor)
        validation = data.tensors("validation", processor)
        test_images, test_labels = data.tensors("test", processor)
        built, model, preprocess = _train(spec, family, names, train, validation, runtime)
        models[family] = ProbedModel(family, spec, model, preprocess, test_images, validation[0])
    return ProbeContext(
        models=models,
        test_labels=test_labels,
        validation_labels=validation[1],
        class_names=names,
        runtime=runtime,
        train_config=_recipe(),
        seed=0,
        max_test_images=96,
        output_dir=tmp_path_factory.mktemp("analyses"),
    )


# ----------------------------------------------------------------------------- calibration


def _two_class_logits(confidences, predicted):
    """Logits whose softmax gives `confidence` to the `predicted` class of two."""
    rows = []
    for p, k in zip(confidences, predicted, strict=True):
        row = [math.log(1 - p), math.log(1 - p)]
        row[k] = math.log(p)
        rows.append(row)
    return torch.tensor(rows)


def test_ece_nll_brier_match_hand_computation():
    # Confidences 0.9 (right), 0.9 (wrong), 0.65 (right), 0.65 (right).
    logits = _two_class_logits([0.9, 0.9, 0.65, 0.65], [0, 0, 1, 1])
    labels = torch.tensor([0, 1, 1, 1])
    # Bin [0.867, 0.933): accuracy 1/2, confidence 0.9; bin [0.6, 0.667): accuracy 1, conf 0.65.
    ece = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.65)
    assert calibration.expected_calibration_error(logits, labels) == pytest.approx(ece, abs=1e-6)
    nll = -(math.log(0.9) + math.log(0.1) + 2 * math.log(0.65)) / 4
    assert calibration.negative_log_likelihood(logits, labels) == pytest.approx(nll, abs=1e-6)
    brier = (2 * 0.1**2 + 2 * 0.9**2 + 2 * (2 * 0.35**2)) / 4
    assert calibration.brier_score(logits, labels) == pytest.approx(brier, abs=1e-6)
    bins = calibration.reliability_bins(logits, labels)
    filled = [b for b in bins if b["count"]]
    assert [(b["count"], b["accuracy"]) for b in filled] == [(2, 1.0), (2, 0.5)]


def test_temperature_scaling_cools_an_overconfident_model():
    generator = torch.Generator().manual_seed(0)

    def sample(count):
        labels = torch.randint(0, 5, (count,), generator=generator)
        clean = torch.randn(count, 5, generator=generator)
        clean[torch.arange(count), labels] += 1.5  # right about 60% of the time
        return clean * 8, labels  # x8: far too confident for that accuracy

    validation, validation_labels = sample(2000)
    test, test_labels = sample(2000)
    temperature = calibration.fit_temperature(validation, validation_labels)
    assert temperature > 3  # the scale it has to undo
    before = calibration.summarise(test, test_labels)
    after = calibration.summarise(test / temperature, test_labels)
    assert after["nll"] < before["nll"] - 0.5
    assert after["ece"] < before["ece"] / 2
    assert after["accuracy"] == before["accuracy"]  # scaling never changes a prediction


# -------------------------------------------------------------------------------- locality


def test_mean_attention_distance_on_constructed_maps():
    grid, patch = 4, 4
    tokens = 1 + grid * grid
    cells = list(itertools.product(range(grid), range(grid)))
    attention = torch.zeros(1, 3, tokens, tokens)
    for q, (qr, qc) in enumerate(cells, start=1):
        attention[0, 0, q, q] = 1.0  # head 0: each patch only itself
        attention[0, 1, q, 1:] = 1.0 / len(cells)  # head 1: uniform over patches
        attention[0, 2, q, 0] = 0.5  # head 2: half on the class token, half on the mirror
        mirror = cells.index((qr, grid - 1 - qc)) + 1
        attention[0, 2, q, mirror] += 0.5
    got = locality.mean_attention_distance(attention, grid, patch, prefix_tokens=1)

    def pixels(a, b):
        return patch * math.hypot(a[0] - b[0], a[1] - b[1])

    uniform = np.mean([np.mean([pixels(a, b) for b in cells]) for a in cells])
    mirrored = np.mean([pixels((r, c), (r, grid - 1 - c)) for r, c in cells])
    assert got.tolist() == pytest.approx([0.0, uniform, mirrored], abs=1e-5)
    assert mirrored == pytest.approx(patch * (3 + 1 + 1 + 3) / 4)  # |2c - 3| over c = 0..3


def test_mass_radius_of_a_point_and_a_ring():
    point = torch.zeros(9, 9)
    point[4, 4] = 1
    assert locality.mass_radius(point, (4.0, 4.0), 0.9) == 0.0
    ring = torch.zeros(9, 9)
    ring[4, 0] = ring[4, 8] = ring[0, 4] = ring[8, 4] = 1
    assert locality.mass_radius(ring, (4.0, 4.0), 0.5) == pytest.approx(4.0)


class _BoxStack(torch.nn.Module):
    """Stacked 3x3 mean filters per channel: the receptive field of layer k is known exactly."""

    def __init__(self, layers):
        super().__init__()
        self.convs = torch.nn.ModuleList()
        for _ in range(layers):
            conv = torch.nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False)
            torch.nn.init.constant_(conv.weight, 1 / 9)
            self.convs.append(conv)

    def forward(self, pixel_values, output_hidden_states=False):
        states = [pixel_values]
        for conv in self.convs:
            states.append(conv(states[-1]))
        return SimpleNamespace(hidden_states=tuple(states), logits=states[-1].mean((2, 3)))


def test_effective_receptive_field_of_stacked_mean_filters_matches_scipy():
    from scipy.signal import convolve2d

    processor = SimpleNamespace(do_rescale=True, rescale_factor=1 / 255, do_normalize=False)
    preprocess = BatchPreprocessor(processor, torch.device("cpu"))
    images = torch.randint(0, 256, (4, 3, 17, 17), dtype=torch.uint8)
    probed = ProbedModel("cnn", "box", _BoxStack(3).eval(), preprocess, images, images)
    fields = locality.effective_receptive_fields(probed, images)
    kernel = np.zeros((17, 17))
    kernel[8, 8] = 1.0
    radii = []
    for field in fields:
        kernel = convolve2d(kernel, np.full((3, 3), 1 / 9), mode="same")  # one more layer
        np.testing.assert_allclose(field["map"].numpy(), kernel / kernel.sum(), atol=1e-6)
        radii.append(field["radius90_pixels"])
    assert radii == sorted(radii) and radii[0] < radii[-1]
    assert fields[0]["radius50_pixels"] <= fields[0]["radius90_pixels"] <= math.sqrt(2)


def test_locality_probe_on_trained_models(digits_context):
    result = locality.run(digits_context)
    vit = result["models"]["vit"]
    distances = np.array(vit["attention_distance_pixels"])
    assert distances.shape == (4, 2)  # vit-nano: 4 layers, 2 heads
    # Between 0 and the largest patch-centre distance of a 4x4 grid of 4-px patches.
    assert (distances >= 0).all() and (distances <= 4 * math.hypot(3, 3)).all()
    for family in ("cnn", "vit"):
        for field in result["models"][family]["erf"]:
            assert 0 <= field["radius50_pixels"] <= field["radius90_pixels"] <= 16 * math.sqrt(2)
    assert set(result["claims"]) == set(CLAIM_METRICS["locality"])


# ---------------------------------------------------------------------------- explanations


def _half_signal_images(count, seed):
    """16 px images whose class (0-2) is the column of a vertical bar in the left half; the
    right half is noise, so only the left half can inform a prediction."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count)
    images = rng.integers(0, 60, (count, 16, 16), dtype=np.uint8)
    for i, label in enumerate(labels):
        column = 1 + 2 * label
        images[i, 2:14, column : column + 2] = 230
    x = torch.from_numpy(images).unsqueeze(1).repeat(1, 3, 1, 1)
    return x, torch.from_numpy(labels).long()


def test_gradcam_puts_its_mass_on_the_half_that_decides(runtime):
    train, validation = _half_signal_images(240, 0), _half_signal_images(60, 1)
    test_images, test_labels = _half_signal_images(48, 2)
    _, model, preprocess = _train("convnext-nano", "cnn", ["a", "b", "c"], train, validation,
                                  runtime, augment=False, epochs=6)  # fmt: skip
    probed = ProbedModel("cnn", "convnext-nano", model, preprocess, test_images, validation[0])
    maps, side = explanations.gradcam_maps(probed, test_images, test_labels)
    assert side >= 4  # not a 1x1 map
    left = maps[:, :, :8].sum(dim=(1, 2)) / maps.sum(dim=(1, 2)).clamp(min=1e-12)
    assert float(left.mean()) > 0.65, left


def test_deletion_auc_is_lower_for_gradcam_than_for_random_maps(digits_context):
    probed = digits_context.models["cnn"]
    index = digits_context.test_subset(48)
    images = probed.test_images[index]
    targets = digits_context.logits("cnn")[index].argmax(1)
    maps, side = explanations.gradcam_maps(probed, images, targets)
    random = explanations.random_maps(len(index), side, tuple(images.shape[-2:]), seed=5)
    ours = explanations.deletion_insertion(probed, images, maps, targets, digits_context.runtime)
    base = explanations.deletion_insertion(probed, images, random, targets, digits_context.runtime)
    assert ours["deletion_auc"].mean() < base["deletion_auc"].mean()
    # Both curves start at the unaltered image's probability and deletion ends at a black image.
    assert ours["deletion_curve"][0] == pytest.approx(base["deletion_curve"][0])


def test_attention_rollout_of_identity_layers_is_the_identity():
    eye = torch.eye(5).expand(2, 3, 5, 5)
    assert torch.allclose(explanations.attention_rollout([eye, eye]), torch.eye(5).expand(2, 5, 5))
    uniform = torch.full((1, 1, 4, 4), 0.25)
    rolled = explanations.attention_rollout([uniform])
    # (A + I) / 2 with A uniform: 0.625 on the diagonal, 0.125 elsewhere.
    assert torch.allclose(rolled[0].diagonal(), torch.full((4,), 0.625))
    assert torch.allclose(rolled[0].sum(dim=-1), torch.ones(4))


# ------------------------------------------------------------------------ the other probes


def test_robustness_probe_on_trained_models(digits_context):
    result = robustness.run(digits_context)
    cap = min(robustness.ROBUSTNESS_IMAGES, digits_context.max_test_images)
    index = digits_context.test_subset(cap)
    assert result["settings"]["test_images"] == len(index)
    for family, model in result["models"].items():
        clean = digits_context.logits(family)[index].argmax(1) == digits_context.test_labels[index]
        assert model["clean_accuracy"] == pytest.approx(float(clean.float().mean()))
        curve = model["accuracy"]["gaussian_noise"]
        assert len(curve) == 5 and all(0 <= a <= 1 for a in curve)
        assert model["accuracy"]["occlusion"][-1] < model["clean_accuracy"]
        assert model["relative_robustness"] == pytest.approx(
            model["mean_corruption_accuracy"] / model["clean_accuracy"]
        )
    interval = result["relative_robustness_difference_vit_minus_cnn"]["ci95"]
    assert interval[0] <= result["relative_robustness_difference_vit_minus_cnn"]["estimate"]
    assert tuple(result["claims"]) == CLAIM_METRICS["robustness"]


def test_long_range_task_depends_only_on_the_two_corners():
    images, labels = longrange.make_task(400, seed=1, pattern_seed=0)
    side, far = longrange.PATTERN_SIDE, longrange.IMAGE_SIZE - longrange.PATTERN_SIDE
    same = (images[:, :, :side, :side] == images[:, :, far:, far:]).flatten(1).all(1)
    assert torch.equal(same.long(), labels)
    assert abs(float(labels.float().mean()) - 0.5) < 0.01
    # Another draw of the same task shares the patterns but not the images.
    other, _ = longrange.make_task(400, seed=2, pattern_seed=0)
    corners = {tuple(x[0, :side, :side].flatten().tolist()) for x in torch.cat([images, other])}
    assert len(corners) <= longrange.PATTERNS
    assert not torch.equal(images, other)


# ----------------------------------------------------------------------------- run_probes


def test_a_failing_probe_leaves_the_others_results_intact(digits_context, monkeypatch, tmp_path):
    earlier = {"probe": "locality", "status": "ok", "claims": {"x": 1}}
    (tmp_path / "locality.json").write_text(json.dumps(earlier))

    def broken(context):
        raise RuntimeError("attention weights unavailable\nsecond line")

    monkeypatch.setitem(PROBES, "locality", broken)
    outcomes = run_probes(digits_context, ["locality", "calibration"], output_dir=tmp_path)
    assert outcomes["locality"].status == "failed"
    assert outcomes["locality"].error == "RuntimeError: attention weights unavailable"
    assert json.loads((tmp_path / "locality.json").read_text()) == earlier  # not overwritten
    failure = json.loads((tmp_path / "locality.failed.json").read_text())
    assert failure["error"] == outcomes["locality"].error
    saved = json.loads((tmp_path / "calibration.json").read_text())
    assert outcomes["calibration"].status == "ok" and saved["status"] == "ok"
    assert tuple(saved["claims"]) == CLAIM_METRICS["calibration"]
    for family in ("cnn", "vit"):
        assert 0 <= saved["claims"]["ece"][family] <= 1
        assert saved["models"][family]["temperature"] > 0
    assert (tmp_path / "calibration-reliability.png").stat().st_size > 1000


def test_unknown_probe_is_a_one_line_error(digits_context, tmp_path):
    from cnnvit.errors import CnnvitError

    with pytest.raises(CnnvitError, match="unknown probe 'nope'"):
        run_probes(digits_context, ["nope"], output_dir=tmp_path)


def test_probe_recipe_takes_the_learning_rate_the_run_recorded():
    from cnnvit.analyses.context import FALLBACK_LR, recipe_for_probe

    tuned = TrainConfig(lr="auto")
    recipe = recipe_for_probe(tuned, {"lr": 3e-4}, epochs=6, augment=False)
    assert (recipe.lr, recipe.epochs, recipe.augment) == (3e-4, 6, False)
    assert recipe_for_probe(tuned, None).lr == FALLBACK_LR
    assert recipe_for_probe(TrainConfig(lr=2e-3), {"lr": 3e-4}).lr == 2e-3  # a number is kept
    assert recipe_for_probe(TrainConfig(lr="usual"), {"lr": 2e-3}).lr == 2e-3
