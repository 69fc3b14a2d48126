"""Batch preprocessing on tensors: uint8 images to model inputs, with augmentation.

Images arrive as uint8 (B, 3, H, W) already resized by the model's image processor (data.py).
Here whole batches are rescaled and normalised with that processor's own factors, and, during
training, augmented with one random affine transform per image applied through a single
`grid_sample` call. This replaces per-image PIL work in the loop, which is what makes image
training slow on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Random affine augmentation; the defaults change no label's meaning (no flips)."""

    max_rotation_degrees: float = 10.0
    max_translate_fraction: float = 0.1  # of the image side
    scale_range: tuple[float, float] = (0.9, 1.1)
    hflip: bool = False


class BatchPreprocessor:
    """Turns uint8 batches into normalised float inputs for one model, on one device."""

    def __init__(self, processor: Any, device: torch.device, channels_last: bool = False) -> None:
        do_rescale = getattr(processor, "do_rescale", True)
        do_normalize = getattr(processor, "do_normalize", True)
        scale = float(getattr(processor, "rescale_factor", 1 / 255)) if do_rescale else 1.0
        mean = getattr(processor, "image_mean", None) if do_normalize else None
        std = getattr(processor, "image_std", None) if do_normalize else None
        mean_t = torch.tensor(mean if mean is not None else [0.0] * 3, dtype=torch.float32)
        std_t = torch.tensor(std if std is not None else [1.0] * 3, dtype=torch.float32)
        # Fold rescale and normalise into one multiply-add: x * (s / std) - mean / std.
        self.multiplier = (scale / std_t).view(1, 3, 1, 1).to(device)
        self.offset = (-mean_t / std_t).view(1, 3, 1, 1).to(device)
        self.device = device
        self.channels_last = channels_last

    def __call__(
        self,
        images_uint8: torch.Tensor,
        augment: AugmentConfig | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """(B, 3, H, W) uint8 -> (B, 3, H, W) float32 model input."""
        x = images_uint8.to(self.device, non_blocking=True).float()
        if augment is not None:
            x = random_affine(x, augment, generator)
        x = torch.addcmul(self.offset, x, self.multiplier)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def random_affine(
    x: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One random rotation/scale/shift (and optional flip) per image, zero-filled borders.

    x: float (B, C, H, W) in pixel units. The random numbers come from `generator` on the CPU,
    so a seed gives the same augmentation on every device.
    """
    batch = x.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(batch, generator=generator) * (high - low) + low

    angle = uniform(-config.max_rotation_degrees, config.max_rotation_degrees) * (math.pi / 180)
    scale = uniform(*config.scale_range)
    shift_x = uniform(-config.max_translate_fraction, config.max_translate_fraction) * 2
    shift_y = uniform(-config.max_translate_fraction, config.max_translate_fraction) * 2
    flip = torch.ones(batch)
    if config.hflip:
        flip = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0)
    # affine_grid maps output coordinates to input coordinates in [-1, 1]: the inverse of
    # the transform seen in the picture, so divide by the scale.
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift_x], 1), torch.stack([sin * flip, cos, shift_y], 1)], 1
    ).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
