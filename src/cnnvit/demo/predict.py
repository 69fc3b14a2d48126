"""Both models of a run on one image: top-k predictions and explanation maps, loaded once.

`DemoModels` loads a run's two saved models a single time (through `run.models[f].load()`) and
answers any number of requests; `predict_both(run, image)` is the Python API the web demo and
its browser test share. An image goes through each model's own image processor exactly as the
run's data did (data/prepare.py: resize with rescaling and normalisation off, then the batch
preprocessor), so a test image gives the logits the run saved for it, up to precision.

Explanation maps come from the explanations probe (analyses/explanations.py): Grad-CAM through
captum for the CNN, attention rollout for the ViT. Both temporarily change the model (captum
hooks a layer; rollout switches the ViT to eager attention), so every request holds one lock
while it uses the models: concurrent requests queue for a few milliseconds instead of mixing.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..config import FAMILIES
from ..data.preprocess import BatchPreprocessor
from ..errors import CnnvitError
from ..runs import Run, load_run

TOP_K = 5
IMAGE_TYPES = "PNG, JPEG, BMP, GIF, TIFF or WebP"


def open_image(source: Any) -> Image.Image:
    """An RGB PIL image from a path, bytes, a PIL image or an (H, W[, C]) uint8 array.

    Anything that is not a readable image raises a one-line `CnnvitError` saying so.
    """
    try:
        if isinstance(source, Image.Image):
            image = source
        elif isinstance(source, np.ndarray):
            image = Image.fromarray(np.clip(source, 0, 255).astype(np.uint8).squeeze())
        elif isinstance(source, (bytes, bytearray)):
            image = Image.open(io.BytesIO(source))
        else:
            image = Image.open(Path(source))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, TypeError, SyntaxError):
        name = Path(source).name if isinstance(source, (str, Path)) else "the upload"
        raise CnnvitError(
            f"{name} is not an image this demo can read: upload a {IMAGE_TYPES} file"
        ) from None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))  # as a viewer shows it
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


@dataclass
class LoadedModel:
    """One saved model of the run, ready for single images."""

    family: str  # cnn | vit
    name: str
    model: torch.nn.Module  # eval mode, float32, on `device`
    processor: Any
    preprocess: BatchPreprocessor

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """uint8 (1, 3, H, W): the image resized by this model's processor, as in training."""
        out = self.processor(
            images=[image], do_rescale=False, do_normalize=False, return_tensors="np"
        )["pixel_values"]
        return torch.from_numpy(np.clip(np.rint(out), 0, 255).astype(np.uint8))


class DemoModels:
    """A run's two models, loaded once, with a lock around every use (see module doc)."""

    def __init__(self, run: Run, device: str = "auto") -> None:
        missing = [f for f in FAMILIES if f not in run.complete_models]
        if missing:
            raise CnnvitError(
                f"{run.path} has no finished {' or '.join(missing)} model "
                f"({'; '.join(run.missing)}): the demo needs both"
            )
        self.run = run
        self.device = run.runtime(device=device, precision="fp32").device
        self.class_names = [str(c) for c in run.dataset.get("class_names") or []]
        self.models: dict[str, LoadedModel] = {}
        for family in FAMILIES:
            record = run.models[family]
            model, processor = record.load(str(self.device))
            preprocess = BatchPreprocessor(processor, self.device)
            self.models[family] = LoadedModel(family, record.name, model, processor, preprocess)
        if not self.class_names:
            config = self.models["cnn"].model.config
            self.class_names = [config.id2label[i] for i in range(config.num_labels)]
        self.lock = threading.Lock()

    def predict(self, image: Any, top_k: int = TOP_K) -> dict[str, Any]:
        """Both models' top-k classes with softmax probabilities for one image."""
        picture = open_image(image)
        out: dict[str, Any] = {}
        with self.lock, torch.inference_mode():
            for family, loaded in self.models.items():
                x = loaded.preprocess(loaded.pixels(picture))
                probabilities = loaded.model(pixel_values=x).logits.float().softmax(1)[0].cpu()
                out[family] = _top(loaded, probabilities, top_k)
        return out

    def explain(self, image: Any) -> dict[str, np.ndarray]:
        """Per family an RGB uint8 overlay (H, W, 3) of its map on the image, at model size.

        CNN: Grad-CAM of the predicted class; ViT: attention rollout of the class token.
        """
        from ..analyses.context import ProbedModel
        from ..analyses.explanations import gradcam_maps, rollout_maps

        picture = open_image(image)
        overlays: dict[str, np.ndarray] = {}
        with self.lock:
            for family, loaded in self.models.items():
                pixels = loaded.pixels(picture)
                probed = ProbedModel(family, loaded.name, loaded.model, loaded.preprocess,
                                     pixels, pixels[:0])  # fmt: skip
                if family == "cnn":
                    with torch.inference_mode():
                        target = loaded.model(pixel_values=loaded.preprocess(pixels)).logits
                    maps, _ = gradcam_maps(probed, pixels, target.argmax(1).clone())
                else:
                    maps, _ = rollout_maps(probed, pixels)
                overlays[family] = overlay(pixels[0], maps[0])
        return overlays


def _top(loaded: LoadedModel, probabilities: torch.Tensor, top_k: int) -> dict[str, Any]:
    config = loaded.model.config
    values, indices = probabilities.topk(min(top_k, len(probabilities)))
    top = [{"label": str(config.id2label[int(i)]), "probability": float(p)}
           for p, i in zip(values, indices, strict=True)]  # fmt: skip
    return {"name": loaded.name, "predicted": top[0]["label"], "top": top}


def overlay(pixels: torch.Tensor, saliency: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """RGB uint8 (H, W, 3): a map (H, W) in the jet colours over the image (3, H, W) in grey.

    The map is scaled to [0, 1] by its own range, so it shows where, not how strongly.
    """
    from matplotlib import colormaps

    grey = pixels.float().mean(0).numpy() / 255.0
    heat = saliency.float().numpy()
    span = float(heat.max() - heat.min())
    heat = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
    coloured = colormaps["jet"](heat)[..., :3]
    mixed = (1 - alpha) * grey[..., None] + alpha * coloured
    return np.clip(np.rint(mixed * 255), 0, 255).astype(np.uint8)


_LOADED: dict[tuple[str, str], DemoModels] = {}
_LOADED_LOCK = threading.Lock()


def demo_models(run: Run | str | Path, device: str = "auto") -> DemoModels:
    """The run's `DemoModels`, loaded on first use and then reused (one copy per run)."""
    path = run.path if isinstance(run, Run) else Path(run).expanduser()
    key = (str(Path(path).resolve()), device)
    with _LOADED_LOCK:
        if key not in _LOADED:
            _LOADED[key] = DemoModels(run if isinstance(run, Run) else load_run(path), device)
        return _LOADED[key]


def predict_both(
    run: Run | DemoModels | str | Path, image: Any, top_k: int = TOP_K
) -> dict[str, Any]:
    """Top-k predictions of the run's CNN and ViT for one image (path, bytes, PIL or array).

    Returns {"cnn": {"name", "predicted", "top": [{"label", "probability"}, ...]}, "vit": ...}.
    """
    models = run if isinstance(run, DemoModels) else demo_models(run)
    return models.predict(image, top_k)
