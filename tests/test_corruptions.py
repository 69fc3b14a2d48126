"""Corruptions: severity ordering, seeded reproducibility, and agreement with reference codecs."""

from __future__ import annotations

import io

import matplotlib.colors
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from sklearn.datasets import load_digits

from cnnvit.analyses.corruptions import (
    ALL_CORRUPTIONS,
    BRIGHTNESS_SHIFT,
    GAUSSIAN_BLUR_SIGMA,
    IMPULSE_NOISE_AMOUNT,
    JPEG_QUALITY,
    PIXELATE_RATIO,
    SEVERITIES,
    corrupt,
)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """32 float images in [0, 1], (32, 3, 32, 32): digits upsampled, tinted, on a colour ramp."""
    digits = load_digits()
    x = torch.tensor(digits.images[:32], dtype=torch.float32).unsqueeze(1) / 16
    x = torch.nn.functional.interpolate(x, size=32, mode="bilinear", align_corners=False)
    ramp = torch.linspace(0.1, 0.5, 32).view(1, 1, 1, 32)
    tint = torch.tensor([0.9, 0.6, 0.3]).view(1, 3, 1, 1)
    return (0.6 * x * tint + ramp * (1 - x)).clamp(0, 1)


@pytest.mark.parametrize("name", list(ALL_CORRUPTIONS))
def test_more_severe_changes_more_and_seed_reproduces(images, name):
    changes = []
    for severity in range(1, SEVERITIES[name] + 1):
        out = corrupt(images, name, severity, seed=3)
        assert out.shape == images.shape and out.dtype == images.dtype
        assert float(out.min()) >= 0 and float(out.max()) <= 1
        assert torch.equal(out, corrupt(images, name, severity, seed=3))  # same seed, same image
        changes.append(float((out - images).abs().mean()))
    assert changes[0] > 0
    assert all(b > a for a, b in zip(changes, changes[1:], strict=False)), changes
    if name not in ("gaussian_blur", "contrast", "brightness", "jpeg", "pixelate"):
        other = corrupt(images, name, SEVERITIES[name], seed=4)  # random ones differ by seed
        assert not torch.equal(other, corrupt(images, name, SEVERITIES[name], seed=3))


def test_blur_matches_scipy_gaussian_filter(images):
    for severity, sigma in enumerate(GAUSSIAN_BLUR_SIGMA, start=1):
        ours = corrupt(images[:2], "gaussian_blur", severity).numpy()
        reference = gaussian_filter(images[:2].numpy(), sigma=(0, 0, sigma, sigma),
                                    mode="nearest", truncate=4.0)  # fmt: skip
        np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_brightness_matches_an_hsv_round_trip(images):
    x = images[:2].clone()
    x[0, :, :2, :2] = 0  # black pixels: HSV gives them saturation 0
    for severity, shift in enumerate(BRIGHTNESS_SHIFT, start=1):
        hsv = matplotlib.colors.rgb_to_hsv(x.permute(0, 2, 3, 1).numpy())
        hsv[..., 2] = np.clip(hsv[..., 2] + shift, 0, 1)
        reference = matplotlib.colors.hsv_to_rgb(hsv)
        ours = corrupt(x, "brightness", severity).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_pixelate_matches_pillow_box_resampling(images):
    pixels = (images[:3] * 255).round().to(torch.uint8)
    for severity, ratio in enumerate(PIXELATE_RATIO, start=1):
        ours = corrupt(pixels.float() / 255, "pixelate", severity) * 255
        for i, image in enumerate(pixels.permute(0, 2, 3, 1).numpy()):
            small = int(32 * ratio)
            pil = Image.fromarray(image).resize((small, small), Image.BOX)
            reference = np.asarray(pil.resize((32, 32), Image.BOX)).astype(np.float32)
            # Pillow rounds to 8 bits after each pass, we round once: at most 1 level apart.
            diff = np.abs(ours[i].permute(1, 2, 0).numpy() - reference)
            assert diff.max() <= 1.01, (severity, diff.max())


def test_jpeg_is_pillows_codec_at_the_paper_qualities(images):
    pixels = (images[:1] * 255).round().to(torch.uint8)
    image = pixels[0].permute(1, 2, 0).numpy()
    for severity, quality in enumerate(JPEG_QUALITY, start=1):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        reference = np.asarray(Image.open(buffer).convert("RGB"))
        ours = (corrupt(pixels.float() / 255, "jpeg", severity)[0] * 255).round()
        np.testing.assert_array_equal(ours.permute(1, 2, 0).numpy().astype(np.uint8), reference)


def test_impulse_noise_flips_the_stated_share_to_black_or_white():
    x = torch.full((8, 3, 32, 32), 0.5)
    for severity, amount in enumerate(IMPULSE_NOISE_AMOUNT, start=1):
        out = corrupt(x, "impulse_noise", severity, seed=1)
        flipped = out != 0.5
        assert abs(float(flipped.float().mean()) - amount) < 0.2 * amount + 0.003
        assert set(out[flipped].unique().tolist()) <= {0.0, 1.0}


def test_occlusion_blacks_out_the_stated_share_and_shuffle_keeps_the_pixels(images):
    for severity, share in enumerate((0.15, 0.3, 0.45, 0.6, 0.75), start=1):
        out = corrupt(torch.ones(4, 3, 32, 32), "occlusion", severity, seed=2)
        assert abs(float((out == 0).float().mean()) - share) < 0.02
    for severity in (1, 2):
        out = corrupt(images, "patch_shuffle", severity, seed=2)
        # A permutation of cells: the same multiset of pixel values per image.
        assert torch.equal(out.flatten(1).sort(1).values, images.flatten(1).sort(1).values)


def test_unknown_corruption_and_severity_are_refused(images):
    with pytest.raises(KeyError):
        corrupt(images, "fog", 1)
    with pytest.raises(ValueError):
        corrupt(images, "contrast", 6)
