"""Saved models are ordinary Hugging Face models: a model card in README.md, and a folder that
loads with the Auto classes and with `pipeline("image-classification")` from the folder alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

from cnnvit.formatting import show
from cnnvit.models.build import build_model
from cnnvit.models.card import _COSTS, _METRICS, _RECIPE, _rows, write_model_card

INFO = {
    "family": "vit",
    "name": "vit-micro",
    "source": "preset",
    "dataset": {
        "name": "digits",
        "class_names": [str(i) for i in range(10)],
        "splits": {"train": 1294, "validation": 144, "test": 359},
    },
    "training": {
        "lr": 5e-4,
        "epochs": 20,
        "batch_size": 64,
        "precision": "bf16",
        "weight_decay": 0.05,
        "label_smoothing": 0.1,
        "augment": True,
        "hflip": False,
        "grad_clip_norm": 1.0,
    },
    "best_epoch": 17,
    "test": {"accuracy": 0.9638, "top5_accuracy": 0.9972, "macro_f1": 0.9612, "loss": 0.2104},
    "params": 2_690_000,
    "flops_per_image": 366_000_000,
    "image_size": 32,
    "efficiency": {
        "train_seconds": 61.2,
        "train_images_per_second": 437.0,
        "inference_images_per_second": 3012.0,
        "latency_ms_batch1": 2.8,
        "peak_memory_mb": 310.0,
    },
}


def test_card_metadata_and_text_carry_the_run_figures(tmp_path: Path):
    write_model_card(tmp_path, INFO)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "image-classification"
    assert card.data.base_model is None  # a preset is trained from scratch
    metrics = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert metrics == {"accuracy": 0.9638, "f1": 0.9612}
    assert {r.dataset_name for r in card.data.eval_results} == {"digits"}
    # The card's one rendering check: its tables' rows as the card's own row writer formats
    # the run's figures (cnnvit.formatting's `show`, which the report uses too).
    text = card.text
    for table, values in ((_RECIPE, INFO["training"]), (_METRICS, INFO["test"]),
                          (_COSTS, INFO["efficiency"])):  # fmt: skip
        rows = _rows(values, table)
        assert len(rows) == sum(values.get(key) is not None for key, *_ in table)
        for row in rows:
            assert f"\n{row}\n" in text, row
    for fragment in [
        "Vision Transformer", "preset `vit-micro`", "`digits`, 10 classes",
        "train 1,294, validation 144, test 359", "| weights kept from epoch | 17",
        f"| parameters | {show(INFO['params'] / 1e6, '.2f')} M |",
        # fixed inputs above, so fixed text: the formats themselves, independent of the writer
        "| peak learning rate (AdamW) | 0.0005 |", "| epochs | 20 |", "| batch size | 64 |",
        "| precision | bf16 |", "| accuracy | 96.38% |", "| macro F1 | 0.9612 |",
        "| parameters | 2.69 M |", "| FLOPs per image (forward) | 366 M |",
        "| batch-1 latency | 2.80 ms |", "| training throughput | 437 images/s |",
        "[../report.html](../report.html)",
    ]:  # fmt: skip
        assert fragment in text, fragment


def test_card_of_a_hub_model_names_its_base_model(tmp_path: Path):
    info = {**INFO, "family": "cnn", "name": "facebook/convnext-tiny-224", "source": "hub"}
    write_model_card(tmp_path, info)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model == "facebook/convnext-tiny-224"
    assert "convolutional network" in card.text
    assert "https://huggingface.co/facebook/convnext-tiny-224" in card.text


def test_card_with_figures_missing_is_still_valid(tmp_path: Path):
    write_model_card(tmp_path, {"family": "cnn", "name": "convnext-nano", "report": "r.html"})
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.eval_results is None
    assert "(not recorded)" in card.text and "[r.html](r.html)" in card.text


def _images(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    # Odd sizes, so the saved processor's resize is part of what is checked.
    return [
        Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)) for i in range(count)
    ]


@pytest.mark.parametrize(("spec", "family"), [("vit-nano", "vit"), ("convnext-nano", "cnn")])
def test_saved_folder_reloads_with_auto_classes_and_pipeline(
    tmp_path: Path, spec: str, family: str
):
    names = ["zero", "one", "two", "three", "four", "five"]
    built = build_model(spec, family, names, 16)
    built.model.eval()
    with torch.no_grad():  # a sharper random head, so that different images get different labels
        built.model.classifier.weight.mul_(20)
    built.model.save_pretrained(tmp_path)
    built.processor.save_pretrained(tmp_path)
    write_model_card(tmp_path, {**INFO, "family": family, "name": spec})
    images = _images(8)

    # The in-memory model's predictions, through its own processor.
    inputs = built.processor(images=images, return_tensors="pt")
    with torch.no_grad():
        expected_logits = built.model(**inputs).logits

    model = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    with torch.no_grad():
        logits = model(**processor(images=images, return_tensors="pt")).logits
    torch.testing.assert_close(logits, expected_logits)
    assert model.config.id2label == dict(enumerate(names))

    classify = pipeline("image-classification", model=str(tmp_path), device="cpu")
    answers = classify(images, top_k=1)
    top_labels = [answer[0]["label"] for answer in answers]
    assert top_labels == [names[i] for i in expected_logits.argmax(1).tolist()]
    assert len(set(top_labels)) >= 3  # the comparison is not one label against itself
    top_scores = torch.tensor([answer[0]["score"] for answer in answers])
    torch.testing.assert_close(top_scores, expected_logits.softmax(1).max(1).values)
