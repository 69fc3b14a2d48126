"""`cnnvit models`: every preset with its size, cost and measured training speed, and its pairs.

This lists and measures; it sits above the runtime (it trains a few steps of each preset to time
them), so the models stage below it only declares the presets and how they pair.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from .measure import cpu_name, synchronize
from .models.build import build_model
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
        "save_pretrained."
    )
    return "\n".join(lines)
