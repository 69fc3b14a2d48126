"""Locality probe: how far each model looks, layer by layer.

For the ViT, the mean attention distance per layer and head (Dosovitskiy et al., "An Image is
Worth 16x16 Words", ICLR 2021, figure 7): for each query patch, the pixel distance to every key
patch weighted by the attention it gets, averaged over queries and test images. Attention to the
class token is left out and each query's weights over patches renormalised to sum to 1, so a
head that mostly reads the class token is not mistaken for a local one. For both models, the
effective receptive field per stage or layer (Luo et al., "Understanding the Effective Receptive
Field in Deep Convolutional Neural Networks", NeurIPS 2016): the gradient of the central unit of
that stage's output with respect to the input pixels, |grad| averaged over test images, reported
as the radius around the unit's centre that holds 50% and 90% of the gradient mass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from .context import ProbeContext, ProbedModel, save_figure

LOCALITY_IMAGES = 64  # Dosovitskiy et al. averaged over 128 images; 64 keeps the probe quick


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module) -> Iterator[None]:
    """Switch a transformers model to eager attention (which can return its attention weights)
    for the duration, then back; SDPA kernels do not expose the weights."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    switch = before not in (None, "eager") and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(before)


def patch_distances(grid: int, patch_size: float) -> torch.Tensor:
    """(grid*grid, grid*grid) Euclidean distances in pixels between patch centres, row-major."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    centres = torch.stack([rows.flatten(), cols.flatten()], dim=1).double() * patch_size
    return torch.cdist(centres, centres).float()


def mean_attention_distance(
    attentions: torch.Tensor, grid: int, patch_size: float, prefix_tokens: int = 1
) -> torch.Tensor:
    """Mean attention distance in pixels per head, from one layer's attentions.

    attentions: (B, heads, T, T), rows are queries, T = prefix_tokens + grid * grid. Only
    patch-to-patch attention counts; each query's weights over patches are renormalised.
    Returns (heads,): the attention-weighted distance averaged over query patches and images.
    """
    patches = attentions[:, :, prefix_tokens:, prefix_tokens:].float()
    patches = patches / patches.sum(dim=-1, keepdim=True).clamp(min=1e-12)
    distances = patch_distances(grid, patch_size).to(patches.device)
    per_query = (patches * distances).sum(dim=-1)  # (B, heads, queries)
    return per_query.mean(dim=(0, 2))


def vit_attention_distances(probed: ProbedModel, images: torch.Tensor) -> torch.Tensor:
    """(layers, heads) mean attention distance in pixels of a ViT over `images` (uint8)."""
    model = probed.model
    grid, patch = vit_grid(probed)
    with eager_attention(model), torch.inference_mode():
        out = model(pixel_values=probed.preprocess(images), output_attentions=True)
    if not out.attentions:
        raise RuntimeError(f"{probed.name} returned no attention weights")
    prefix = out.attentions[0].shape[-1] - grid * grid
    return torch.stack([mean_attention_distance(a, grid, patch, prefix) for a in out.attentions])


def vit_grid(probed: ProbedModel) -> tuple[int, int]:
    """(patches per side, patch size in pixels) of a ViT at its input size."""
    patch = getattr(probed.model.config, "patch_size", None)
    patch = int(patch[0] if isinstance(patch, (list, tuple)) else patch)
    return probed.image_size // patch, patch


def _stage_outputs(probed: ProbedModel, x: torch.Tensor) -> list[tuple[torch.Tensor, int, int]]:
    """Per stage/layer: its output, the central unit's row and column, and the grid side.

    CNN hidden states are (B, C, h, w) and the first is the stem; ViT hidden states are
    (B, T, D) and the first is the embedding, so both lists drop element 0.
    """
    out = probed.model(pixel_values=x, output_hidden_states=True)
    stages = []
    for hidden in out.hidden_states[1:]:
        side = hidden.shape[-1] if hidden.ndim == 4 else vit_grid(probed)[0]
        stages.append((hidden, side // 2, side))
    return stages


def effective_receptive_fields(probed: ProbedModel, images: torch.Tensor) -> list[dict[str, Any]]:
    """Per stage (CNN) or layer (ViT): the mean |d central unit / d input| map and its radii.

    Gradients are taken in float32 (no autocast): bf16 gradients are too coarse for the tails.
    The images go through the model together; images never interact in eval mode, so the
    gradient of the summed central units gives every image's own gradient.
    """
    model = probed.model
    x = probed.preprocess(images).detach().requires_grad_(True)
    stages = _stage_outputs(probed, x)
    height, width = images.shape[-2:]
    results = []
    for number, (hidden, middle, side) in enumerate(stages, start=1):
        row = col = middle
        if hidden.ndim == 4:
            unit = hidden[:, :, row, col].sum()
        else:
            prefix = hidden.shape[1] - side * side
            unit = hidden[:, prefix + row * side + col].sum()
        (grad,) = torch.autograd.grad(unit, x, retain_graph=number < len(stages))
        mass = grad.abs().sum(dim=1).mean(dim=0).float().cpu()  # (H, W)
        centre = ((row + 0.5) * height / side - 0.5, (col + 0.5) * width / side - 0.5)
        r50, r90 = mass_radius(mass, centre, 0.5), mass_radius(mass, centre, 0.9)
        results.append({
            "stage": number,
            "feature_size": side,
            "radius50_pixels": r50,
            "radius90_pixels": r90,
            "radius50_fraction": r50 / height,
            "radius90_fraction": r90 / height,
            "map": mass / mass.sum().clamp(min=1e-30),
        })  # fmt: skip
    model.zero_grad(set_to_none=True)
    return results


def mass_radius(mass: torch.Tensor, centre: tuple[float, float], share: float) -> float:
    """The smallest distance in pixels from `centre` within which `share` of `mass` lies."""
    rows, cols = torch.meshgrid(
        torch.arange(mass.shape[0], dtype=torch.float64),
        torch.arange(mass.shape[1], dtype=torch.float64),
        indexing="ij",
    )
    distance = torch.sqrt((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2).flatten()
    order = distance.argsort()
    cumulative = mass.flatten().double()[order].cumsum(0)
    total = float(cumulative[-1])
    if total <= 0:
        return float("nan")
    reached = int(torch.searchsorted(cumulative, share * total))
    return float(distance[order][min(reached, len(order) - 1)])


def run(context: ProbeContext) -> dict[str, Any]:
    """Attention distance (ViT) and effective receptive fields (both) on a test subset."""
    index = context.test_subset(min(LOCALITY_IMAGES, context.max_test_images))
    models: dict[str, Any] = {}
    maps: dict[str, list[torch.Tensor]] = {}
    for family, probed in context.models.items():
        images = probed.test_images[index]
        fields = effective_receptive_fields(probed, images)
        maps[family] = [f.pop("map") for f in fields]
        entry: dict[str, Any] = {"image_size": probed.image_size, "erf": fields}
        if family == "vit":
            distances = vit_attention_distances(probed, images)
            entry["attention_distance_pixels"] = distances.tolist()  # [layer][head]
            entry["attention_distance_mean_per_layer"] = distances.mean(dim=1).tolist()
            entry["attention_distance_mean_fraction"] = float(distances.mean()) / probed.image_size
        models[family] = entry
    figures = [_attention_figure(models, context), _erf_figure(models, maps, context)]
    claims: dict[str, dict[str, float | None]] = {
        "erf_radius50_fraction": {f: m["erf"][-1]["radius50_fraction"] for f, m in models.items()},
        "erf_radius50_fraction_first": {
            f: m["erf"][0]["radius50_fraction"] for f, m in models.items()
        },
    }
    if "vit" in models:
        claims["mean_attention_distance"] = {
            "vit": models["vit"]["attention_distance_mean_fraction"]
        }
    return {
        "settings": {
            "test_images": len(index),
            "attention_distance": "pixels between patch centres, class token excluded, "
            "weights renormalised over patches; fractions are of the image side",
            "erf": "|gradient| of the central unit of each stage/layer w.r.t. input pixels, "
            "float32, mean over images; radius around the unit's centre holding the share",
        },
        "models": models,
        "claims": claims,
        "figures": [f for f in figures if f],
    }


def _attention_figure(models: dict[str, Any], context: ProbeContext) -> str | None:
    path = context.figure_path("locality-attention-distance.png")
    if path is None or "vit" not in models:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    distances = models["vit"]["attention_distance_pixels"]
    figure, ax = plt.subplots(figsize=(4.5, 3.6))
    for layer, heads in enumerate(distances, start=1):
        ax.scatter([layer] * len(heads), heads, s=14, color="tab:orange")
    ax.plot(range(1, len(distances) + 1), models["vit"]["attention_distance_mean_per_layer"],
            color="grey", linewidth=1, label="mean over heads")  # fmt: skip
    ax.set_xticks(range(1, len(distances) + 1))
    ax.set_xlabel("ViT layer")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.set_ylim(0, models["vit"]["image_size"] * 0.75)
    ax.set_title(f"{context.models['vit'].name}: attention distance per head", fontsize=9)
    ax.legend(fontsize=7)
    figure.tight_layout()
    return save_figure(figure, path)


def _erf_figure(
    models: dict[str, Any], maps: dict[str, list[torch.Tensor]], context: ProbeContext
) -> str | None:
    path = context.figure_path("locality-erf.png")
    if path is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(m) for m in maps.values()) + 1
    figure, axes = plt.subplots(len(maps), columns, figsize=(1.9 * columns, 2.0 * len(maps)),
                                squeeze=False)  # fmt: skip
    for row, (family, family_maps) in enumerate(maps.items()):
        fields = models[family]["erf"]
        for col, (erf_map, field) in enumerate(zip(family_maps, fields, strict=True)):
            ax = axes[row][col]
            ax.imshow(erf_map.numpy() ** 0.5, cmap="magma")  # sqrt: show the tails too
            ax.set_title(f"{family.upper()} {field['stage']}: r50 {field['radius50_pixels']:.1f}",
                         fontsize=7)  # fmt: skip
            ax.axis("off")
        curve_ax = axes[row][-1]
        for col in range(len(family_maps), columns - 1):
            axes[row][col].axis("off")
        depth = [f["stage"] for f in fields]
        curve_ax.plot(depth, [f["radius50_fraction"] for f in fields], "o-", label="50%")
        curve_ax.plot(depth, [f["radius90_fraction"] for f in fields], "s--", label="90%")
        curve_ax.set_xticks(depth)
        curve_ax.set_ylim(0, 1)
        curve_ax.set_xlabel("stage / layer", fontsize=7)
        curve_ax.set_ylabel("radius / side", fontsize=7)
        curve_ax.tick_params(labelsize=6)
        curve_ax.legend(fontsize=6)
    figure.suptitle("effective receptive field (sqrt of mean |gradient|)", fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)
