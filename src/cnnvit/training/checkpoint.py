"""Per-epoch training checkpoints, so a killed run resumes where it stopped.

After every epoch the loop saves, through accelerate's `save_state`, the model, optimizer,
scheduler and the RNG states accelerate tracks, plus what the loop itself carries from epoch to
epoch (`loop.pt`): the epoch reached, the history, the best epoch's weights and accuracy, and
the states of the loop's own generators (data order and augmentation). Resuming loads all of it
and continues with the next epoch, so a resumed run draws the same batches and augmentations
as one that was never interrupted and ends with the same weights (on the same machine).

A checkpoint is written under a temporary name and swapped in by renames, so a kill during the
save leaves the previous epoch's checkpoint usable.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

LOOP_FILE = "loop.pt"


def save_checkpoint(accelerator: Accelerator, folder: Path, loop_state: dict[str, Any]) -> None:
    """Save the prepared objects and `loop_state` for the epoch just finished."""
    temp = folder.with_name(folder.name + ".saving")
    old = folder.with_name(folder.name + ".old")
    # Under several processes each one writes its own RNG state into `temp`: the main process
    # empties and creates it first, and every file is written before the main one swaps it in.
    if accelerator.is_main_process:
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        torch.save(loop_state, temp / LOOP_FILE)
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        temp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def find_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint: `folder`, or the previous one if a swap was cut short."""
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        if (candidate / LOOP_FILE).is_file():
            return candidate
    return None


def load_checkpoint(accelerator: Accelerator, folder: Path) -> dict[str, Any] | None:
    """Restore the prepared objects from the newest checkpoint; its loop state, or None."""
    found = find_checkpoint(folder)
    if found is None:
        return None
    accelerator.load_state(str(found))
    return torch.load(found / LOOP_FILE, weights_only=False)


def remove_checkpoints(folder: Path) -> None:
    """Drop a model's checkpoints once the model is saved for good."""
    for suffix in ("", ".old", ".saving"):
        shutil.rmtree(folder.with_name(folder.name + suffix), ignore_errors=True)
