"""Explanations probe: what each model looks at, and whether those maps are faithful.

For the CNN, Grad-CAM (Selvaraju et al., ICCV 2017) through captum's LayerGradCam, at the last
stage whose feature map is still at least 4x4 at the input size (a 1x1 map says nothing about
where). For the ViT, attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in
Transformers", ACL 2020): per layer the head-averaged attention plus the identity for the
residual path, rows renormalised, multiplied through the layers; the class token's row gives
the map. Faithfulness is measured with the deletion and insertion curves of Petsiuk et al.
("RISE", BMVC 2018): pixels are removed (set to black) or inserted into a blurred copy in the
map's order, and the area under the predicted class's probability curve is compared with that
of random maps of the same resolution, paired over images (Wilcoxon signed-rank test).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .context import ProbeContext, ProbedModel, save_figure
from .corruptions import blur
from .locality import eager_attention, vit_grid

EXPLANATION_IMAGES = 32  # images for the deletion and insertion curves (time budget)
CURVE_STEPS = 12  # the curves are sampled at 0, 1/12, ..., 1 of the pixels
FIGURE_EXAMPLES = 4  # correct and wrong examples each in the side-by-side figure
MIN_CAM_SIDE = 4
INSERTION_BLUR_SIGMA_FRACTION = 0.15  # of the image side: the blurred canvas of insertion


def _cnn_stages(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The encoder stages of a transformers CNN (ConvNeXt, ResNet, ...)."""
    stages = getattr(getattr(model.base_model, "encoder", None), "stages", None)
    if stages is None:
        raise RuntimeError(f"{type(model).__name__} has no encoder.stages for Grad-CAM")
    return list(stages)


def gradcam_layer(probed: ProbedModel) -> tuple[int, torch.nn.Module, int]:
    """(stage number, stage module, map side): the last stage with a map of at least 4x4."""
    with torch.inference_mode():
        x = probed.preprocess(probed.test_images[:1])
        hidden = probed.model(pixel_values=x, output_hidden_states=True).hidden_states[1:]
    stages = _cnn_stages(probed.model)
    sides = [int(h.shape[-1]) for h in hidden][: len(stages)]
    usable = [i for i, side in enumerate(sides) if side >= MIN_CAM_SIDE]
    chosen = usable[-1] if usable else int(np.argmax(sides))
    return chosen + 1, stages[chosen], sides[chosen]


