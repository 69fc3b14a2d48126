"""The peer: the Hugging Face docs' image-classification recipe, on cnnvit's data and models.

This is what a user following the `transformers` image-classification guide would write:
`Trainer` with its default settings (fp32, `dataloader_num_workers=0`, the default optimizer),
the model's image processor applied per batch through `datasets.Dataset.with_transform`, and a
collate function stacking `pixel_values` and `labels`. The guide augments with torchvision, which
does not run here; the peer applies cnnvit's augmentation instead (the same random affine:
rotation, scale and shift, zero fill) per image with PIL, before the processor's resize and
normalisation, which is how that recipe looks without torchvision.

Everything that decides the result is shared with cnnvit's side of the benchmark: the model
(`cnnvit.models.build_model`, same seed, so the same initial weights), the splits
(`cnnvit.data.prepare_data`) and the hyperparameters (one `TrainConfig`, its "auto" values
resolved by the caller to the numbers cnnvit used).

With `plain=True` the same Trainer runs the plain recipe instead (issue 8's baseline, what a user
would try first): AdamW lr 1e-3, 10% warm-up then linear decay, weight decay 0.05, no label
smoothing, no augmentation, Trainer's default gradient clipping (1.0), fp32. cnnvit's defaults
must never do worse than this on the same architecture.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image
from transformers import Trainer, TrainingArguments

from cnnvit.config import TrainConfig
from cnnvit.data import PreparedData, Split
from cnnvit.data.preprocess import AugmentConfig
from cnnvit.measure import PeakMemory, synchronize
from cnnvit.models import BuiltModel
from cnnvit.runtime import images_per_second
from cnnvit.training.recipe import resolve_recipe

# The plain recipe (issue 8); everything not named here is Trainer's default.
PLAIN = {"learning_rate": 1e-3, "lr_scheduler_type": "linear", "warmup_steps": 0.1,
         "weight_decay": 0.05, "label_smoothing_factor": 0.0}  # fmt: skip


def augment_image(image: Image.Image, rng: random.Random, config: AugmentConfig) -> Image.Image:
    """One random rotation/scale/shift (and optional flip) of a PIL image, zero-filled borders.

    The same distribution as cnnvit's batched `random_affine`: angle uniform in
    ±max_rotation_degrees, scale uniform in scale_range, shift uniform in ±max_translate_fraction
    of the side, all about the image centre, bilinear resampling.
    """
    width, height = image.size
    if config.hflip and rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    angle = math.radians(rng.uniform(-config.max_rotation_degrees, config.max_rotation_degrees))
    scale = rng.uniform(*config.scale_range)
    shift_x = rng.uniform(-config.max_translate_fraction, config.max_translate_fraction) * width
    shift_y = rng.uniform(-config.max_translate_fraction, config.max_translate_fraction) * height
    # Image.transform wants the inverse map, output pixel -> input pixel (pixel-centre
    # coordinates): input = centre + M (output - centre - shift), M = rotation(-angle) / scale.
    # So content moves by +shift, turns by the angle and grows by the scale.
    a, b = math.cos(angle) / scale, math.sin(angle) / scale
    d, e = -b, a
    cx, cy = width / 2 + shift_x, height / 2 + shift_y
    c = width / 2 - a * cx - b * cy
    f = height / 2 - d * cx - e * cy
    return image.transform(
        image.size,
        Image.Transform.AFFINE,
        (a, b, c, d, e, f),
        resample=Image.Resampling.BILINEAR,
        fillcolor=0,
    )


def _to_pil(value: Any) -> Image.Image:
    """An RGB PIL image from a datasets value: a decoded Image, or an Array2D uint8 (H, W)."""
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    return Image.fromarray(np.asarray(value, dtype=np.uint8)).convert("RGB")


def to_hf_dataset(split: Split, image_column: str) -> datasets.Dataset:
    """The split as the docs have it: a decoding image column and a `label` column."""
    table = split.dataset
    if isinstance(table.features[image_column], datasets.Image):  # cnnvit keeps bytes undecoded
        table = table.cast_column(image_column, datasets.Image(decode=True))
    return table.add_column("label", split.labels.tolist())


def make_transform(
    processor: Any, image_column: str, augment: AugmentConfig | None, seed: int
) -> Any:
    """The `with_transform` function: per image PIL (augmentation), then the processor per batch."""
    rng = random.Random(seed)

    def transform(batch: dict[str, list]) -> dict[str, Any]:
        images = [_to_pil(value) for value in batch[image_column]]
        if augment is not None:
            images = [augment_image(image, rng, augment) for image in images]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]  # (B, 3, H, W)
        return {"pixel_values": pixels, "label": batch["label"]}

    return transform


def collate_fn(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack per-example tensors into a batch, as the docs' collate function does."""
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.tensor([example["label"] for example in examples]),
    }


