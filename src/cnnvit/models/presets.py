"""The preset table: from-scratch models as transformers configs, in CNN/ViT pairs.

A preset is a transformers config builder keyed by a short name. Pairs have similar parameter
counts and are built for small images: the ViT cuts 4x4-pixel patches (64 tokens at 32 px) and
the ConvNeXt uses a 2x2 patchify stem, so neither throws away most of a 32-px input the way an
ImageNet stem (stride 4 before the first block) would.

The ResNets are transformers' `ResNetConfig` with basic blocks, saved and loaded by
`from_pretrained` with no custom code, so they keep transformers' ImageNet stem (7x7 conv,
stride 2, then 3x3 max-pool, stride 2: 8x8 maps at 32 px), which cannot be changed without
custom code. Measured on Fashion-MNIST (9,600 training images, 2 epochs, lr 1e-3, no
augmentation): the 3-stage resnet-micro reached 87.1% at 32 px and 88.2% when the same images
were upsampled to 64 px (16x16 maps after the stem, 4x the FLOPs), so the stem costs about a
point here; a 4-stage net of the same parameter count (widths 32-64-128-256, its last stage on
1x1 maps) reached 86.2%. So the ResNet presets have three stages (8x8, 4x4, 2x2 maps at 32 px)
and put the parameters in width rather than a fourth stage.

A ResNet of a ViT's parameter count does a sixth of its FLOPs at 32 px, so the FLOPs-matched
pairs (`--match flops`) need other ResNets: `resnet-micro-flops` (widths 128-256-256, depths
6-3-2: 360 MFLOPs per image at 32 px against vit-micro's 366) and `resnet-mini-flops` (widths
160-320-320, depths 10-4-2: 855 against vit-mini's 854), deeper in the first stage, whose 8x8
maps give the most FLOPs per parameter; vit-nano's FLOPs partner is resnet-micro (57 against
65). `resnet-micro-deep` (depths 6-2-2: 95 MFLOPs, 3.08 M parameters) matches vit-micro on
8-px patches (93 MFLOPs, 16 tokens: digits at 32 px under --patch-size auto), on FLOPs and
within 15% on parameters too. Their `matched_on` is "flops": they belong to no named
parameter-matched pair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from transformers import ConvNextConfig, PretrainedConfig, ResNetConfig, ViTConfig

# The CNN architecture of the default pairs; chosen on the benchmark in BENCHMARKS.md.
DEFAULT_CNN_ARCHITECTURE = "resnet"
# The pair size of the default comparison (`--cnn auto --vit auto`).
DEFAULT_SIZE = "micro"
# Pixel statistics of the preset processors: inputs scaled to [-1, 1], as the original ViT.
PRESET_MEAN = (0.5, 0.5, 0.5)
PRESET_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class RecipeRow:
    """How a model trains at a full budget (20 epochs and more), as big_vision's configs state
    `config.lr` and `config.wd`: AdamW at `lr` (`--lr usual`; `--lr auto` tries `lr_grid`),
    cosine decay after a linear warm-up, and label smoothing and augmentation at these full
    strengths, which a shorter budget scales down (training/recipe.py)."""

    lr: float
    lr_grid: tuple[float, ...]  # four rates an octave apart, `lr` among them
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1  # of all steps ...
    max_warmup_epochs: float = 2.0  # ... but at most this many epochs of them
    label_smoothing: float = 0.1
    augment_strength: float = 1.0  # 1: +-10 degrees, +-10% shift, 0.9-1.1 scale
    # Each transformer block's rate is this times the next one's, the head's at `lr`
    # (layer-wise decay, BEiT/MAE fine-tuning); 1: one rate for every weight.
    layer_decay: float = 1.0
    # `--lr auto`: a first-round trial trains at most this share of the training budget; the
    # 4 + 2 trials (4 x L + 2 x 2L = 8L images) then cost at most 8 x this share of it.
    max_trial_share: float = 0.25

    def scaled(self, factor: float) -> RecipeRow:
        """This row with its learning rates times `factor`."""
        return replace(self, lr=self.lr * factor, lr_grid=tuple(r * factor for r in self.lr_grid))


# From scratch, a ViT's usable AdamW rates sit lower than a batch-norm CNN's: attention logits
# grow unstable at high rates (Wortsman et al. 2023), while batch norm makes a convolution's
# weights scale-invariant (ConvNeXt trains with AdamW at 4e-3, Liu et al. 2022).
CNN_RECIPE = RecipeRow(lr=2e-3, lr_grid=(5e-4, 1e-3, 2e-3, 4e-3))
VIT_RECIPE = RecipeRow(lr=5e-4, lr_grid=(2.5e-4, 5e-4, 1e-3, 2e-3))
# Fine-tuning a pretrained model (--adapt full or head) follows the transfer literature, not the
# from-scratch rows: AdamW at a lower rate for a batch-norm CNN (1e-4 to 1e-3 is the usual
# fine-tuning range) and for a ViT 1e-4 with layer-wise decay 0.75 (BEiT, Bao et al. 2022; MAE,
# He et al. 2022: 0.65-0.75), a short warm-up (5% of steps, at most half an epoch), weight decay
# 0.05 and no label smoothing or augmentation (the from-scratch regularisation is for memorising
# a small set over many epochs, not for a few epochs from good features; nothing here measured
# it to help). `--lr auto` spends at most half the training budget on tuning (1/16 per trial).
# A linear probe (--adapt probe) trains one linear layer on frozen features: a high rate, no
# weight decay (the classifier's bias and weights are all it has), the same for both families.
_FINE_TUNE = {
    "weight_decay": 0.05,
    "warmup_fraction": 0.05,
    "max_warmup_epochs": 0.5,
    "label_smoothing": 0.0,
    "augment_strength": 0.0,
    "max_trial_share": 1 / 16,
}
PRETRAINED_RECIPES = {
    "cnn": RecipeRow(lr=5e-4, lr_grid=(1.25e-4, 2.5e-4, 5e-4, 1e-3), **_FINE_TUNE),
    "vit": RecipeRow(lr=1e-4, lr_grid=(5e-5, 1e-4, 2e-4, 4e-4), layer_decay=0.75, **_FINE_TUNE),
}
PROBE_RECIPE = RecipeRow(lr=1e-2, lr_grid=(2.5e-3, 5e-3, 1e-2, 2e-2),
                         **{**_FINE_TUNE, "weight_decay": 0.0})  # fmt: skip


@dataclass(frozen=True)
class Preset:
    """A from-scratch model: a family, a transformers config builder, its pixel granularity and
    its training recipe."""

    name: str
    family: str
    size: str  # the pair it belongs to: nano, micro, mini
    stride: int  # the image size must be a multiple of this (patch or stem stride)
    description: str
    build_config: Callable[[int], PretrainedConfig]
    recipe: RecipeRow
    matched_on: str = "params"  # the pairs it is built for: params (the named pairs) or flops

    @property
    def architecture(self) -> str:
        """resnet, convnext or vit: the name's first part."""
        return self.name.split("-")[0]


