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
import time
from typing import Any

import torch

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


def measure_train_speed(
    name: str, runtime: Any, image_size: int = 32, batch_size: int = 64, steps: int = 3
) -> float:
    """Training images/s of a preset on this machine: median of `steps` timed AdamW steps.

    A quick probe (one warm-up step, then a few timed ones, synthetic images, the runtime's
    precision and memory format), so `cnnvit models` shows what each preset costs here; the
    benchmark (benchmarks/benchmark.py) measures whole runs.
    """
    from ..measure import synchronize
    from ..runtime import place_model

    preset = PRESETS[name]
    attention = runtime.attention if preset.family == "vit" else "eager"
    built = build_model(name, preset.family, [str(i) for i in range(10)], image_size, attention)
    model, _ = place_model(built, runtime)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch_size, 3, image_size, image_size, device=runtime.device)
    if preset.family == "cnn" and runtime.device.type != "mps":
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,), device=runtime.device)
    seconds = []
    for step in range(steps + 1):
        synchronize(runtime.device)
        start = time.perf_counter()
        with runtime.autocast():
            logits = model(pixel_values=x).logits.float()
        torch.nn.functional.cross_entropy(logits, y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(runtime.device)
        if step:  # the first step warms up kernels and allocators
            seconds.append(time.perf_counter() - start)
    seconds.sort()
    return batch_size / seconds[len(seconds) // 2]


def describe_pairs(image_size: int = 32, runtime: Any = None) -> list[dict[str, Any]]:
    """Every preset: params, FLOPs, partners by params and by FLOPs, and train images/s here.

    `runtime` None skips the speed probe (the column is then None).
    """
    rows = []
    for preset in PRESETS.values():
        other = "vit" if preset.family == "cnn" else "cnn"
        rows.append({
            "name": preset.name,
            "family": preset.family,
            "architecture": preset.architecture,
            "pair": preset.size,
            "description": preset.description,
            **preset_costs(preset.name, image_size),
            "partner_params": partner(preset.name, other, "params", image_size),
            "partner_flops": partner(preset.name, other, "flops", image_size),
            "train_images_per_second": (
                measure_train_speed(preset.name, runtime, image_size) if runtime else None
            ),
        })  # fmt: skip
    return rows


def models_listing(image_size: int = 32, measure_speed: bool = True) -> str:
    """The text of `cnnvit models`: every preset, then every pair by params and by FLOPs."""
    runtime = None
    if measure_speed:
        from ..runtime import resolve_runtime

        runtime = resolve_runtime()
    rows = describe_pairs(image_size, runtime)
    by_name = {row["name"]: row for row in rows}
    lines = [f"{'preset':<16}{'family':<8}{'params':>10}{'MFLOPs/img':>12}{'train img/s':>13}"
             f"  description (at {image_size} px)"]  # fmt: skip
    for row in rows:
        speed = row["train_images_per_second"]
        lines.append(
            f"{row['name']:<16}{row['family']:<8}{row['params'] / 1e6:>9.2f}M"
            f"{row['flops_per_image'] / 1e6:>12.0f}{'' if speed is None else f'{speed:.0f}':>13}"
            f"  {row['description']}"
        )
    if runtime is not None:
        lines.append(
            f"train img/s: median of 3 AdamW steps at batch 64 here ({runtime.device}, "
            f"{runtime.precision}); whole-run figures are in BENCHMARKS.md"
        )
    lines.append(
        "\npairs (ratios are ViT / CNN; --match params is the default, --cnn auto picks the "
        f"{DEFAULT_CNN_ARCHITECTURE} partner):"
    )
    architectures = list(dict.fromkeys(r["architecture"] for r in rows if r["family"] == "cnn"))
    for vit in (r for r in rows if r["family"] == "vit"):
        for match in MATCHES:
            cells = []
            for architecture in architectures:
                cnn = by_name[partner(vit["name"], "cnn", match, image_size, architecture)]
                cells.append(
                    f"{cnn['name']} (params x{vit['params'] / cnn['params']:.2f}, "
                    f"FLOPs x{vit['flops_per_image'] / cnn['flops_per_image']:.1f})"
                )
            lines.append(f"  {vit['name']:<9} by {match:<6}: " + "; ".join(cells))
    lines.append(
        "\nAny other name is a Hugging Face hub model id or a local folder saved with "
        "save_pretrained."
    )
    return "\n".join(lines)