def gradcam_maps(
    probed: ProbedModel, images: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Grad-CAM maps (B, H, W) for `targets`, upsampled bilinearly, and the map side used."""
    from captum.attr import LayerAttribution, LayerGradCam

    _, layer, side = gradcam_layer(probed)
    model = probed.model

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(pixel_values=x).logits

    cam = LayerGradCam(forward, layer)
    x = probed.preprocess(images)  # float32, no autocast: gradients need the precision
    attributions = cam.attribute(x, target=targets.to(x.device), relu_attributions=True)
    upsampled = LayerAttribution.interpolate(
        attributions.detach().float(), tuple(images.shape[-2:]), interpolate_mode="bilinear"
    )
    model.zero_grad(set_to_none=True)
    return upsampled[:, 0].cpu(), side


@torch.inference_mode()
def rollout_maps(probed: ProbedModel, images: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Attention-rollout maps (B, H, W) of the class token, upsampled bilinearly; grid side."""
    grid, _ = vit_grid(probed)
    with eager_attention(probed.model):
        out = probed.model(pixel_values=probed.preprocess(images), output_attentions=True)
    rollout = attention_rollout(list(out.attentions))
    prefix = rollout.shape[-1] - grid * grid
    cls_to_patches = rollout[:, 0, prefix:].reshape(-1, 1, grid, grid)
    upsampled = F.interpolate(cls_to_patches, size=tuple(images.shape[-2:]), mode="bilinear",
                              align_corners=False)  # fmt: skip
    return upsampled[:, 0].float().cpu(), grid


def attention_rollout(attentions: list[torch.Tensor]) -> torch.Tensor:
    """Abnar & Zuidema's rollout: prod over layers of row-normalised (mean_heads(A) + I) / 2.

    attentions: one (B, heads, T, T) tensor per layer, first layer first. Returns (B, T, T):
    how much each token at the top draws on each input token.
    """
    result = None
    for layer in attentions:
        mixed = layer.float().mean(dim=1)
        mixed = 0.5 * mixed + 0.5 * torch.eye(mixed.shape[-1], device=mixed.device)
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        result = mixed if result is None else mixed @ result
    assert result is not None
    return result


def random_maps(count: int, side: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """Uniform random maps at the model map's resolution, upsampled the same way (B, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 1, side, side, generator=generator)
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)[:, 0]


@torch.inference_mode()
def deletion_insertion(
    probed: ProbedModel,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    runtime: Any,
    steps: int = CURVE_STEPS,
) -> dict[str, np.ndarray]:
    """Per-image deletion and insertion AUCs and mean curves for saliency `maps`.

    Deletion sets the most salient pixels to black first; insertion starts from a blurred copy
    and puts the most salient original pixels back first. The score is the softmax probability
    of `targets`; the AUC is the trapezoid area over the fraction of pixels (0..1).
    """
    batch, _, height, width = images.shape
    pixels = height * width
    x = images.float()
    canvas = blur(x / 255, INSERTION_BLUR_SIGMA_FRACTION * height) * 255
    # Rank pixels by saliency; ties (flat map regions) are broken by position.
    rank = maps.reshape(batch, -1).argsort(dim=1, descending=True, stable=True)
    position = torch.empty_like(rank)
    position.scatter_(1, rank, torch.arange(pixels).expand(batch, -1).contiguous())
    position = position.reshape(batch, 1, height, width)
    fractions = np.linspace(0, 1, steps + 1)
    deletion, insertion = [], []
    for fraction in fractions:
        chosen = (position < round(fraction * pixels)).float()  # 1 where already moved
        deleted = x * (1 - chosen)
        inserted = canvas * (1 - chosen) + x * chosen
        deletion.append(_probability(probed, deleted, targets, runtime))
        insertion.append(_probability(probed, inserted, targets, runtime))
    deletion_curve, insertion_curve = np.stack(deletion, 1), np.stack(insertion, 1)  # (B, S+1)
    return {
        "deletion_auc": np.trapezoid(deletion_curve, fractions, axis=1),
        "insertion_auc": np.trapezoid(insertion_curve, fractions, axis=1),
        "deletion_curve": deletion_curve.mean(0),
        "insertion_curve": insertion_curve.mean(0),
    }


def _probability(
    probed: ProbedModel, pixels: torch.Tensor, targets: torch.Tensor, runtime: Any
) -> np.ndarray:
    with runtime.autocast():
        logits = probed.model(pixel_values=probed.preprocess(pixels)).logits.float()
    probabilities = logits.softmax(dim=1).cpu()
    return probabilities[torch.arange(len(targets)), targets].numpy()


def model_maps(probed: ProbedModel, images: torch.Tensor, targets: torch.Tensor) -> tuple:
    """(maps (B, H, W), map side, method description) for either family."""
    if probed.family == "cnn":
        maps, side = gradcam_maps(probed, images, targets)
        stage, _, _ = gradcam_layer(probed)
        return maps, side, f"Grad-CAM (captum LayerGradCam) at stage {stage}, {side}x{side} map"
    maps, grid = rollout_maps(probed, images)
    return maps, grid, f"attention rollout over all layers, {grid}x{grid} patch grid"


def run(context: ProbeContext) -> dict[str, Any]:
    """Maps of both models on a test subset; deletion/insertion AUC against random maps."""
    from scipy.stats import wilcoxon

    index = context.test_subset(min(EXPLANATION_IMAGES, context.max_test_images))
    models: dict[str, Any] = {}
    predictions: dict[str, torch.Tensor] = {}
    all_maps: dict[str, torch.Tensor] = {}
    for number, (family, probed) in enumerate(context.models.items()):
        images = probed.test_images[index]
        targets = context.logits(family, "test")[index].argmax(1)  # explain the prediction
        predictions[family] = targets
        maps, side, method = model_maps(probed, images, targets)
        all_maps[family] = maps
        baseline = random_maps(len(index), side, tuple(images.shape[-2:]),
                               context.seed + 7919 * (number + 1))  # fmt: skip
        real = deletion_insertion(probed, images, maps, targets, context.runtime)
        rand = deletion_insertion(probed, images, baseline, targets, context.runtime)
        entry: dict[str, Any] = {"method": method, "map_side": side}
        for curve in ("deletion", "insertion"):
            ours, theirs = real[f"{curve}_auc"], rand[f"{curve}_auc"]
            differs = not np.allclose(ours, theirs)
            entry[f"{curve}_auc"] = float(ours.mean())
            entry[f"{curve}_auc_random"] = float(theirs.mean())
            entry[f"{curve}_wilcoxon_p"] = float(wilcoxon(ours, theirs).pvalue) if differs else 1.0
            entry[f"{curve}_curve"] = real[f"{curve}_curve"].tolist()
            entry[f"{curve}_curve_random"] = rand[f"{curve}_curve"].tolist()
        models[family] = entry
    examples = _pick_examples(index, predictions, context.test_labels[index])
    figure = _figure(index, examples, all_maps, predictions, context)
    return {
        "settings": {
            "test_images": len(index),
            "curve_steps": CURVE_STEPS,
            "deletion_fill": "black (0)",
            "insertion_start": f"Gaussian blur, sigma {INSERTION_BLUR_SIGMA_FRACTION} x side",
            "target": "each model's own predicted class",
            "random_baseline": "uniform random maps at the model map's resolution, upsampled",
            "test": "Wilcoxon signed-rank, paired over images, model map vs random map",
        },
        "models": models,
        "examples": [int(index[i]) for i in examples],  # test-split positions in the figure
        "claims": {
            "deletion_auc": {f: m["deletion_auc"] for f, m in models.items()},
            "insertion_auc": {f: m["insertion_auc"] for f, m in models.items()},
            "deletion_auc_random": {f: m["deletion_auc_random"] for f, m in models.items()},
            "insertion_auc_random": {f: m["insertion_auc_random"] for f, m in models.items()},
        },
        "figures": [figure] if figure else [],
    }


def _pick_examples(
    index: torch.Tensor, predictions: dict[str, torch.Tensor], labels: torch.Tensor
) -> list[int]:
    """Positions in the subset: up to 4 both models get right, then up to 4 one gets wrong."""
    right = torch.stack([p == labels for p in predictions.values()]).all(0)
    correct = torch.nonzero(right).flatten().tolist()[:FIGURE_EXAMPLES]
    wrong = torch.nonzero(~right).flatten().tolist()[:FIGURE_EXAMPLES]
    return correct + wrong


def _figure(
    index: torch.Tensor,
    examples: list[int],
    maps: dict[str, torch.Tensor],
    predictions: dict[str, torch.Tensor],
    context: ProbeContext,
) -> str | None:
    path = context.figure_path("explanations-maps.png")
    if path is None or not examples:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = context.class_names
    rows = 1 + len(maps)
    figure, axes = plt.subplots(rows, len(examples), figsize=(1.6 * len(examples), 1.75 * rows),
                                squeeze=False)  # fmt: skip
    first = next(iter(context.models.values()))
    for col, position in enumerate(examples):
        image = first.test_images[index[position]].permute(1, 2, 0).numpy()
        label = int(context.test_labels[index[position]])
        axes[0][col].imshow(image)
        verdicts = " ".join(f"{f}:{names[int(p[position])]}" for f, p in predictions.items())
        axes[0][col].set_title(f"true {names[label]}\n{verdicts}", fontsize=6)
        for row, (family, family_maps) in enumerate(maps.items(), start=1):
            saliency = family_maps[position].numpy()
            axes[row][col].imshow(image.mean(axis=2), cmap="gray")
            axes[row][col].imshow(saliency, cmap="jet", alpha=0.5)
            if col == 0:
                method = "Grad-CAM" if family == "cnn" else "rollout"
                axes[row][col].set_ylabel(f"{family.upper()} {method}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle("what each model looks at (left: both right; right: at least one wrong)",
                    fontsize=8)  # fmt: skip
    figure.tight_layout()
    return save_figure(figure, path)
