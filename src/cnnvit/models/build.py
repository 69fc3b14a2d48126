"""Models: built-in presets (transformers configs, trained from scratch) and hub/local models.

Every model is a transformers image-classification model, so `save_pretrained`, image processors
and `output_attentions` work the same for all of them. A preset is a transformers config in a
small table keyed by a short name; any other name is a local folder or a hub id, loaded with
`AutoModelForImageClassification.from_pretrained` and its head resized to the dataset's labels.

Presets come in CNN/ViT pairs of similar parameter count, both built for small images: the ViT
cuts 4x4-pixel patches (64 tokens at 32 px) and the ConvNeXt uses a 2x2 patchify stem, so neither
throws away most of a 32-px input the way an ImageNet stem (stride 4 before the first block)
would. Both presets of a size use the same image processor, so both see identical pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification, PreTrainedModel
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from ..errors import CnnvitError, first_line
from ..hub import looks_like_repo_id, require_hub
from ..pretraining import SCRATCH, record, recorded_pretraining
from .presets import PRESET_MEAN, PRESET_STD, PRESETS, PRETRAINED_RECIPES, RecipeRow


@dataclass
class BuiltModel:
    """A ready-to-train model with its image processor and where it came from."""

    model: PreTrainedModel
    processor: Any
    name: str
    family: str
    source: str  # preset | hub | local
    pretrained: bool
    recipe: RecipeRow  # how it trains at a full budget: its preset's row, or its family's
    path: str = ""  # a local folder's full path (its name is `name`)
    # What it was pretrained on and where that was read (models/pretraining.py).
    pretraining: dict[str, str] = field(default_factory=lambda: record(SCRATCH, "preset"))

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "source": self.source,
            "pretrained": self.pretrained,
            "params": count_params(self.model),
            **({"path": self.path} if self.path else {}),
            "pretraining": dict(self.pretraining),
        }


def preset_processor(image_size: int) -> ViTImageProcessorPil:
    """The processor saved with every preset: a plain resize to a square, then [-1, 1]."""
    return ViTImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=list(PRESET_MEAN),
        image_std=list(PRESET_STD),
    )


def label_maps(class_names: list[str]) -> tuple[dict[int, str], dict[str, int]]:
    id2label = dict(enumerate(class_names))
    return id2label, {name: i for i, name in id2label.items()}


def build_model(
    spec: str,
    family: str,
    class_names: list[str],
    image_size: int,
    attention: str = "sdpa",
    seed: int = 0,
    patch_size: int | None = None,
) -> BuiltModel:
    """A preset (from scratch), a local folder or a hub id, with a head for `class_names`.

    `patch_size` replaces a ViT preset's patch side (others ignore it)."""
    id2label, label2id = label_maps(class_names)
    if spec in PRESETS:
        preset = PRESETS[spec]
        if preset.family != family:
            other = "--vit" if preset.family == "vit" else "--cnn"
            raise CnnvitError(f"'{spec}' is a {preset.family.upper()} preset: pass it as {other}")
        if image_size % preset.stride:
            raise CnnvitError(
                f"--image-size {image_size} does not suit preset '{spec}': "
                f"use a multiple of {preset.stride}"
            )
        config = preset.build_config(image_size)
        if patch_size is not None and family == "vit":
            if image_size % patch_size:
                raise CnnvitError(
                    f"--patch-size {patch_size} does not divide --image-size {image_size}"
                )
            config.patch_size = patch_size
        config.num_labels = len(class_names)
        config.id2label, config.label2id = id2label, label2id
        torch.manual_seed(seed)  # the same seed gives the same initial weights
        kwargs = {"attn_implementation": attention} if family == "vit" else {}
        model = AutoModelForImageClassification.from_config(config, **kwargs)
        return BuiltModel(model, preset_processor(image_size), spec, family, "preset", False,
                          preset.recipe)  # fmt: skip

    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise CnnvitError(
                f"{spec} is not a saved model folder (no config.json): "
                "save one with save_pretrained"
            )
        source = "local"
    elif spec.startswith((".", "/", "~")) or not looks_like_repo_id(spec):
        raise CnnvitError(
            f"unknown model '{spec}': use a preset (see `cnnvit models`), "
            "a hub model id or a model folder"
        )
    else:
        require_hub("model", spec, "use a preset (see `cnnvit models`) or a local model folder")
        source = "hub"
    if source == "local":
        check_weights(path)
    torch.manual_seed(seed)  # the resized head's initialisation
    model = _from_pretrained(spec, family, id2label, label2id, attention)
    processor = _processor(spec, model)
    # A folder is named by its own name in logs and the report; run.json keeps the path.
    name = path.resolve().name if source == "local" else spec
    folder = str(path.resolve()) if source == "local" else ""
    pretraining = recorded_pretraining(spec, source, folder)
    return BuiltModel(model, processor, name, family, source, True, PRETRAINED_RECIPES[family],
                      path=folder, pretraining=pretraining)  # fmt: skip


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")  # fmt: skip
_FIX = "download or save the model again (save_pretrained)"


def check_weights(folder: Path) -> None:
    """One clear line unless `folder` holds weights whose safetensors headers read whole.

    An interrupted download leaves a truncated `model.safetensors`, which transformers reports
    as a SafetensorError traceback; `safe_open` reads the header and checks it against the
    file's length without loading the tensors."""
    from safetensors import SafetensorError, safe_open

    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise CnnvitError(
            f"{folder} has no weights file (model.safetensors or pytorch_model.bin): {_FIX}"
        )
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise CnnvitError(
                f"{file} is damaged (truncated or not a safetensors file: {first_line(err)}): "
                f"{_FIX}"
            ) from None


