"""Training budgets: how long each model trains, in epochs, training FLOPs or wall-clock seconds.

`--budget epochs:N` (the same as `--epochs N`) trains each model N passes over its training
split. `--budget flops:X` trains each model for the whole optimizer steps that fit in X training
FLOPs, counted as the FLOP counter's forward FLOPs per image x 3 (forward and backward) x the
images each step trains, so a model stops at most one step short of X; `flops:auto` is X =
--epochs passes of the cheaper model. `--budget time:S` trains each model for S seconds of
training steps on this machine (validation excluded): the steps are estimated from a short
measured rate (`measure_step_rate`, a few steps on a copy of the model), and the loop refines
that estimate as it trains and stops at the deadline. Every schedule (warm-up, cosine decay,
the progressive regularisation share) is laid out over the model's own steps.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..budgets import FLOPS_PER_TRAINED_IMAGE, Budget


def steps_per_epoch(n_train: int, batch_size: int, world: int = 1) -> int:
    """Optimizer steps in one pass over `n_train` images split over `world` processes."""
    return max(1, math.ceil(math.ceil(n_train / world) / batch_size))


def images_in_steps(steps: int, n_train: int, batch_size: int) -> int:
    """Images trained in the first `steps` steps (each epoch's last batch may be short)."""
    per_epoch = steps_per_epoch(n_train, batch_size)
    full, rest = divmod(steps, per_epoch)
    return full * n_train + min(rest * batch_size, n_train)


def flop_steps(flops: float, flops_per_image: int, n_train: int, batch_size: int) -> int:
    """The whole steps that fit in `flops` training FLOPs (at least one): the FLOPs they spend
    are at most `flops` and less than one step short of it."""
    images = int(flops // (FLOPS_PER_TRAINED_IMAGE * flops_per_image))
    full, rest = divmod(images, n_train)
    steps = full * steps_per_epoch(n_train, batch_size) + rest // batch_size
    return max(1, steps)


def measure_step_rate(
    model: torch.nn.Module,
    preprocess: Any,
    train: tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
    runtime: Any,
    steps: int = 3,
) -> float:
    """Training steps per second of `model`, from `steps` timed steps (after one untimed) on a
    copy, so the model itself is untouched; used to lay a time budget's schedule out."""
    probe = copy.deepcopy(model)
    probe.train()
    optimizer = torch.optim.AdamW([p for p in probe.parameters() if p.requires_grad], lr=1e-6)
    x_all, y_all = train
    device = next(probe.parameters()).device
    started = 0.0
    for step in range(steps + 1):
        if step == 1:
            started = time.perf_counter()
        index = torch.randint(len(y_all), (min(batch_size, len(y_all)),))
        x = preprocess(x_all[index].to(device), None, None)
        with runtime.autocast():
            logits = probe(pixel_values=x).logits.float()
        F.cross_entropy(logits, y_all[index].to(device)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = max(time.perf_counter() - started, 1e-6)
    del probe, optimizer
    return steps / seconds


def spent(
    budget: Budget, history: list[dict[str, Any]], flops_per_image: int, n_train: int
) -> dict[str, Any]:
    """What one model spent under `budget`, from its history rows: training FLOPs, seconds,
    images, steps and the epochs they make (fractional when the last one was cut)."""
    images = sum(int(row.get("images", n_train)) for row in history)
    return {
        "mode": budget.mode,
        "budget": budget.value,
        "flops": images * flops_per_image * FLOPS_PER_TRAINED_IMAGE,
        "seconds": sum(float(row.get("seconds", 0.0)) for row in history),
        "images": images,
        "steps": sum(int(row.get("steps", 0)) for row in history),
        "epochs": images / max(1, n_train),
    }


def planned_steps(
    budget: Budget,
    flops_per_image: int,
    n_train: int,
    batch_size: int,
    rate: Callable[[], float],
    earlier: int | None = None,
) -> int | None:
    """The optimizer steps a model's schedule is laid out over under `budget`: None for an
    epoch budget (--epochs passes), the whole steps within a FLOP budget, or for a time budget
    `rate()` steps per second (measured once: `earlier`, a resumed run's plan, is kept)."""
    if budget.mode == "flops":
        assert budget.value is not None  # flops:auto is resolved before training
        return flop_steps(budget.value, flops_per_image, n_train, batch_size)
    if budget.mode == "time":
        return earlier or max(1, round(rate() * float(budget.value or 0)))
    return None


def budget_record(budget: Budget, asked: str) -> dict[str, Any]:
    """run.json's `budget` block: the mode, what was asked, the amount and the schedule rule."""
    schedule = {
        "epochs": "warm-up and cosine decay over --epochs passes",
        "flops": "warm-up and cosine decay over the whole steps within the FLOP budget",
        "time": (
            "steps estimated from a measured rate; warm-up and cosine decay over that estimate, "
            "refined from the rate as training goes, so the decay ends at the deadline, where "
            "training stops (validation excluded from the time)"
        ),
    }[budget.mode]
    return {
        "mode": budget.mode,
        "asked": asked,
        "value": budget.value,
        "text": budget.text,
        "describe": budget.describe(),
        "schedule": schedule + "; the progressive regularisation share rises over those epochs",
        "flops_per_trained_image": f"forward FLOPs x {FLOPS_PER_TRAINED_IMAGE}",
    }
