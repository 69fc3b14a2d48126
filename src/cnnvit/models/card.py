"""Model cards: a README.md in every saved model folder, as the Hugging Face hub expects.

The card is a `huggingface_hub.ModelCard` (YAML metadata the hub indexes, then markdown), built
offline from plain figures of a run: what the model is (family, preset or hub id), what it was
trained and tested on (dataset and split sizes), how (the recipe), how well (test metrics) and at
what cost (parameters, FLOPs, throughput, latency, memory), with a relative link to the run's
report for the CNN-versus-ViT verdict. Uploading the folder (`hf upload USER/NAME runs/RUN/vit`)
then publishes a model that loads with the Auto classes and `pipeline("image-classification")`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..formatting import metric_value, num, show
from .adaptation import DEFAULT_RULE, adaptation_sentence

FAMILY_NAMES = {"cnn": "convolutional network (CNN)", "vit": "Vision Transformer (ViT)"}

# (key, label, spec, unit): spec is cnnvit.formatting.show's (a format spec, "si" or "" for
# text), the formatter the run's report uses too. The recipe in the order a recipe is read.
_RECIPE = [
    ("epochs", "epochs", "", ""),
    ("batch_size", "batch size", "", ""),
    ("lr", "peak learning rate (AdamW)", "g", ""),
    ("weight_decay", "weight decay", "g", ""),
    ("warmup_fraction", "warm-up (fraction of steps), then cosine decay", "g", ""),
    ("label_smoothing", "label smoothing", "g", ""),
    ("grad_clip_norm", "gradient clipping (norm)", "g", ""),
    ("augment", "random-affine augmentation", "", ""),
    ("augment_strength", "augmentation strength", "g", ""),
    ("hflip", "horizontal flips", "", ""),
    ("precision", "precision", "", ""),
    ("seed", "seed", "", ""),
]
_METRICS = [
    ("accuracy", "accuracy", ".2%", ""),
    ("top5_accuracy", "top-5 accuracy", ".2%", ""),
    ("macro_f1", "macro F1", ".4f", ""),
    ("loss", "cross-entropy loss", ".4f", ""),
]
_COSTS = [
    ("train_seconds", "training time", ".1f", " s"),
    ("train_images_per_second", "training throughput", ",.0f", " images/s"),
    ("inference_images_per_second", "inference throughput", ",.0f", " images/s"),
    ("latency_ms_batch1", "batch-1 latency", ".2f", " ms"),
    ("peak_memory_mb", "peak training memory", ",.0f", " MB"),
]


def _rows(values: Mapping[str, Any], table: list[tuple[str, str, str, str]]) -> list[str]:
    """Markdown table rows for the keys of `table` present in `values` (others are skipped)."""
    rows = []
    for key, label, spec, unit in table:
        value = values.get(key)
        if value is None:
            continue
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif spec and num(value) is None:  # a string such as "auto" where a number is usual
            text = str(value)
        else:
            text = show(value, spec) + unit
        rows.append(f"| {label} | {text} |")
    return rows


def _table(rows: list[str]) -> str:
    return "\n".join(["| | |", "|---|---:|", *rows]) if rows else "(not recorded)"


def card_datasets(info: Mapping[str, Any]) -> list[str]:
    """The card's `datasets:`: what the model was pretrained on (when known), then the dataset
    cnnvit trained it on, so a folder loaded again records its own pretraining
    (cnnvit.pretraining reads this list)."""
    from ..pretraining import SCRATCH, UNKNOWN

    data = str((info.get("pretraining") or {}).get("data") or "")
    names = [] if data in ("", SCRATCH, UNKNOWN) else [d.strip() for d in data.split("+")]
    trained = str((info.get("dataset") or {}).get("name") or "")
    if trained.startswith(("/", ".", "~")):  # a local folder: its name, not the path
        trained = Path(trained).expanduser().name
    return [n for n in dict.fromkeys([*names, trained]) if n]


def card_data(info: Mapping[str, Any]) -> ModelCardData:
    """The card's YAML metadata: library, task, base model, dataset and test accuracy."""
    dataset = info.get("dataset", {})
    test = info.get("test", {})
    name = info.get("name", "model")
    model_name = f"{name} trained by cnnvit on {dataset.get('name', 'a dataset')}"
    results = []
    for key, metric in (("accuracy", "accuracy"), ("macro_f1", "f1")):
        if test.get(key) is not None:
            results.append(
                EvalResult(
                    task_type="image-classification",
                    dataset_type=str(dataset.get("name", "unknown")),
                    dataset_name=str(dataset.get("name", "unknown")),
                    dataset_split="test",
                    metric_type=metric,
                    metric_name=key.replace("_", " "),
                    metric_value=metric_value(test[key]),
                )
            )
    return ModelCardData(
        datasets=card_datasets(info) or None,
        library_name="transformers",
        pipeline_tag="image-classification",
        base_model=name if info.get("source") == "hub" else None,
        tags=["cnnvit", "image-classification", info.get("family", "model")],
        model_name=model_name,
        eval_results=results or None,
    )


