"""--image-size auto: presets see the images at their own size, rounded up to a size they take.

Digits are 8x8: showing them at 32 px gives a ViT with 4x4 patches 64 tokens of which each covers
half a pixel of the original, and costs the default comparison most of its time. The rule maps
each dataset to the smallest size every preset accepts at or above its own, capped at 32 px.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnvit.config import DataConfig, auto_image_size, build_config
from cnnvit.data import prepare_data
from cnnvit.errors import CnnvitError
from cnnvit.evaluation import inference_cost
from cnnvit.models import build_model
from cnnvit.models.presets import PRESETS
from cnnvit.pipeline import image_size_for
from cnnvit.runtime import place_model, resolve_runtime


@pytest.mark.parametrize(
    ("side", "expected"), [(1, 16), (8, 16), (16, 16), (17, 32), (28, 32), (32, 32), (500, 32)]
)
def test_auto_size_rounds_up_to_sixteen_within_sixteen_to_thirty_two(side, expected):
    assert auto_image_size(side) == expected


@pytest.mark.parametrize("side", [8, 20, 28, 100])
def test_every_preset_accepts_the_auto_size(side):
    size = auto_image_size(side)
    assert all(size % preset.stride == 0 for preset in PRESETS.values())


def test_digits_are_eight_pixels_and_train_at_sixteen():
    data = prepare_data(DataConfig(dataset="digits", max_train_samples=50, max_eval_samples=20))
    assert data.native_side() == 8
    assert image_size_for("auto", data) == 16
    assert image_size_for(24, data) == 24  # a number given is kept


def test_native_side_is_the_median_longer_side_of_a_folder(tmp_path: Path):
    rng = np.random.default_rng(0)
    for klass, sizes in enumerate([[(28, 20), (28, 28), (40, 10)], [(28, 28), (12, 12)]]):
        folder = tmp_path / "set" / f"c{klass}"
        folder.mkdir(parents=True)
        for i, (w, h) in enumerate(sizes * 4):
            pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    data = prepare_data(DataConfig(dataset=str(tmp_path / "set")))
    sides = [max(Image.open(p).size) for p in sorted((tmp_path / "set").rglob("*.png"))]
    assert data.native_side() in set(sides)
    assert data.native_side() == 28  # most images are 28 px on their longer side
    assert image_size_for("auto", data) == 32


def test_image_size_flag_takes_auto_or_a_whole_number():
    assert build_config({}).models.image_size == "auto"
    assert build_config({"image_size": "24"}).models.image_size == 24
    assert isinstance(build_config({"image_size": 24}).models.image_size, int)
    for bad in ("big", 7, 16.5):
        with pytest.raises(CnnvitError, match="image-size|image_size"):
            build_config({"image_size": bad})


def test_inference_is_timed_at_the_test_split_size_when_it_is_smaller():
    runtime = resolve_runtime("cpu", "fp32", "sdpa")
    built = build_model("vit-nano", "vit", ["a", "b"], 16, "sdpa")
    model, preprocess = place_model(built, runtime)
    images = torch.randint(0, 255, (10, 3, 16, 16), dtype=torch.uint8)
    small = inference_cost(model, preprocess, images, batch_size=512, repeats=1)
    large = inference_cost(model, preprocess, images, batch_size=4, repeats=1)
    assert small["inference_batch_size"] == 10
    assert large["inference_batch_size"] == 4
    assert small["inference_images_per_second"] > 0 and small["latency_ms_batch1"] > 0
