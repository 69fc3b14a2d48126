"""How much of a pretrained model trains (`--adapt`): probe, head or full.

- full: every weight (what presets, which start from random weights, always do).
- head: the classifier plus the last stage: a ResNet's or ConvNeXt's last stage (with
  ConvNeXt's final norm), an EfficientNet's last stage of blocks with its 1x1 top convolution,
  or a transformer's last quarter of blocks (at least one) with its final norm.
- probe: the classifier alone, as a linear probe on frozen features: the features (the
  classifier's input) are computed once per split, cached on disk (features.py) and a
  `LinearProbe` trains on them; its weights then go back into the model's classifier.

`freeze_for` sets `requires_grad` and returns the count of trainable parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import torch

from ..errors import CnnvitError

MODES = ("probe", "head", "full")
VIT_HEAD_SHARE = 0.25  # head tuning trains this share of a transformer's blocks (at least one)

# How reports and model cards name each --adapt mode, and the rule for the default.
MODE_TEXT = {
    "full": "full fine-tuning (every weight trains)",
    "head": "head tuning (the classifier and the last stage or quarter of the blocks)",
    "probe": "a linear probe (the classifier alone, on frozen features)",
    "probe,full": (
        "a linear probe and full fine-tuning of each model on the same splits and seed, the "
        "full fine-tune the main result and the probe recorded beside it"
    ),
}
DEFAULT_RULE = (
    "The default is --adapt full for every model (presets train only in full); a run whose "
    "training is estimated at over an hour says so at the start and suggests --adapt probe."
)


def adaptation_sentence(mode: str, trainable: Mapping[str, Any] | None = None) -> str:
    """One sentence naming the --adapt mode used and, when given, each model's trainable
    parameter count ({name: count})."""
    text = f"Adaptation: {MODE_TEXT.get(mode, mode)} (--adapt {mode}), the same for both models"
    counts = [f"{name} {int(n):,}" for name, n in (trainable or {}).items() if n is not None]
    return text + (f"; trainable parameters: {', '.join(counts)}." if counts else ".")


def classifier_linear(model: torch.nn.Module) -> torch.nn.Linear:
    """The linear layer of `model.classifier` (a Linear, or the last Linear of a Sequential)."""
    head = getattr(model, "classifier", None)
    if isinstance(head, torch.nn.Linear):
        return head
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)] if head else []
    if not linears:
        raise CnnvitError(
            f"{type(model).__name__} has no linear classifier to probe or tune: use --adapt full"
        )
    return linears[-1]


def _last_stage(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules head tuning trains besides the classifier."""
    base = getattr(model, model.base_model_prefix, model)
    encoder = getattr(base, "encoder", None)
    stages = getattr(encoder, "stages", None)
    if stages is not None:  # ResNet, ConvNeXt (and others built from stages)
        extra = [getattr(base, "layernorm", None)]
        return [stages[-1], *[m for m in extra if m is not None]]
    config = model.config
    if getattr(config, "model_type", "") == "efficientnet":
        repeats = math.ceil(config.depth_coefficient * config.num_block_repeats[-1])
        return [*encoder.blocks[-repeats:], encoder.top_conv, encoder.top_bn]
    blocks = getattr(base, "layers", None) or getattr(encoder, "layer", None)
    if blocks is not None and len(blocks):  # a transformer (ViT, DeiT, BEiT, ...)
        count = max(1, round(len(blocks) * VIT_HEAD_SHARE))
        extra = [getattr(base, "layernorm", None)]
        return [*blocks[-count:], *[m for m in extra if m is not None]]
    raise CnnvitError(
        f"--adapt head does not know the last stage of {type(model).__name__}: "
        "use --adapt probe or full"
    )


def freeze_for(model: torch.nn.Module, mode: str) -> int:
    """Make only what `mode` trains trainable; returns the number of trainable parameters."""
    if mode not in MODES:
        raise CnnvitError(f"--adapt must be one of {', '.join(MODES)}, not '{mode}'")
    if mode == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return sum(p.numel() for p in model.parameters())
    trained = [model.classifier] if mode == "head" else [classifier_linear(model)]
    if mode == "head":
        trained += _last_stage(model)
    for param in model.parameters():
        param.requires_grad_(False)
    for module in trained:
        for param in module.parameters():
            param.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class LinearProbe(torch.nn.Module):
    """A copy of a model's classifier that takes its features as `pixel_values`, so the
    training loop and `predict` run it as they run a model."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.classifier = torch.nn.Linear(linear.in_features, linear.out_features)
        self.classifier.load_state_dict(linear.state_dict())

    def forward(self, pixel_values: torch.Tensor) -> Any:
        return SimpleNamespace(logits=self.classifier(pixel_values))


class Identity:
    """The preprocessor of cached features: they are already the model's inputs."""

    channels_last = False

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __call__(self, x: torch.Tensor, augment: Any = None, generator: Any = None) -> torch.Tensor:
        return x.to(self.device).float()
