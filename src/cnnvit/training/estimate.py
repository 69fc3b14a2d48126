"""How long a run's training will take on the CPU, said before it starts when it is hours.

The estimate is FLOPs over a measured rate: each model's forward FLOPs per image (counted as
`models.count_flops` counts them) times the images its training passes (3x the forward for each
training image and epoch, the forward alone for validation; a linear probe passes its training
and validation images once, through the forward, for its features), divided by the FLOP/s of
that model's own forward pass timed on a few of the run's images. Learning-rate tuning is not
counted. A run estimated at over `LONG_RUN_SECONDS` says so in one line and suggests
`--adapt probe` (pretrained models) or fewer images (presets).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch

from ..budgets import FLOPS_PER_TRAINED_IMAGE  # a training step: about three forwards

LONG_RUN_SECONDS = 3600.0
RATE_BATCH = 8  # images in the timed forward pass


@torch.inference_mode()
def forward_rate(
    model: torch.nn.Module, preprocess: Any, images: torch.Tensor, flops: int
) -> float:
    """FLOP/s of `model`'s forward pass on up to RATE_BATCH of `images` (one warm-up pass,
    then the faster of two timed passes)."""
    x = preprocess(images[:RATE_BATCH])
    was_training = model.training
    model.eval()
    try:
        model(pixel_values=x)
        seconds = []
        for _ in range(2):
            started = time.perf_counter()
            model(pixel_values=x)
            seconds.append(time.perf_counter() - started)
    finally:
        model.train(was_training)
    return flops * len(x) / max(min(seconds), 1e-9)


def training_seconds(
    flops_per_image: float, rate: float, train: int, validation: int, epochs: int, mode: str
) -> float:
    """Seconds training takes at `rate` FLOP/s under --adapt `mode` (probe,full: both)."""
    full = flops_per_image * epochs * (FLOPS_PER_TRAINED_IMAGE * train + validation)
    probe = flops_per_image * (train + validation)
    passes = {"probe": probe, "probe,full": probe + full}.get(mode, full)
    return passes / rate


def duration(seconds: float) -> str:
    """A duration as people say it: 45 s, 12 min, 3.4 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def long_run_line(
    estimates: Mapping[str, float],
    probe_estimates: Mapping[str, float] | None,
    limit: float = LONG_RUN_SECONDS,
) -> str | None:
    """The one line a run estimated at over `limit` seconds prints at its start, or None.

    `estimates` are each model's training seconds in the mode asked, by name;
    `probe_estimates` the same under --adapt probe, or None when a probe is not possible
    (a preset) or is what the run does already.
    """
    total = sum(estimates.values())
    if total <= limit:
        return None
    each = ", ".join(f"{name} {duration(s)}" for name, s in estimates.items())
    if probe_estimates is not None:
        instead = (
            f"--adapt probe trains a linear probe on frozen features instead, in about "
            f"{duration(sum(probe_estimates.values()))}"
        )
    else:
        instead = "--max-train-samples or fewer --epochs make it shorter"
    return (
        f"cnnvit: training is estimated at {duration(total)} on this CPU ({each}; from FLOPs "
        f"at each model's forward rate measured now, tuning not counted): {instead}"
    )