def train_and_evaluate(
    data: PreparedData, built: BuiltModel, config: TrainConfig, plain: bool = False
) -> dict[str, Any]:
    """Train `built.model` with Trainer on the train split; time it and test-set prediction.

    `config` gives epochs, batch size and seed, and (unless `plain`) the recipe, with a number
    for lr. Returns plain numbers for the benchmark's JSON: seconds, images/s, accuracy, peak MB.
    """
    column = data.image_column
    # Trainer holds regularisation constant: cnnvit's progressive schedule at its full strength.
    recipe = resolve_recipe(config, built.recipe, len(data.splits["train"].labels))
    augment = None if plain else recipe.augment_config()
    train = to_hf_dataset(data.splits["train"], column).with_transform(
        make_transform(built.processor, column, augment, config.seed)
    )
    test_split = data.splits["test"]
    test = to_hf_dataset(test_split, column).with_transform(
        make_transform(built.processor, column, None, config.seed)
    )
    with tempfile.TemporaryDirectory(prefix="peer-hf-trainer-") as output_dir:
        args = TrainingArguments(
            output_dir=output_dir,
            num_train_epochs=config.epochs,
            per_device_train_batch_size=config.batch_size,
            per_device_eval_batch_size=config.batch_size,  # as the docs do
            seed=config.seed,
            **(
                PLAIN
                if plain
                else {
                    "learning_rate": recipe.lr,
                    "weight_decay": recipe.weight_decay,
                    "lr_scheduler_type": "cosine",
                    # a float < 1 is a fraction of all steps
                    "warmup_steps": recipe.warmup_fraction,
                    "label_smoothing_factor": recipe.label_smoothing,
                    "max_grad_norm": recipe.grad_clip_norm,
                }
            ),  # fmt: skip
            eval_strategy="no",  # cnnvit's train time excludes evaluation too
            save_strategy="no",
            report_to="none",
            remove_unused_columns=False,  # keep the image column for the transform
        )
        trainer = Trainer(
            model=built.model, args=args, train_dataset=train, data_collator=collate_fn
        )
        device = args.device
        with PeakMemory(device) as memory:
            train_output = trainer.train()
        synchronize(device)
        start = time.perf_counter()
        prediction = trainer.predict(test)
        synchronize(device)
        eval_seconds = time.perf_counter() - start

    train_images = len(data.splits["train"].labels)
    train_seconds = float(train_output.metrics["train_runtime"])
    predicted = np.asarray(prediction.predictions).argmax(-1)  # logits (N, C) -> (N,)
    return {
        "device": str(device),
        "precision": "fp32",
        "memory_format": "contiguous",
        "attention": "sdpa" if built.family == "vit" else None,
        "train_images": train_images,
        "train_seconds": train_seconds,
        "train_images_per_second": images_per_second(train_images * config.epochs, train_seconds),
        "eval_images": len(test_split.labels),
        "eval_batch_size": config.batch_size,
        "eval_seconds": eval_seconds,
        "eval_images_per_second": images_per_second(len(test_split.labels), eval_seconds),
        "test_accuracy": float((predicted == test_split.labels).mean()),
        "peak_memory_mb": memory.peak_mb,
    }
