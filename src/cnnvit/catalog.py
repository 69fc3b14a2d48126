"""`cnnvit models`: every preset with its size, cost and measured training speed, and its pairs;
`cnnvit models --hub`: the curated hub pairs (models/hub_pairs.py), counted offline.

This lists and measures; it sits above the runtime (it trains a few steps of each preset to time
them), so the models stage below it only declares the presets and how they pair.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import torch

from .measure import cpu_name, synchronize
from .models.build import build_model, count_flops, count_params
from .models.hub_pairs import HUB_MODELS, HUB_PAIRS, HubModel, hub_config
from .models.pairing import (
    DEFAULT_CNN_ARCHITECTURE,
    MATCH_KEYS,
    MATCH_TOLERANCE,
    MATCHES,
    match_gap,
    partner,
    preset_costs,
)
from .models.presets import PRESETS
from .runtime import cpu_bf16_speedup, cpu_has_bf16, place_model, resolve_runtime


def measure_train_speed(
    name: str, runtime: Any, image_size: int = 32, batch_size: int = 64, steps: int = 3
) -> float:
    """Training images/s of a preset on this machine: median of `steps` timed AdamW steps.

    A quick probe (one warm-up step, then a few timed ones, synthetic images, the runtime's
    precision and memory format), so `cnnvit models` shows what each preset costs here; the
    benchmark (benchmarks/benchmark.py) measures whole runs.
    """
    preset = PRESETS[name]
    attention = runtime.attention if preset.family == "vit" else "eager"
    built = build_model(name, preset.family, [str(i) for i in range(10)], image_size, attention)
    model, _ = place_model(built, runtime)
    model.train()
    optimizer = runtime.optimizer(model.parameters(), 1e-4)
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


def precision_path(runtime: Any) -> str:
    """Which arithmetic a speed came from: device, precision and, on a CPU, its kernels and
    whether it runs bf16 natively (an AVX2-only CPU trains in fp32)."""
    if runtime.device.type != "cpu":
        return f"{runtime.device}, {runtime.precision}"
    native = "no native bf16"
    if cpu_has_bf16():
        native = f"native bf16 at {cpu_bf16_speedup():.2f}x fp32's matmul speed"
    capability = torch.backends.cpu.get_cpu_capability()
    return f"cpu ({cpu_name()}, {capability}, {native}), {runtime.precision}"


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
        runtime = resolve_runtime()
    rows = describe_pairs(image_size, runtime)
    by_name = {row["name"]: row for row in rows}
    lines = [f"{'preset':<20}{'family':<8}{'params':>10}{'MFLOPs/img':>12}{'train img/s':>13}"
             f"  description (at {image_size} px)"]  # fmt: skip
    for row in rows:
        speed = row["train_images_per_second"]
        lines.append(
            f"{row['name']:<20}{row['family']:<8}{row['params'] / 1e6:>9.2f}M"
            f"{row['flops_per_image'] / 1e6:>12.0f}{'' if speed is None else f'{speed:.0f}':>13}"
            f"  {row['description']}"
        )
    if runtime is not None:
        lines.append(
            f"train img/s: median of 3 AdamW steps at batch 64 here ({precision_path(runtime)}); "
            "whole-run figures are in BENCHMARKS.md"
        )
    tolerances = ", ".join(f"{m} {t:.0%}" for m, t in MATCH_TOLERANCE.items())
    lines.append(
        "\npairs (ratios are ViT / CNN; --match params is the default, --cnn auto picks the "
        f"{DEFAULT_CNN_ARCHITECTURE} partner; matched within |cnn - vit| / max of {tolerances}, "
        "* outside it):"
    )
    architectures = list(dict.fromkeys(r["architecture"] for r in rows if r["family"] == "cnn"))
    for vit in (r for r in rows if r["family"] == "vit"):
        for match in MATCHES:
            cells = []
            for architecture in architectures:
                cnn = by_name[partner(vit["name"], "cnn", match, image_size, architecture)]
                key = MATCH_KEYS[match]
                outside = match_gap(vit[key] / cnn[key]) > MATCH_TOLERANCE[match]
                cells.append(
                    f"{cnn['name']} (params x{vit['params'] / cnn['params']:.2f}, "
                    f"FLOPs x{vit['flops_per_image'] / cnn['flops_per_image']:.2f})"
                    + ("*" if outside else "")
                )
            lines.append(f"  {vit['name']:<9} by {match:<6}: " + "; ".join(cells))
    lines.append(
        "\nAny other name is a Hugging Face hub model id or a local folder saved with "
        "save_pretrained; `cnnvit models --hub` lists curated hub pairs (--hub-pair NAME)."
    )
    return "\n".join(lines)


def hub_costs(model: HubModel) -> dict[str, int]:
    """Parameters and forward FLOPs per image of a curated hub model at its own input size,
    counted from its transformers config on the meta device: shapes only, no weights, no
    download (1,000 ImageNet classes, as published)."""
    return dict(_hub_costs(model.id))


@functools.cache
def _hub_costs(model_id: str) -> dict[str, int]:
    from transformers import AutoModelForImageClassification

    model = HUB_MODELS[model_id]
    with torch.device("meta"):
        built = AutoModelForImageClassification.from_config(hub_config(model))
    return {"params": count_params(built), "flops_per_image": count_flops(built, model.image_size)}


def describe_hub_pairs(names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The curated hub pairs (all, or those `names`) with both models' counts and the ViT/CNN
    ratios."""
    rows = []
    for pair in (HUB_PAIRS[n] for n in (HUB_PAIRS if names is None else names)):
        cnn, vit = hub_costs(pair.cnn), hub_costs(pair.vit)
        rows.append({
            "name": pair.name, "why": pair.why, "cnn": pair.cnn, "vit": pair.vit,
            "costs": {"cnn": cnn, "vit": vit},
            "params_ratio": vit["params"] / cnn["params"],
            "flops_ratio": vit["flops_per_image"] / cnn["flops_per_image"],
        })  # fmt: skip
    return rows


def hub_listing(names: Sequence[str] | None = None) -> str:
    """The text of `cnnvit models --hub`: each curated pair, both models' parameters, FLOPs,
    input size, pretraining data and licence, and the two ViT/CNN ratios."""
    lines = [
        "curated hub pairs (--hub-pair NAME for compare or study); parameters and forward "
        "FLOPs per image counted here from transformers' configs (1,000 classes, each model's "
        "own input size, no download); ratios are ViT / CNN, * outside the match tolerance "
        f"({', '.join(f'{m} {t:.0%}' for m, t in MATCH_TOLERANCE.items())})",
    ]
    for row in describe_hub_pairs(names):
        marks = {m: "" if match_gap(row[f"{m}_ratio"]) <= MATCH_TOLERANCE[m] else "*"
                 for m in MATCHES}  # fmt: skip
        lines.append(
            f"\n{row['name']}: params x{row['params_ratio']:.2f}{marks['params']}, FLOPs "
            f"x{row['flops_ratio']:.2f}{marks['flops']} - {row['why']}"
        )
        for family in ("cnn", "vit"):
            model, cost = row[family], row["costs"][family]
            lines.append(
                f"  {family:<4}{model.id:<40}{cost['params'] / 1e6:>7.2f}M "
                f"{cost['flops_per_image'] / 1e9:>6.2f} GFLOPs @{model.image_size}px  "
                f"pretrained on {model.pretraining}; licence {model.licence}"
            )
    lines.append(
        "\nHub models load with from_pretrained (network, or HF_HUB_OFFLINE=1 with a cached "
        "copy); their pretraining is recorded in run.json and stated beside every verdict."
    )
    return "\n".join(lines)
