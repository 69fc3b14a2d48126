"""--patch-size auto: a ViT preset's patch covers 4x4 of the images' own pixels.

Digits are 8x8: shown at 32 px, a ViT with 4x4 patches gets 64 tokens that each repeat one
original pixel, and it spent most of the default comparison's time on them. With 8-px patches it
gets 16 tokens holding the same pixels, while the CNN keeps its 32-px input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnvit.config import DataConfig, auto_patch_size, build_config
from cnnvit.data import prepare_data
from cnnvit.errors import CnnvitError
from cnnvit.evaluation import inference_cost
from cnnvit.models import build_model
from cnnvit.pipeline import patch_size_for
from cnnvit.runtime import place_model, resolve_runtime


@pytest.mark.parametrize(
    ("side", "image_size", "expected"),
    [(8, 32, 8), (16, 32, 8), (17, 32, 4), (28, 32, 4), (500, 32, 4), (8, 16, 4),
     (8, 64, 16), (8, 48, 12)],
)  # fmt: skip
def test_auto_patch_covers_four_of_the_images_own_pixels(side, image_size, expected):
    patch = auto_patch_size(side, image_size)
    assert patch == expected
    assert image_size % patch == 0


def test_digits_get_sixteen_tokens_at_thirty_two_pixels():
    data = prepare_data(DataConfig(dataset="digits", max_train_samples=50, max_eval_samples=20))
    assert data.native_side() == 8
    assert patch_size_for("auto", 32, data) == 8
    assert patch_size_for(4, 32, data) == 4  # a number given is kept
    built = build_model("vit-micro", "vit", ["a", "b"], 32, "sdpa", patch_size=8)
    tokens = built.model(pixel_values=torch.zeros(1, 3, 32, 32), output_hidden_states=True)
    assert tokens.hidden_states[-1].shape[1] == 16 + 1  # 4x4 patches and the class token
    cnn = build_model("resnet-micro", "cnn", ["a", "b"], 32, "sdpa", patch_size=8)
    assert not hasattr(cnn.model.config, "patch_size")  # CNNs ignore it


def test_native_side_is_the_median_longer_side_of_a_folder(tmp_path: Path):
    rng = np.random.default_rng(0)
    for klass, sizes in enumerate([[(28, 20), (28, 28), (40, 10)], [(28, 28), (12, 12)]]):
        folder = tmp_path / "set" / f"c{klass}"
        folder.mkdir(parents=True)
        for i, (w, h) in enumerate(sizes * 4):
            pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    data = prepare_data(DataConfig(dataset=str(tmp_path / "set")))
    assert data.native_side() == 28  # most images are 28 px on their longer side
    assert patch_size_for("auto", 32, data) == 4


def test_patch_size_flag_takes_auto_or_a_divisor_of_the_image_size():
    assert build_config({}).models.patch_size == "auto"
    assert build_config({"patch_size": "8"}).models.patch_size == 8
    assert isinstance(build_config({"patch_size": 8}).models.patch_size, int)
    for bad in ("big", 5, 2.5, 0):
        with pytest.raises(CnnvitError, match="patch-size|patch_size"):
            build_config({"patch_size": bad})


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
