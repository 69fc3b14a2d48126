"""`cnnvit evaluate`: a saved model re-scored on a test split, its run's own by default.

A model folder inside a run directory (RUN/cnn, RUN/vit) is evaluated on that run's test split
(its dataset, caps and split seed, checked against split.json) and the result says whether its
predictions match the ones the run saved; any other saved model is evaluated on the split the
given data settings make. Labels are matched by name, so a model whose label ids are in another
order scores the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import DataConfig
from .data import prepare_data
from .data.preprocess import BatchPreprocessor
from .errors import CnnvitError
from .evaluation import classification_metrics, predict
from .runs import load_run
from .runtime import resolve_runtime


def evaluate_saved_model(
    model_dir: str | Path,
    data_config: DataConfig | None = None,
    batch_size: int = 512,
    device: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """Test-split metrics of a saved model: a run's cnn/ or vit/ folder, or any saved model.

    A folder inside a run directory is evaluated on that run's own test split (its config and
    split seed) unless `data_config` says otherwise; the result then also says whether its
    predictions match the ones the run saved.
    """
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    path = Path(model_dir).expanduser()
    if not (path / "config.json").is_file():
        raise CnnvitError(f"{path} is not a saved model folder (no config.json)")
    run = load_run(path.parent) if (path.parent / "run.json").is_file() else None
    if data_config is None:
        data_config = run.config.data if run is not None else DataConfig()
    try:
        model = AutoModelForImageClassification.from_pretrained(path)
        processor = AutoImageProcessor.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise CnnvitError(f"cannot load the model in {path}: {str(err).splitlines()[0]}") from None
    data = prepare_data(data_config)
    model_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if sorted(model_names) != sorted(data.class_names):
        raise CnnvitError(
            f"the model's classes ({', '.join(model_names[:5])}...) are not the dataset's "
            f"({', '.join(data.class_names[:5])}...): evaluate it on the dataset it was trained for"
        )
    images, labels = data.tensors("test", processor)
    labels = label_remap(data.class_names, model_names)[labels]  # dataset ids -> model ids
    runtime = resolve_runtime(device, precision)
    model = model.to(runtime.device).eval()
    preprocess = BatchPreprocessor(processor, runtime.device)
    with runtime.autocast():
        logits, loss = predict(model, preprocess, images, labels, batch_size)
    result: dict[str, Any] = {
        "model": str(path),
        "dataset": data.name,
        "precision": runtime.precision,
        "test": classification_metrics(logits, labels, model_names, loss),
    }
    family = path.name
    if run is not None and family in run.complete_models and data_config == run.config.data:
        saved = run.models[family].predictions()
        ids = data.example_ids("test", processor)
        same_images = np.array_equal(saved.ids, ids)
        agree = float((saved.predicted == logits.argmax(1).numpy()).mean()) if same_images else None
        result["run"] = {"path": str(run.path), "same_test_images": same_images,
                         "prediction_agreement": agree}  # fmt: skip
    return result


def label_remap(dataset_names: list[str], model_names: list[str]) -> torch.Tensor:
    """Index tensor mapping dataset label ids to the model's label ids, matched by name."""
    return torch.tensor([model_names.index(name) for name in dataset_names])
