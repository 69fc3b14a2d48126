"""Training: one recipe for both models, written as an explicit loop on `accelerate`.

The recipe: AdamW (no weight decay on biases, norms, position embeddings and the class token),
linear warm-up then cosine decay, label smoothing, gradient clipping, batch-level augmentation
(preprocess.py). Images stay resident on the device as uint8 and are indexed per step, so there
is no DataLoader and no per-image work. `Accelerator` places the model; mixed precision is the
runtime's autocast (runtime.py: bf16 on CPUs with bf16 support and on CUDA).

Each epoch records train loss/accuracy (measured on the augmented training batches), validation
loss/accuracy and training seconds (validation excluded). The epoch with the best validation
accuracy is the one kept.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from ..config import TrainConfig
from ..data.preprocess import BatchPreprocessor
from ..errors import CnnvitError
from ..evaluation import predict
from ..measure import PeakMemory, synchronize
from ..runtime import Runtime, images_per_second
from .checkpoint import load_checkpoint, save_checkpoint
from .recipe import Recipe, overfitting, ramp_fraction, resolve_recipe


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices and kernels only: biases, norm scales and embeddings-as-tokens keep theirs."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim < 2 or "position_embeddings" in name or "cls_token" in name
        (no_decay if exempt else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


@dataclass
class TrainResult:
    """What training produced: the per-epoch history and the best model, ready to evaluate."""

    model: torch.nn.Module  # prepared by accelerate, best epoch's weights loaded
    history: list[dict[str, float]]
    best_epoch: int
    train_seconds: float
    train_images_per_second: float  # images trained / training seconds, all epochs
    peak_memory_mb: float


def train_model(
    model: torch.nn.Module,
    preprocess: BatchPreprocessor,
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    config: TrainConfig,
    accelerator: Accelerator,
    runtime: Runtime,
    name: str = "model",
    log: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    tracker_prefix: str | None = None,
    checkpoint_dir: Path | None = None,
) -> TrainResult:
    """Train `model` with the shared recipe and return its best epoch by validation accuracy.

    `on_epoch` receives each epoch's history row as soon as the epoch ends (the run writer
    records it, so an interrupted run keeps its curve so far). With a `tracker_prefix` and an
    accelerator that has trackers (`Accelerator(log_with=...)`), each row is also logged to them
    at step = epoch under `tracker_prefix/`, so two models share one tracker run; calls without
    a prefix (learning-rate tuning trials) stay out of the tracker.

    With `checkpoint_dir`, every epoch is checkpointed there (checkpoint.py) and a checkpoint
    found there at the start is resumed: the epochs it holds are replayed to `on_epoch` and
    training continues with the next one.
    """
    log = log or (lambda line: tqdm.write(line, file=sys.stderr))
    device = accelerator.device
    train_x, train_y = train[0].to(device), train[1].to(device)
    count = len(train_y)
    # Several processes (torchrun, accelerate launch): each trains on its slice of every
    # epoch's permutation, so the effective batch is batch_size x processes.
    world, rank = accelerator.num_processes, accelerator.process_index
    shard_size = math.ceil(count / world)  # the last slice is padded to this length
    steps_per_epoch = math.ceil(shard_size / config.batch_size)
    # A prepared scheduler advances once per process at each optimizer step (accelerate's
    # convention), so the schedule is laid out in those ticks.
    total_steps = steps_per_epoch * config.epochs * world
    if not isinstance(config.lr, (int, float)):
        raise CnnvitError(
            "train_model needs a number for lr: choose one with training.tuning.tune_learning_rate"
        )
    # "auto" regularisation follows the budget (recipe.py); numbers given are kept.
    recipe = resolve_recipe(config, count)
    optimizer = runtime.optimizer(_param_groups(model, recipe.weight_decay), float(config.lr))
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, round(total_steps * recipe.warmup_fraction), total_steps
    )
    if checkpoint_dir is not None:
        # save_state/load_state cover every object the accelerator has prepared: forget the
        # ones from earlier calls (other models, tuning trials) so the checkpoint is this run's.
        accelerator.free_memory()
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    if config.compile:
        model = torch.compile(model)
    # "auto" augmentation and label smoothing wait until the run overfits, then ramp up if that
    # was in the run's first half (recipe.py): the first epoch that overfit, None while none has.
    overfit_epoch: int | None = None
    generator = torch.Generator().manual_seed(config.seed)
    # Augmentation draws differ between processes (one process: the same generator as ever).
    augment_generator = (
        generator if world == 1 else torch.Generator().manual_seed(config.seed + 1_000_003 * rank)
    )
    trained = shard_size * world  # images per epoch over all processes, padding included
    scaler = runtime.grad_scaler()

    history: list[dict[str, float]] = []
    best_accuracy, best_epoch, best_state = -1.0, 0, None
    first_epoch = 1
    resumed = load_checkpoint(accelerator, checkpoint_dir) if checkpoint_dir else None
    if resumed is not None:
        history = resumed["history"]
        for row in history:  # rows saved before they recorded their own overfitting test
            row.setdefault("overfitting", overfitting(
                row["train_accuracy"], row["val_accuracy"], count, len(validation[1])))  # fmt: skip
        best_accuracy, best_epoch = resumed["best_accuracy"], resumed["best_epoch"]
        best_state = resumed["best_state"]
        generator.set_state(resumed["generator"])
        augment_generator.set_state(resumed["augment_generator"])
        first_epoch = len(history) + 1
        overfit_epoch = _first_overfit_epoch(history, recipe)
        log(f"[{name}] resuming after epoch {len(history)} from {checkpoint_dir}")
        for row in history:
            if on_epoch is not None:
                on_epoch(row)
    # The bar draws only on a terminal (disable=None); logs get the per-epoch lines below.
    bar = tqdm(
        total=steps_per_epoch * config.epochs,
        initial=steps_per_epoch * (first_epoch - 1),
        desc=name,
        unit="step",
        leave=False,
        file=sys.stderr,
        disable=None if accelerator.is_main_process else True,
    )
    with PeakMemory(device) as memory:
        for epoch in range(first_epoch, config.epochs + 1):
            model.train()
            scale = (
                ramp_fraction(epoch, overfit_epoch, config.epochs, recipe.latest_onset)
                if recipe.deferred
                else 1
            )
            active = recipe.ramped(scale)
            augment = active.augment_config(config.hflip)
            # The same permutation on every process (one seed); each takes its own slice.
            order = shard(torch.randperm(count, generator=generator), world, rank).to(device)
            # Sums stay on the device: reading them every step would stall a GPU.
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            synchronize(device)
            start = time.perf_counter()
            for step in range(steps_per_epoch):
                index = order[step * config.batch_size : (step + 1) * config.batch_size]
                x = preprocess(train_x[index], augment, augment_generator)
                y = train_y[index]
                with runtime.autocast():
                    logits = model(pixel_values=x).logits.float()
                loss = F.cross_entropy(logits, y, label_smoothing=active.label_smoothing)
                accelerator.backward(scaler.scale(loss))
                if config.grad_clip_norm > 0:
                    scaler.unscale_(optimizer)
                    accelerator.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():  # plain cross-entropy, comparable with validation loss
                    loss_sum += F.cross_entropy(logits, y, reduction="sum")
                    correct += (logits.argmax(1) == y).sum()
                bar.update(1)
            synchronize(device)
            seconds = time.perf_counter() - start
            with runtime.autocast():
                val_logits, val_loss = predict(
                    model, preprocess, *validation, config.eval_batch_size, accelerator
                )
            val_accuracy = float((val_logits.argmax(1) == validation[1]).float().mean())
            train_accuracy = float(accelerator.reduce(correct, "sum")) / trained
            row = {
                "epoch": epoch,
                "train_loss": float(accelerator.reduce(loss_sum, "sum")) / trained,
                "train_accuracy": train_accuracy,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "seconds": seconds,
                "lr": scheduler.get_last_lr()[0],
                "regularised": scale > 0,
                "regularisation": float(scale),
                # recipe.overfitting: training accuracy above validation by > 2 standard errors
                "overfitting": overfitting(train_accuracy, val_accuracy, count, len(validation[1])),
            }
            history.append(row)
            if overfit_epoch is None:
                overfit_epoch = _first_overfit_epoch(history, recipe)
            if on_epoch is not None:
                on_epoch(row)
            if accelerator.trackers and tracker_prefix:
                logged = {f"{tracker_prefix}/{k}": float(v) for k, v in row.items() if k != "epoch"}
                accelerator.log(logged, step=epoch)
            if val_accuracy > best_accuracy:
                best_accuracy, best_epoch = val_accuracy, epoch
                best_state = {
                    k: v.detach().clone()
                    for k, v in _unwrap(accelerator, model).state_dict().items()
                }
            if checkpoint_dir is not None:
                loop_state = {"history": history, "best_accuracy": best_accuracy,
                              "best_epoch": best_epoch, "best_state": best_state,
                              "generator": generator.get_state(),
                              "augment_generator": augment_generator.get_state()}  # fmt: skip
                save_checkpoint(accelerator, checkpoint_dir, loop_state)
            bar.set_postfix(val_acc=f"{val_accuracy:.3f}")
            log(
                f"[{name}] epoch {epoch}/{config.epochs}  train loss {row['train_loss']:.3f} "
                f"acc {row['train_accuracy']:.3f} | val loss {val_loss:.3f} acc {val_accuracy:.3f}"
                f" | {seconds:.1f} s"
            )
    bar.close()
    assert best_state is not None
    _unwrap(accelerator, model).load_state_dict(best_state)
    epoch_seconds = [row["seconds"] for row in history]
    return TrainResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        train_seconds=sum(epoch_seconds),
        # The one definition (runtime.images_per_second): images trained over the training
        # seconds of every epoch, the first included and validation excluded, as the
        # benchmark's peers measure it.
        train_images_per_second=images_per_second(count * len(history), sum(epoch_seconds)),
        peak_memory_mb=memory.peak_mb,
    )


def _first_overfit_epoch(history: list[dict[str, float]], recipe: Recipe) -> int | None:
    """The first epoch of `history` whose row recorded overfitting (recipe.overfitting), after
    which the deferred regularisation ramps up if it lies in the run's first half
    (recipe.ramp_fraction); None if none did or nothing is deferred."""
    if not recipe.deferred:
        return None
    return next((int(row["epoch"]) for row in history if row["overfitting"]), None)


def shard(order: torch.Tensor, world: int, rank: int) -> torch.Tensor:
    """Process `rank`'s slice of `order`: every world-th index from rank on, after padding
    `order` by wrap-around to a multiple of `world` so all processes take equal steps
    (as torch's DistributedSampler does)."""
    if world == 1:
        return order
    padded = torch.cat([order, order[: (-len(order)) % world]])
    return padded[rank::world]


def _unwrap(accelerator: Accelerator, model: torch.nn.Module) -> torch.nn.Module:
    """The plain model under accelerate's and torch.compile's wrappers (same parameters)."""
    return accelerator.unwrap_model(model, keep_fp32_wrapper=True)