def _is_head(key: str) -> bool:
    """True for a classifier's parameter: the one part allowed to differ from the checkpoint."""
    return any(part.endswith("classifier") or part == "head" for part in key.split("."))


def _check_loading(spec: str, info: dict[str, Any]) -> None:
    """Refuse weights of another architecture: only the classifier may be missing or resized."""
    mismatched = [k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys", ())]
    missing = [k for k in info.get("missing_keys", ()) if not k.endswith("num_batches_tracked")]
    body = sorted(k for k in [*mismatched, *missing] if not _is_head(k))
    if body:
        what = "has another shape than" if body[0] in mismatched else "is missing from"
        raise CnnvitError(
            f"the weights in {spec} do not fit its config.json ({len(body)} tensors outside the "
            f"classifier, e.g. {body[0]}, {what} the checkpoint): they come from another "
            "architecture; put the config.json saved with these weights beside them"
        )


def _from_pretrained(
    spec: str, family: str, id2label: dict[int, str], label2id: dict[str, int], attention: str
) -> PreTrainedModel:
    kwargs: dict[str, Any] = {
        "num_labels": len(id2label),
        "id2label": id2label,
        "label2id": label2id,
        "ignore_mismatched_sizes": True,  # replace the head when the label count differs
        "output_loading_info": True,  # then refuse any other mismatch (_check_loading)
    }
    from safetensors import SafetensorError

    try:
        try:
            model, info = AutoModelForImageClassification.from_pretrained(
                spec, attn_implementation=attention, **kwargs
            )
        except ValueError as err:
            if "attn_implementation" not in str(err) and "attention" not in str(err).lower():
                raise
            model, info = AutoModelForImageClassification.from_pretrained(spec, **kwargs)
    except SafetensorError as err:
        raise CnnvitError(
            f"the weights of '{spec}' are damaged ({first_line(err)}): {_FIX}"
        ) from None
    except (OSError, ValueError, KeyError) as err:
        first = first_line(err)
        raise CnnvitError(f"cannot load model '{spec}' as an image classifier: {first}") from None
    _check_loading(spec, info)
    return model


def _processor(spec: str, model: PreTrainedModel) -> Any:
    """The model's own image processor; a plain resize at the config's size if it has none.

    A folder whose preprocessor_config.json is there but does not parse is refused: falling
    back would train on pixels the model was never shown."""
    file = Path(spec).expanduser() / "preprocessor_config.json"
    if file.is_file():
        import json

        try:
            json.loads(file.read_text(encoding="utf-8"))
            return AutoImageProcessor.from_pretrained(spec)
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
            raise CnnvitError(
                f"{file} does not parse ({first_line(err)}): fix it, or delete it to use a plain "
                "resize to the config's image size"
            ) from None
    try:
        return AutoImageProcessor.from_pretrained(spec)
    except (OSError, ValueError, KeyError):
        size = getattr(model.config, "image_size", 224)
        size = size if isinstance(size, int) else int(size[0])
        return preset_processor(size)


def processor_image_size(processor: Any) -> int:
    """The side length, in pixels, of the images a processor produces."""

    def side(size: Any) -> int | None:
        if isinstance(size, int):
            return size
        for key in ("height", "shortest_edge", "width"):
            value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
            if value:
                return int(value)
        return None

    crop = getattr(processor, "crop_size", None)
    if getattr(processor, "do_center_crop", False) and crop is not None and side(crop):
        return side(crop)  # type: ignore[return-value]
    size = getattr(processor, "size", None)
    return (side(size) if size is not None else None) or 224


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: torch.nn.Module, image_size: int, train_step: bool = False) -> int:
    """FLOPs per image (torch.utils.flop_counter) of a forward pass, or of a training step.

    Counts matrix multiplications and convolutions (2 FLOPs per multiply-add), which is what
    dominates and what peak-FLOP/s figures measure; elementwise ops are not counted. A training
    step is counted as 3x the forward pass (the backward computes gradients for inputs and for
    weights, each costing one forward): torch's counter ignores `groups` in convolution
    backward and overcounts a depthwise 7x7 conv's backward 65-fold (measured, torch 2.13); on
    the ViT presets, where it counts correctly, fwd+bwd comes to 3.0x the forward.
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    was_training = model.training
    # The counter has no formula for the CPU's fused attention kernel and would skip it;
    # eager attention does the same arithmetic in countable matrix products.
    attention = getattr(model.config, "_attn_implementation", None)
    if attention not in (None, "eager") and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(pixel_values=torch.zeros(1, 3, image_size, image_size, device=device))
    if attention not in (None, "eager") and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(attention)
    model.train(was_training)
    forward = int(counter.get_total_flops())
    return 3 * forward if train_step else forward


def describe_presets() -> list[dict[str, Any]]:
    """Every preset with its parameter count and forward FLOPs per image at 32 px."""
    rows = []
    for preset in PRESETS.values():
        built = build_model(preset.name, preset.family, ["x"] * 10, 32, attention="eager")
        rows.append({
            "name": preset.name,
            "family": preset.family,
            "pair": preset.size,
            "params": count_params(built.model),
            "flops_per_image": count_flops(built.model, 32),
            "image_size": 32,
            "description": preset.description,
        })  # fmt: skip
    return rows
