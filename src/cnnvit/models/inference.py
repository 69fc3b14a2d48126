"""Predictions in batches, without autograd: what validation during training, the test split
and `cnnvit evaluate` all run, on one process or sharded over several."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..data.preprocess import BatchPreprocessor

if TYPE_CHECKING:
    from accelerate import Accelerator


@torch.inference_mode()
def predict(
    model: torch.nn.Module,
    preprocess: BatchPreprocessor,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    accelerator: Accelerator | None = None,
) -> tuple[torch.Tensor, float]:
    """Float32 logits (N, C) on the CPU and the mean cross-entropy loss over all N images.

    With an `accelerator` running several processes, each process predicts its share of the
    images and every process gets all N logits back, in order, each image counted once.
    """
    if accelerator is not None and accelerator.num_processes > 1:
        return _predict_sharded(model, preprocess, images, labels, batch_size, accelerator)
    was_training = model.training
    model.eval()
    outputs = []
    total_loss = 0.0
    for start in range(0, len(images), batch_size):
        x = preprocess(images[start : start + batch_size])
        logits = model(pixel_values=x).logits.float()
        y = labels[start : start + batch_size].to(logits.device)
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        outputs.append(logits.cpu())
    model.train(was_training)
    return torch.cat(outputs), total_loss / max(1, len(images))


def _predict_sharded(
    model: torch.nn.Module,
    preprocess: BatchPreprocessor,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    accelerator: Accelerator,
) -> tuple[torch.Tensor, float]:
    """`predict` split over processes: a prepared DataLoader of image indices shards the
    batches, and `gather_for_metrics` drops the samples it repeated to even them out."""
    from torch.utils.data import DataLoader, TensorDataset

    # The plain model: a DDP wrapper may synchronise buffers in forward, a collective that
    # evaluation does not need.
    plain = accelerator.unwrap_model(model)
    was_training = plain.training
    plain.eval()
    loader = accelerator.prepare_data_loader(
        DataLoader(TensorDataset(torch.arange(len(images))), batch_size=batch_size),
        device_placement=False,
    )
    outputs, indices = [], []
    for (index,) in loader:
        logits = plain(pixel_values=preprocess(images[index])).logits.float()
        outputs.append(accelerator.gather_for_metrics(logits).cpu())
        indices.append(accelerator.gather_for_metrics(index.to(logits.device)).cpu())
    plain.train(was_training)
    logits, order = torch.cat(outputs), torch.cat(indices)
    if not torch.equal(order, torch.arange(len(images))):  # each image once, in order
        raise RuntimeError(f"sharded prediction returned {len(order)} of {len(images)} images")
    loss = F.cross_entropy(logits, labels.to(logits.device), reduction="sum").item()
    return logits, loss / max(1, len(images))
