"""Curated hub pairs: CNN and ViT checkpoints a careful comparison would put side by side.

Each pair is matched as closely as the hub allows: on parameters (ResNet-50 / DeiT-S, ConvNeXt-T
/ Swin-T, EfficientNet-B0 / DeiT-Ti or MobileViT-S) and, for the ImageNet-21k pair, on
pretraining data too (ConvNeXt-B 22k-1k / ViT-B/16), since pretraining scale, not architecture
alone, decides the large-data claims. Every model carries the transformers config that rebuilds
its geometry offline (1,000 ImageNet classes), its input size, the data it was pretrained on and
its licence, as its hub card states them. This module holds data only; `cnnvit.catalog` counts
parameters and FLOPs from the configs (shapes only, no weights and no download), so the table
never drifts from what transformers builds. `--hub-pair NAME` names one pair for compare/study.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import CnnvitError

IMAGENET_1K = "imagenet-1k"
IMAGENET_21K_1K = "imagenet-21k + imagenet-1k"  # pretrained on 21k, fine-tuned on 1k
APACHE = "apache-2.0"


@dataclass(frozen=True)
class HubModel:
    """One hub checkpoint: its id, the config that rebuilds it, and what its card records."""

    id: str
    family: str
    config_class: str  # a transformers config class name
    config: dict[str, Any] = field(default_factory=dict)  # its arguments (others: defaults)
    image_size: int = 224
    pretraining: str = IMAGENET_1K
    licence: str = APACHE


@dataclass(frozen=True)
class HubPair:
    """A CNN and a ViT checkpoint of similar size, and why they pair."""

    name: str
    cnn: HubModel
    vit: HubModel
    why: str


_EFFICIENTNET_B0 = HubModel(
    "google/efficientnet-b0", "cnn", "EfficientNetConfig",
    {"width_coefficient": 1.0, "depth_coefficient": 1.0, "image_size": 224,
     "dropout_rate": 0.2, "hidden_dim": 1280},
)  # fmt: skip
_VIT_GEOMETRY = {"num_hidden_layers": 12, "image_size": 224, "patch_size": 16}

HUB_PAIRS: dict[str, HubPair] = {
    pair.name: pair
    for pair in (
        HubPair(
            "resnet50-deit-s",
            HubModel("microsoft/resnet-50", "cnn", "ResNetConfig"),
            HubModel(
                "facebook/deit-small-patch16-224",
                "vit",
                "ViTConfig",
                {
                    **_VIT_GEOMETRY,
                    "hidden_size": 384,
                    "num_attention_heads": 6,
                    "intermediate_size": 1536,
                },
            ),
            "the DeiT paper's ResNet-50 baseline: similar parameters and FLOPs, both ImageNet-1k "
            "only",
        ),  # fmt: skip
        HubPair(
            "convnext-t-swin-t",
            HubModel("facebook/convnext-tiny-224", "cnn", "ConvNextConfig"),
            HubModel("microsoft/swin-tiny-patch4-window7-224", "vit", "SwinConfig"),
            "the ConvNeXt paper's own comparison: parameters and FLOPs within 2%, both "
            "ImageNet-1k; Swin is a hierarchical ViT with windowed attention",
        ),
        HubPair(
            "effnet-b0-deit-ti",
            _EFFICIENTNET_B0,
            HubModel(
                "facebook/deit-tiny-patch16-224",
                "vit",
                "ViTConfig",
                {
                    **_VIT_GEOMETRY,
                    "hidden_size": 192,
                    "num_attention_heads": 3,
                    "intermediate_size": 768,
                },
            ),
            "the smallest plain pair, matched on parameters: the ViT does about 3x the FLOPs",
        ),  # fmt: skip
        HubPair(
            "effnet-b0-mobilevit-s",
            _EFFICIENTNET_B0,
            HubModel(
                "apple/mobilevit-small",
                "vit",
                "MobileViTConfig",
                image_size=256,
                licence="Apple sample code licence (hub: other)",
            ),
            "matched on parameters, a mobile hybrid (convolutions with transformer blocks) at "
            "its own 256 px",
        ),  # fmt: skip
        HubPair(
            "convnext-b-vit-b",
            HubModel(
                "facebook/convnext-base-224-22k-1k",
                "cnn",
                "ConvNextConfig",
                {"depths": [3, 3, 27, 3], "hidden_sizes": [128, 256, 512, 1024]},
                pretraining=IMAGENET_21K_1K,
            ),
            HubModel(
                "google/vit-base-patch16-224", "vit", "ViTConfig", pretraining=IMAGENET_21K_1K
            ),
            "the ViT paper's scale: both pretrained on ImageNet-21k and fine-tuned on "
            "ImageNet-1k, parameters within 3%",
        ),  # fmt: skip
    )
}

# Every curated checkpoint by its hub id, for its recorded pretraining and licence.
HUB_MODELS: dict[str, HubModel] = {
    model.id: model for pair in HUB_PAIRS.values() for model in (pair.cnn, pair.vit)
}


def hub_pair(name: str) -> HubPair:
    """The curated pair called `name`; any other name is one line listing the names."""
    try:
        return HUB_PAIRS[name.strip().lower()]
    except KeyError:
        raise CnnvitError(
            f"unknown --hub-pair '{name}': the curated pairs are {', '.join(HUB_PAIRS)} "
            "(see `cnnvit models --hub`)"
        ) from None


def hub_config(model: HubModel, num_labels: int = 1000) -> Any:
    """The transformers config that rebuilds `model`'s geometry, with `num_labels` classes."""
    import transformers

    config = getattr(transformers, model.config_class)(**model.config)
    config.num_labels = num_labels
    return config