def _vit(hidden: int, layers: int, heads: int, patch: int = 4) -> Callable[[int], ViTConfig]:
    def build(image_size: int) -> ViTConfig:
        return ViTConfig(
            image_size=image_size,
            patch_size=patch,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=4 * hidden,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            layer_norm_eps=1e-6,
        )

    return build


def _convnext(
    widths: list[int], depths: list[int], stem: int = 2
) -> Callable[[int], ConvNextConfig]:
    def build(image_size: int) -> ConvNextConfig:
        return ConvNextConfig(
            image_size=image_size,
            patch_size=stem,
            num_stages=len(widths),
            hidden_sizes=widths,
            depths=depths,
        )

    return build


def _resnet(widths: list[int], depths: list[int]) -> Callable[[int], ResNetConfig]:
    def build(image_size: int) -> ResNetConfig:
        # ResNetConfig has no image size: convolutions and global pooling take any size.
        return ResNetConfig(
            embedding_size=widths[0],
            hidden_sizes=widths,
            depths=depths,
            layer_type="basic",
            downsample_in_first_stage=False,  # the stem has already divided the side by 4
        )

    return build


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("resnet-nano", "cnn", "nano", 16,
               "ResNet (basic blocks), widths 26-52-104, depths 2-2-2, 7x7/2 + pool stem",
               _resnet([26, 52, 104], [2, 2, 2]), CNN_RECIPE),
        Preset("resnet-micro", "cnn", "micro", 16,
               "ResNet (basic blocks), widths 64-128-256, depths 2-2-2, 7x7/2 + pool stem",
               _resnet([64, 128, 256], [2, 2, 2]), CNN_RECIPE),
        Preset("resnet-mini", "cnn", "mini", 16,
               "ResNet (basic blocks), widths 96-192-384, depths 2-2-2, 7x7/2 + pool stem",
               _resnet([96, 192, 384], [2, 2, 2]), CNN_RECIPE),
        Preset("resnet-micro-deep", "cnn", "micro", 16,
               "ResNet (basic blocks), widths 64-128-256, depths 6-2-2, 7x7/2 + pool stem: "
               "vit-micro's FLOPs on 16 tokens", _resnet([64, 128, 256], [6, 2, 2]), CNN_RECIPE,
               "flops"),
        Preset("resnet-micro-flops", "cnn", "micro", 16,
               "ResNet (basic blocks), widths 128-256-256, depths 6-3-2, 7x7/2 + pool stem: "
               "vit-micro's FLOPs", _resnet([128, 256, 256], [6, 3, 2]), CNN_RECIPE, "flops"),
        Preset("resnet-mini-flops", "cnn", "mini", 16,
               "ResNet (basic blocks), widths 160-320-320, depths 10-4-2, 7x7/2 + pool stem: "
               "vit-mini's FLOPs", _resnet([160, 320, 320], [10, 4, 2]), CNN_RECIPE, "flops"),
        Preset("convnext-nano", "cnn", "nano", 4,
               "ConvNeXt, widths 32-64-128, depths 2-2-2, 2x2 stem",
               _convnext([32, 64, 128], [2, 2, 2]), CNN_RECIPE),
        Preset("vit-nano", "vit", "nano", 4,
               "ViT, width 96, 4 layers, 2 heads, 4x4 patches", _vit(96, 4, 2), VIT_RECIPE),
        Preset("convnext-micro", "cnn", "micro", 8,
               "ConvNeXt, widths 64-128-256, depths 3-3-4, 2x2 stem",
               _convnext([64, 128, 256], [3, 3, 4]), CNN_RECIPE),
        Preset("vit-micro", "vit", "micro", 4,
               "ViT, width 192, 6 layers, 3 heads, 4x4 patches", _vit(192, 6, 3), VIT_RECIPE),
        Preset("convnext-mini", "cnn", "mini", 8,
               "ConvNeXt, widths 96-192-384, depths 3-3-4, 2x2 stem",
               _convnext([96, 192, 384], [3, 3, 4]), CNN_RECIPE),
        Preset("vit-mini", "vit", "mini", 4,
               "ViT, width 256, 8 layers, 4 heads, 4x4 patches", _vit(256, 8, 4), VIT_RECIPE),
    ]
}  # fmt: skip


def default_pair_for(size: str, architecture: str = DEFAULT_CNN_ARCHITECTURE) -> tuple[str, str]:
    """The (cnn, vit) parameter-matched preset names of one size, the CNN of `architecture`."""
    cnn = next(
        p.name
        for p in PRESETS.values()
        if p.size == size and p.family == "cnn" and p.architecture == architecture
        and p.matched_on == "params"
    )  # fmt: skip
    vit = next(p.name for p in PRESETS.values() if p.size == size and p.family == "vit")
    return cnn, vit
