"""Experiment trackers (`--report-to`): TensorBoard, Trackio or Weights & Biases, via accelerate.

cnnvit writes no tracker code of its own: `Accelerator(log_with=...)` owns the trackers,
`init_trackers` records the run's flattened config as hyperparameters, the training loop logs
each epoch's history row with `accelerator.log` (keys `cnn/train_loss`, `vit/val_accuracy`, ...,
step = epoch, so both models share one tracker run and plot on one axis), and `end_training`
closes them. TensorBoard writes into the run directory (RUN/tracking/cnnvit), so
`tensorboard --logdir RUN/tracking` shows a run's curves; trackio and wandb use their own stores
and honour their own environment variables (WANDB_MODE=offline, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import CompareConfig, flatten
from ..errors import CnnvitError

if TYPE_CHECKING:
    from accelerate import Accelerator

PROJECT = "cnnvit"  # tracker project name; TensorBoard's sub-folder of RUN/tracking
PACKAGES = {"tensorboard": "tensorboard", "trackio": "trackio", "wandb": "wandb"}


def tracker_options(report_to: str, run_dir: Path) -> dict[str, Any]:
    """`Accelerator` keyword arguments for `--report-to` ({} for none); one-line error when the
    tracker's package is not installed."""
    if report_to in ("none", "", None):
        return {}
    if report_to not in PACKAGES:
        raise CnnvitError(f"unknown tracker '{report_to}': use tensorboard, trackio, wandb or none")
    import importlib.util

    # find_spec rather than accelerate's is_*_available: those helpers differ across the
    # accelerate versions cnnvit allows (1.1 has no is_trackio_available).
    if importlib.util.find_spec(PACKAGES[report_to]) is None:
        package = PACKAGES[report_to]
        raise CnnvitError(
            f"--report-to {report_to} needs the {package} package: pip install {package}"
            + (" (or cnnvit[track])" if report_to == "tensorboard" else "")
        )
    return {"log_with": report_to, "project_dir": str(run_dir / "tracking")}


def start_trackers(accelerator: Accelerator, config: CompareConfig, run_dir: Path) -> None:
    """Open the accelerator's trackers (if any) with the run's config as hyperparameters."""
    if not accelerator.log_with:
        return
    # Trackers take scalars only; None (unset caps) has no hyperparameter form.
    values = {
        key: value
        for key, value in flatten(config.to_dict()).items()
        if isinstance(value, (bool, int, float, str))
    }
    names = {"wandb": {"name": run_dir.name}, "trackio": {"name": run_dir.name}}
    accelerator.init_trackers(PROJECT, config=values, init_kwargs=names)