def card_text(info: Mapping[str, Any]) -> str:
    """The markdown body of the card (everything below the YAML metadata)."""
    family = FAMILY_NAMES.get(info.get("family", ""), info.get("family", "image classifier"))
    name = info.get("name", "model")
    source = info.get("source", "preset")
    origin = {
        "preset": f"cnnvit's built-in preset `{name}` (a `transformers` config), trained from "
        "scratch",
        "hub": f"the hub model [`{name}`](https://huggingface.co/{name}), fine-tuned",
        "local": f"the local model folder `{name}`, fine-tuned",
    }.get(source, f"`{name}`")
    dataset = info.get("dataset", {})
    splits = dataset.get("splits", {})
    split_text = ", ".join(f"{split} {int(size):,}" for split, size in splits.items())
    classes = dataset.get("class_names") or []
    num_classes = dataset.get("num_classes", len(classes))
    class_text = f"{num_classes} classes" + (
        f" ({', '.join(map(str, classes[:10]))}{', ...' if len(classes) > 10 else ''})"
        if classes
        else ""
    )
    size_rows = []
    if info.get("params") is not None:
        size_rows.append(f"| parameters | {show(info['params'] / 1e6, '.2f')} M |")
    if info.get("flops_per_image") is not None:
        flops = show(info["flops_per_image"] / 1e6, ",.0f")
        size_rows.append(f"| FLOPs per image (forward) | {flops} M |")
    if info.get("image_size") is not None:
        size_rows.append(f"| input size | {info['image_size']} px |")
    training = dict(info.get("training", {}))
    if info.get("best_epoch") is not None:
        training.setdefault("best_epoch", info["best_epoch"])
    recipe = _rows(training, _RECIPE)
    if training.get("best_epoch") is not None:
        recipe.append(f"| weights kept from epoch | {training['best_epoch']} (best validation) |")
    adaptation = info.get("adaptation") or {}
    mode = adaptation.get("mode") or training.get("adapt") or "full"
    adapt = f"{adaptation_sentence(mode)} {DEFAULT_RULE}"
    probe = adaptation.get("probe") or {}
    if num(probe.get("test_accuracy")) is not None:
        adapt += (
            f" The linear probe reached {show(probe['test_accuracy'], '.2%')} test accuracy "
            f"({show(probe.get('seconds'), '.1f')} s); the weights here are the full fine-tune's."
        )
    device = (info.get("environment") or {}).get("device") or training.get("device")
    report = info.get("report", "../report.html")
    return f"""
# {name}

An image classifier: a {family}, from {origin}. cnnvit trained and tested it beside a model of
the other family, with the same recipe on the same splits; the run's report,
[{report}]({report}), holds the comparison and its verdict.

## Data

- dataset: `{dataset.get("name", "unknown")}`, {class_text}
- splits (images): {split_text or "not recorded"}; stratified and seeded, the test split unseen
  in training and model selection

## Training recipe

{adapt}

{_table(recipe)}

## Test metrics

{_table(_rows(info.get("test", {}), _METRICS))}

## Size and cost

{_table(size_rows + _rows(info.get("efficiency", {}), _COSTS))}

Measured on {device or "the machine recorded in the run's run.json"}; costs depend on it.

## Use

```python
from transformers import pipeline

classify = pipeline("image-classification", model="path/to/this/folder")
classify("image.png")
```
"""


def write_model_card(folder: Path, info: dict) -> None:
    """Write `folder/README.md`: a model card from a run's figures for one saved model.

    `info` holds plain values, each optional: family ("cnn" | "vit"), name (preset, hub id or
    path), source ("preset" | "hub" | "local"), pretrained, dataset (name, class_names or
    num_classes, splits: {split: size}), training (lr, epochs, batch_size, precision,
    weight_decay, warmup_fraction, label_smoothing, grad_clip_norm, augment, hflip, seed),
    best_epoch, test (accuracy, top5_accuracy, macro_f1, loss), params, flops_per_image,
    image_size, efficiency (train_seconds, train_images_per_second, inference_images_per_second,
    latency_ms_batch1, peak_memory_mb), environment (device), report (relative link to the run's
    report; default ../report.html).
    """
    data = card_data(info)
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n{card_text(info)}")
    card.save(Path(folder) / "README.md")
