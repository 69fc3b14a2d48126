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
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from tqdm.auto import tqdm

from ..data.preprocess import BatchPreprocessor
from ..errors import CnnvitError
from ..measure import PeakMemory, synchronize
from ..models.inference import predict
from ..runtime import Runtime, images_per_second
from .checkpoint import load_checkpoint, save_checkpoint
from .convergence import converged
from .recipe import COOL_DOWN_SHARE, Recipe, overfitting

_BLOCK = re.compile(r"\.(?:layer|layers|blocks)\.(\d+)\.")


def layer_depth(name: str, blocks: int) -> int:
    """A parameter's depth for layer-wise rate decay: 0 for the embeddings, i + 1 for
    transformer block i, blocks + 1 for what follows (final norm, classifier)."""
    match = _BLOCK.search(name)
    if match is not None:
        return int(match.group(1)) + 1
    return 0 if "embeddings" in name else blocks + 1


def _param_groups(
    model: torch.nn.Module, weight_decay: float, lr: float, layer_decay: float = 1.0
) -> list[dict[str, Any]]:
    """Decay matrices and kernels only: biases, norm scales and embeddings-as-tokens keep theirs.
    With `layer_decay` < 1 (transformers), depth d of n + 1 trains at lr x decay^(n + 1 - d)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    blocks = 1 + max((int(m.group(1)) for n, _ in named if (m := _BLOCK.search(n))), default=-1)
    groups: dict[tuple[bool, int], list[torch.nn.Parameter]] = {}
    for name, param in named:
        exempt = param.ndim < 2 or "position_embeddings" in name or "cls_token" in name
        depth = layer_depth(name, blocks) if layer_decay < 1 else blocks + 1
        groups.setdefault((exempt, depth), []).append(param)
    return [
        {"params": params, "weight_decay": 0.0 if exempt else weight_decay,
         "lr": lr * layer_decay ** (blocks + 1 - depth)}
        for (exempt, depth), params in sorted(groups.items(), key=lambda item: item[0])
    ]  # fmt: skip


@dataclass
class TrainResult:
    """What training produced: the recipe it followed, the per-epoch history and the best
    model, ready to evaluate."""

    model: torch.nn.Module  # prepared by accelerate, best epoch's weights loaded
    recipe: Recipe
    history: list[dict[str, float]]
    best_epoch: int
    train_seconds: float
    train_images_per_second: float  # images trained / training seconds, all epochs
    peak_memory_mb: float
    cool_down_from: int = 0  # --until-converged: the last epoch at the peak rate (0: none)


@dataclass
class Hooks:
    """Where a training run reports: its name in logs, a per-epoch callback (the run writer
    records each row, so an interrupted run keeps its curve), trackers under `tracker_prefix/`
    (tuning trials have none and stay out), and a folder to checkpoint every epoch in and
    resume from."""

    name: str = "model"
    log: Callable[[str], None] | None = None
    on_epoch: Callable[[dict[str, float]], None] | None = None
    tracker_prefix: str | None = None
    checkpoint_dir: Path | None = None


@dataclass
class LoopState:
    """What resuming needs: the history so far, the best epoch's weights, the data order and
    augmentation generators."""

    generator: torch.Generator
    augment_generator: torch.Generator
    history: list[dict[str, float]] = field(default_factory=list)
    best_accuracy: float = -1.0
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    budget: str = "epochs"
    cool_down_from: int = 0  # --until-converged: the epoch after which the cool-down began

    @property
    def steps(self) -> int:
        """Optimizer steps taken so far (every epoch's row says how many it took)."""
        return sum(int(row["steps"]) for row in self.history)

    @property
    def seconds(self) -> float:
        """Training seconds so far, validation excluded."""
        return sum(float(row["seconds"]) for row in self.history)

    def exhausted(self, recipe: Recipe, steps: int) -> bool:
        """Whether the budget is spent: `steps` steps taken, or the deadline reached."""
        late = recipe.deadline_seconds > 0 and self.seconds >= recipe.deadline_seconds
        return late or (recipe.deadline_seconds <= 0 and self.steps >= steps)

    def record(self, row: dict[str, float], model: torch.nn.Module) -> None:
        """Add an epoch's row; keep a copy of the weights if it is the best so far."""
        self.history.append(row)
        if row["val_accuracy"] > self.best_accuracy:
            self.best_accuracy, self.best_epoch = row["val_accuracy"], int(row["epoch"])
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def to_checkpoint(self) -> dict[str, Any]:
        return {"history": self.history, "best_accuracy": self.best_accuracy,
                "best_epoch": self.best_epoch, "best_state": self.best_state,
                "budget": self.budget, "cool_down_from": self.cool_down_from,
                "generator": self.generator.get_state(),
                "augment_generator": self.augment_generator.get_state()}  # fmt: skip

    def restore(self, saved: dict[str, Any]) -> None:
        if saved.get("budget", "epochs") != self.budget:
            raise CnnvitError(
                f"the checkpoint was trained under --budget {saved.get('budget', 'epochs')}, "
                f"not {self.budget}: resume the run with its own settings"
            )
        self.history, self.best_state = saved["history"], saved["best_state"]
        self.best_accuracy, self.best_epoch = saved["best_accuracy"], saved["best_epoch"]
        self.cool_down_from = int(saved.get("cool_down_from", 0))
        self.generator.set_state(saved["generator"])
        self.augment_generator.set_state(saved["augment_generator"])


@dataclass
class Plan:
    """The schedule: linear warm-up over `warmup_fraction` of `total` scheduler ticks, then
    cosine decay to zero at `total` (as transformers' get_cosine_schedule_with_warmup). A time
    budget refines `total` from the measured rate as it trains (`refine`), so the decay ends at
    the deadline; the scheduler's checkpoint keeps these fields, so a resumed run goes on with
    the same plan."""

    total: int
    warmup_fraction: float
    # --until-converged: warm-up over the cap's ticks (`total` at the start), then the peak
    # rate until `decay_start`, then linear decay to zero at `total` (set when it begins).
    stable: bool = False
    decay_start: int = -1
    cap: int = 0

    def __post_init__(self) -> None:
        self.cap = self.cap or self.total

    def __call__(self, tick: int) -> float:
        warmup = round((self.cap if self.stable else self.total) * self.warmup_fraction)
        if tick < warmup:
            return tick / max(1, warmup)
        if self.stable:
            if self.decay_start < 0 or tick < self.decay_start:
                return 1.0
            return max(0.0, 1 - (tick - self.decay_start) / max(1, self.total - self.decay_start))
        progress = min(1.0, (tick - warmup) / max(1, self.total - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    def refine(self, ticks: int, seconds: float, deadline: float) -> None:
        """Re-estimate the ticks that fit before `deadline` from `ticks` done in `seconds`."""
        if ticks >= REFINE_AFTER and seconds > 0:
            self.total = max(ticks, round(ticks * deadline / seconds))


REFINE_AFTER = 5  # steps before a time budget's measured rate replaces its first estimate


def train_model(
    model: torch.nn.Module,
    preprocess: BatchPreprocessor,
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    recipe: Recipe,
    accelerator: Accelerator,
    runtime: Runtime,
    hooks: Hooks | None = None,
) -> TrainResult:
    """Train `model` by `recipe` and return its best epoch by validation accuracy.

    With `hooks.checkpoint_dir`, every epoch is checkpointed there (checkpoint.py) and a
    checkpoint found there at the start is resumed: its epochs are replayed to `on_epoch` and
    training continues with the next one.
    """
    hooks = hooks or Hooks()
    log = hooks.log or (lambda line: tqdm.write(line, file=sys.stderr))
    device = accelerator.device
    train_x, train_y = train[0].to(device), train[1].to(device)
    # Several processes (torchrun, accelerate launch): each trains on its slice of every
    # epoch's permutation, so the effective batch is batch_size x processes.
    world, rank = accelerator.num_processes, accelerator.process_index
    steps = math.ceil(math.ceil(len(train_y) / world) / recipe.batch_size)
    total = recipe.steps or steps * recipe.epochs  # the budget's steps (training/budget.py)
    # A prepared scheduler advances once per process at each optimizer step (accelerate's
    # convention), so the schedule is laid out in those ticks.
    groups = _param_groups(model, recipe.weight_decay, recipe.lr, recipe.layer_decay)
    optimizer = runtime.optimizer(groups, recipe.lr)
    plan = Plan(total * world, recipe.warmup_fraction, stable=recipe.until_converged)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, plan)
    if hooks.checkpoint_dir is not None:
        # save_state/load_state cover every object the accelerator has prepared: forget the
        # ones from earlier calls (other models, tuning trials) so the checkpoint is this run's.
        accelerator.free_memory()
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    if recipe.compile:
        model = torch.compile(model)
    generator = torch.Generator().manual_seed(recipe.seed)
    # Augmentation draws differ between processes (one process: the same generator as ever).
    other = torch.Generator().manual_seed(recipe.seed + 1_000_003 * rank)
    state = LoopState(generator, generator if world == 1 else other, budget=recipe.budget)
    saved = load_checkpoint(accelerator, hooks.checkpoint_dir) if hooks.checkpoint_dir else None
    if saved is not None:
        state.restore(saved)
        log(f"[{hooks.name}] resuming after epoch {len(state.history)} from {hooks.checkpoint_dir}")
        for row in state.history:
            if hooks.on_epoch is not None:
                hooks.on_epoch(row)
    total = _stop_step(state, plan, recipe, steps, world, len(validation[1]), total)
    epoch_fn = _Epoch(model, optimizer, scheduler, preprocess, recipe, accelerator, runtime,
                      plan, total)  # fmt: skip
    # The bar draws only on a terminal (disable=None); logs get the per-epoch lines below.
    bar = tqdm(total=total, initial=state.steps, desc=hooks.name, unit="step", leave=False,
               file=sys.stderr, disable=None if accelerator.is_main_process else True)  # fmt: skip
    with PeakMemory(device) as memory:
        while not state.exhausted(recipe, total):
            row = epoch_fn(len(state.history) + 1, (train_x, train_y), validation, state, bar)
            state.record(row, _unwrap(accelerator, model))
            total = epoch_fn.total = _stop_step(state, plan, recipe, steps, world,
                                                len(validation[1]), total)  # fmt: skip
            _epoch_done(row, hooks, accelerator, state, recipe)
            bar.set_postfix(val_acc=f"{row['val_accuracy']:.3f}")
            log(
                f"[{hooks.name}] epoch {row['epoch']}/{recipe.epochs}  train loss "
                f"{row['train_loss']:.3f} acc {row['train_accuracy']:.3f} | val loss "
                f"{row['val_loss']:.3f} acc {row['val_accuracy']:.3f} | {row['seconds']:.1f} s"
            )
    bar.close()
    assert state.best_state is not None
    _unwrap(accelerator, model).load_state_dict(state.best_state)
    seconds = sum(row["seconds"] for row in state.history)
    return TrainResult(
        model=model,
        recipe=recipe,
        history=state.history,
        best_epoch=state.best_epoch,
        train_seconds=seconds,
        # The one definition (runtime.images_per_second): images trained over the training
        # seconds of every epoch, the first included and validation excluded, as the
        # benchmark's peers measure it.
        train_images_per_second=images_per_second(
            sum(int(row["images"]) for row in state.history), seconds
        ),
        peak_memory_mb=memory.peak_mb,
        cool_down_from=state.cool_down_from,
    )


def _stop_step(
    state: LoopState, plan: Plan, recipe: Recipe, steps: int, world: int, n_val: int, total: int
) -> int:
    """The step to stop at. Under --until-converged, once the convergence rule holds on the
    epochs so far (or the cap is a cool-down away), the cool-down begins: COOL_DOWN_SHARE of
    those epochs (at least one, within the cap) at a linearly falling rate."""
    if not recipe.until_converged:
        return total
    if plan.decay_start >= 0:  # cooling down (or resumed while cooling down)
        return plan.total // world
    done = len(state.history)
    cool = max(1, math.ceil(COOL_DOWN_SHARE * done))
    curve = [float(row["val_accuracy"]) for row in state.history]
    if (
        done == 0
        or done >= recipe.epochs
        or not (converged(curve, n_val) or done + cool >= recipe.epochs)
    ):
        return total
    cool = min(cool, recipe.epochs - done)
    state.cool_down_from = done
    plan.decay_start, plan.total = state.steps * world, (state.steps + cool * steps) * world
    return state.steps + cool * steps


def _epoch_done(
    row: dict[str, Any], hooks: Hooks, accelerator: Accelerator, state: LoopState, recipe: Recipe
) -> None:
    """Hand a finished epoch's row to the callback and trackers, and checkpoint it."""
    if hooks.on_epoch is not None:
        hooks.on_epoch(row)
    if accelerator.trackers and hooks.tracker_prefix:
        logged = {f"{hooks.tracker_prefix}/{k}": float(v) for k, v in row.items()
                  if k not in ("epoch", "steps", "images")}  # curves only  # fmt: skip
        accelerator.log(logged, step=int(row["epoch"]))
    if hooks.checkpoint_dir is not None:
        save_checkpoint(accelerator, hooks.checkpoint_dir, state.to_checkpoint())


@dataclass
class _Epoch:
    """One epoch: the training steps, then validation; returns the epoch's history row."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    preprocess: BatchPreprocessor
    recipe: Recipe
    accelerator: Accelerator
    runtime: Runtime
    plan: Plan
    total: int  # the budget's optimizer steps (a time budget stops at its deadline instead)

    def __post_init__(self) -> None:
        self.scaler = self.runtime.grad_scaler()  # fp16 only: its scale carries across epochs

    def __call__(
        self,
        epoch: int,
        train: tuple[torch.Tensor, torch.Tensor],
        validation: tuple[torch.Tensor, torch.Tensor],
        state: LoopState,
        bar: Any,
    ) -> dict[str, float]:
        model, optimizer, recipe, scaler = self.model, self.optimizer, self.recipe, self.scaler
        accelerator = self.accelerator
        device, world = accelerator.device, accelerator.num_processes
        share = recipe.share(epoch)
        augment, smoothing = recipe.augment_config(share), recipe.label_smoothing * share
        active = recipe.augment_strength > 0 or recipe.label_smoothing > 0
        # The same permutation on every process (one seed); each takes its own slice.
        order = torch.randperm(len(train[1]), generator=state.generator)
        order = shard(order, world, accelerator.process_index).to(device)
        # Sums stay on the device: reading them every step would stall a GPU.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        batches = order.split(recipe.batch_size)
        deadline, before = recipe.deadline_seconds, state.seconds
        if deadline <= 0:  # a step budget can end inside an epoch
            batches = batches[: self.total - state.steps]
        taken = images = 0
        model.train()
        synchronize(device)
        start = time.perf_counter()
        for index in batches:
            x = self.preprocess(train[0][index], augment, state.augment_generator)
            y = train[1][index]
            with self.runtime.autocast():
                logits = model(pixel_values=x).logits.float()
            loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
            accelerator.backward(scaler.scale(loss))
            if recipe.grad_clip_norm > 0:
                scaler.unscale_(optimizer)
                accelerator.clip_grad_norm_(model.parameters(), recipe.grad_clip_norm)
            scaler.step(optimizer)
            scaler.update()
            self.scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():  # plain cross-entropy, comparable with validation loss
                loss_sum += F.cross_entropy(logits, y, reduction="sum")
                correct += (logits.argmax(1) == y).sum()
            bar.update(1)
            taken, images = taken + 1, images + len(index)
            if deadline > 0:  # a time budget: refine the schedule, stop at the deadline
                synchronize(device)
                elapsed = before + time.perf_counter() - start
                self.plan.refine((state.steps + taken) * world, elapsed, deadline)
                if elapsed >= deadline:
                    break
        synchronize(device)
        seconds = time.perf_counter() - start
        with self.runtime.autocast():
            val_logits, val_loss = predict(model, self.preprocess, *validation,
                                           recipe.eval_batch_size, accelerator)  # fmt: skip
        val_accuracy = float((val_logits.argmax(1) == validation[1]).float().mean())
        trained = images * world  # images over all processes, padding included
        train_accuracy = float(accelerator.reduce(correct, "sum")) / trained
        return {
            "epoch": epoch,
            "train_loss": float(accelerator.reduce(loss_sum, "sum")) / trained,
            "train_accuracy": train_accuracy,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "seconds": seconds,
            "steps": taken,
            "images": trained,
            "lr": max(self.scheduler.get_last_lr()),  # the head's, under layer-wise decay
            # the share of the recipe's smoothing and augmentation this epoch trained with
            "regularised": share > 0 and active,
            "regularisation": float(share) if active else 0.0,
            # training accuracy above validation by > 2 standard errors (recipe.overfitting)
            "overfitting": overfitting(
                train_accuracy, val_accuracy, len(train[1]), len(validation[1])
            ),  # fmt: skip
        }


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
