"""Pairing: which CNN preset goes with which ViT, matched on parameters or on FLOPs.

A fair pair depends on what the user means by "the same size". `--match params` (the default)
pairs presets of similar parameter count, which is what most papers tabulate; `--match flops`
pairs presets of similar forward FLOPs per image, which is what sets training and inference cost.
At 32 px the two disagree sharply: a ViT's FLOPs grow with its 64 tokens, while a ResNet's stem
shrinks the image 4-fold before the first block, so the parameter-matched ResNet does about 1/20
of the ViT's FLOPs. The partner is the preset of the other family (and of the chosen CNN
architecture) nearest on the log scale of the matched quantity; the report states both ratios
and which one was matched. Named pairs (nano, micro, mini) are within PARAMS_TOLERANCE on
parameters.
"""

from __future__ import annotations

import functools
import math

from ..errors import CnnvitError
from .build import BuiltModel, build_model, count_flops, count_params, processor_image_size
from .presets import DEFAULT_CNN_ARCHITECTURE, PRESETS

MATCHES = ("params", "flops")
PARAMS_TOLERANCE = 0.15  # named pairs: |cnn - vit| / max(cnn, vit) parameters at most this


@functools.lru_cache(maxsize=64)
def preset_costs(name: str, image_size: int = 32) -> dict[str, int]:
    """Parameters and forward FLOPs per image of a preset at `image_size` (10 classes)."""
    preset = PRESETS[name]
    built = build_model(name, preset.family, [str(i) for i in range(10)], image_size, "eager")
    return {
        "params": count_params(built.model),
        "flops_per_image": count_flops(built.model, image_size),
    }


def partner(
    preset_name: str,
    family: str,
    match: str = "params",
    image_size: int = 32,
    architecture: str | None = None,
) -> str:
    """The `family` preset nearest to `preset_name` in `match` (params or flops).

    For the CNN family the candidates are one architecture (`architecture`, default the
    default CNN architecture), so the answer does not flip between ResNet and ConvNeXt on a
    few percent of parameters.
    """
    if match not in MATCHES:
        raise CnnvitError(f"--match must be params or flops, not '{match}'")
    if preset_name not in PRESETS:
        raise CnnvitError(
            f"'{preset_name}' is not a preset, so it has no partner: name the other model too"
        )
    if family == "cnn":
        architecture = architecture or DEFAULT_CNN_ARCHITECTURE
    candidates = [
        p.name
        for p in PRESETS.values()
        if p.family == family and (architecture is None or p.architecture == architecture)
    ]
    if not candidates:
        raise CnnvitError(f"no {family} preset of architecture '{architecture}'")
    key = "flops_per_image" if match == "flops" else "params"
    target = preset_costs(preset_name, image_size)[key]
    return min(
        candidates, key=lambda name: abs(math.log(preset_costs(name, image_size)[key] / target))
    )


def resolve_pair(
    cnn: str, vit: str, match: str = "params", image_size: int = 32
) -> tuple[str, str]:
    """(cnn, vit) names with an "auto" side replaced by the other side's partner."""
    if cnn == "auto" and vit == "auto":
        raise CnnvitError("--cnn and --vit cannot both be auto: name at least one of them")
    if cnn == "auto":
        cnn = partner(vit, "cnn", match, image_size)
    elif vit == "auto":
        vit = partner(cnn, "vit", match, image_size)
    return cnn, vit


def pair_ratios(cnn_built: BuiltModel, vit_built: BuiltModel) -> dict[str, float]:
    """ViT / CNN ratios of parameters and of forward FLOPs per image, each at its input size."""

    def costs(built: BuiltModel) -> tuple[int, int]:
        size = processor_image_size(built.processor)
        return count_params(built.model), count_flops(built.model, size)

    cnn_params, cnn_flops = costs(cnn_built)
    vit_params, vit_flops = costs(vit_built)
    return {"params_ratio": vit_params / cnn_params, "flops_ratio": vit_flops / cnn_flops}
