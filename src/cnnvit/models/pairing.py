"""Pairing: which CNN preset goes with which ViT, matched on parameters or on FLOPs.

A fair pair depends on what the user means by "the same size". `--match params` (the default)
pairs presets of similar parameter count, which is what most papers tabulate; `--match flops`
pairs presets of similar forward FLOPs per image, which is what sets training and inference cost.
At 32 px the two disagree sharply: a ViT's FLOPs grow with its 64 tokens, while a ResNet's stem
shrinks the image 4-fold before the first block, so the parameter-matched ResNet does about 1/20
of the ViT's FLOPs. The partner is the preset of the other family (and of the chosen CNN
architecture) nearest on the log scale of the matched quantity. Each quantity has a stated
tolerance (`MATCH_TOLERANCE`: |cnn - vit| / max(cnn, vit) at most this); a pair is recorded as
matched on a quantity only when it is within it, and as unmatched, with its ratio, otherwise.
Named pairs (nano, micro, mini) are within tolerance on parameters; at 32 px (and 16) every
ViT preset also has a ResNet within tolerance on FLOPs (resnet-micro for vit-nano, the
`-flops` rows for vit-micro and vit-mini).
"""

from __future__ import annotations

import functools
import math

from ..errors import CnnvitError
from .build import BuiltModel, build_model, count_flops, count_params, processor_image_size
from .presets import DEFAULT_CNN_ARCHITECTURE, DEFAULT_SIZE, PRESETS, default_pair_for

MATCHES = ("params", "flops")
# A pair is matched on a quantity when |cnn - vit| / max(cnn, vit) is at most this: 15% on
# either, a ratio within 0.85x to 1.18x. Past it, size alone could move a cost claim by more
# than its 10% threshold.
MATCH_TOLERANCE = {"params": 0.15, "flops": 0.15}
PARAMS_TOLERANCE = MATCH_TOLERANCE["params"]
MATCH_KEYS = {"params": "params", "flops": "flops_per_image"}  # preset_costs' key per match
MATCH_NAMES = {"params": "parameter count", "flops": "FLOPs per image"}


def match_gap(ratio: float) -> float:
    """|cnn - vit| / max(cnn, vit) for a ViT/CNN ratio of a quantity: 0 when equal."""
    return 1 - min(ratio, 1 / ratio) if ratio > 0 else math.inf


def match_record(match: str, ratio: float) -> dict[str, object]:
    """run.json's account of one match: the quantity, its ViT/CNN ratio, the tolerance and
    whether the pair meets it."""
    tolerance = MATCH_TOLERANCE[match]
    return {"on": match, "ratio": ratio, "tolerance": tolerance,
            "met": bool(match_gap(ratio) <= tolerance)}  # fmt: skip


def unmatched_line(cnn: str, vit: str, record: dict) -> str:
    """The one line a run prints at the start when its pair misses the asked match."""
    return (
        f"pair {cnn} + {vit} is unmatched on {MATCH_NAMES[record['on']]}: the ViT has "
        f"{record['ratio']:.2f}x the CNN's, outside the {record['tolerance']:.0%} tolerance of "
        f"--match {record['on']} (--cnn auto or --vit auto picks the nearest preset)"
    )


@functools.lru_cache(maxsize=64)
def preset_costs(name: str, image_size: int = 32, patch_size: int | None = None) -> dict[str, int]:
    """Parameters and forward FLOPs per image of a preset at `image_size` (10 classes); a ViT
    preset with `patch_size` patches when given."""
    preset = PRESETS[name]
    built = build_model(name, preset.family, [str(i) for i in range(10)], image_size, "eager",
                        patch_size=patch_size)  # fmt: skip
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
    patch_size: int | None = None,
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
    key = MATCH_KEYS[match]

    def cost(name: str) -> int:
        patch = patch_size if PRESETS[name].family == "vit" else None
        return preset_costs(name, image_size, patch)[key]

    target = cost(preset_name)
    return min(candidates, key=lambda name: abs(math.log(cost(name) / target)))


def resolve_pair(
    cnn: str, vit: str, match: str = "params", image_size: int = 32, patch_size: int | None = None
) -> tuple[str, str]:
    """(cnn, vit) names with an "auto" side replaced by the other side's partner by `match`.

    Both auto (the defaults): the DEFAULT_SIZE ViT preset and its partner, so `--match params`
    is the micro pair and `--match flops` vit-micro with the ResNet nearest it on FLOPs. An
    auto side beside a hub or local model has no partner to find: it is the DEFAULT_SIZE
    preset of its family, and the run reports the pair as unmatched if it is.
    """
    if match not in MATCHES:
        raise CnnvitError(f"--match must be params or flops, not '{match}'")
    if cnn == "auto" and vit == "auto":
        vit = default_pair_for(DEFAULT_SIZE)[1]
    if cnn == "auto":
        if vit in PRESETS:
            cnn = partner(vit, "cnn", match, image_size, patch_size=patch_size)
        else:
            cnn = default_pair_for(DEFAULT_SIZE)[0]
    elif vit == "auto":
        if cnn in PRESETS:
            vit = partner(cnn, "vit", match, image_size, patch_size=patch_size)
        else:
            vit = default_pair_for(DEFAULT_SIZE)[1]
    return cnn, vit


def pair_ratios(cnn_built: BuiltModel, vit_built: BuiltModel) -> dict[str, float]:
    """ViT / CNN ratios of parameters and of forward FLOPs per image, each at its input size."""

    def costs(built: BuiltModel) -> tuple[int, int]:
        size = processor_image_size(built.processor)
        return count_params(built.model), count_flops(built.model, size)

    cnn_params, cnn_flops = costs(cnn_built)
    vit_params, vit_flops = costs(vit_built)
    return {"params_ratio": vit_params / cnn_params, "flops_ratio": vit_flops / cnn_flops}
