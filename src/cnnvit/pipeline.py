"""The orchestrator: the one place that knows the order of the stages.

config -> data -> models -> train -> evaluate -> run directory -> report. Each stage is a
function over plain objects; this module only wires them together and records what they
measured. `compare()` is the Python API behind `cnnvit compare`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from .config import CompareConfig, DataConfig, build_config
from .data import PreparedData, prepare_data
from .data.preprocess import BatchPreprocessor
from .errors import CnnvitError
from .evaluation import classification_metrics, inference_cost, paired_comparison, predict
from .measure import environment
from .models import BuiltModel, build_model, count_flops, processor_image_size
from .runs import create_run_dir, write_json
from .runtime import Runtime, make_accelerator, place_model, resolve_runtime
from .training import train_model


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def compare(config: CompareConfig | None = None, **settings: Any) -> Path:
    """Train and evaluate a CNN and a ViT with one recipe; returns the run directory.

    `settings` are the CLI flags' names (`epochs=5`, `dataset="path/to/folder"`, ...) and
    override `config`.
    """
    if settings or config is None:
        base = config.to_dict() if config is not None else {}
        config = build_config({**base, **settings})
    runtime = resolve_runtime(config.train.device, config.train.precision, config.train.attention)
    attention = runtime.attention
    torch.manual_seed(config.train.seed)

    data = prepare_data(config.data, config.train.seed)
    # Models are built before the run directory exists, so a bad name creates nothing.
    built = {
        family: build_model(
            spec, family, data.class_names, config.models.image_size, attention, config.train.seed
        )
        for family, spec in (("cnn", config.models.cnn), ("vit", config.models.vit))
    }
    run_dir = create_run_dir(config.output, config.models.cnn, config.models.vit)
    try:
        return _run(config, data, built, run_dir, runtime)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # we created it: an incomplete run goes
        raise


def _run(
    config: CompareConfig,
    data: PreparedData,
    built: dict[str, BuiltModel],
    run_dir: Path,
    runtime: Runtime,
) -> Path:
    device, precision, attention = runtime.device, runtime.precision, runtime.attention
    # "output" stays what was asked (usually unset), so config.json loads back with --config;
    # where the run went is recorded with the other resolved values.
    resolved = {"device": str(device), "precision": precision, "attention": attention,
                "run_dir": str(run_dir)}  # fmt: skip
    write_json(run_dir / "config.json", {**config.to_dict(), "resolved": resolved})
    splits = data.summary()["splits"]
    _say(
        f"dataset {data.name}: {data.num_classes} classes, {splits['train']} train / "
        f"{splits['validation']} validation / {splits['test']} test images; "
        f"device {device}, {precision}"
    )
    accelerator = make_accelerator(runtime)
    models: dict[str, dict[str, Any]] = {}
    test_logits: dict[str, torch.Tensor] = {}
    test_labels: torch.Tensor | None = None
    for family, model in built.items():
        result, logits, labels = _train_and_evaluate(
            model, data, config, accelerator, runtime, run_dir
        )
        models[family], test_logits[family] = result, logits
        if test_labels is not None and not torch.equal(test_labels, labels):
            raise CnnvitError(
                "the two models' test splits differ (unreadable images?): cannot compare"
            )
        test_labels = labels
        _say(f"[{model.name}] test accuracy {result['test']['accuracy']:.4f}")
    assert test_labels is not None
    metrics = {
        "dataset": data.summary(),
        "models": models,
        "comparison": paired_comparison(test_logits["cnn"], test_logits["vit"], test_labels),
        "environment": environment(device),
    }
    write_json(run_dir / "metrics.json", metrics)
    from .report import build_report

    report = build_report(run_dir)
    _say(f"report: {report}")
    return run_dir


def _train_and_evaluate(
    built: BuiltModel,
    data: PreparedData,
    config: CompareConfig,
    accelerator: Any,
    runtime: Runtime,
    run_dir: Path,
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Train one model, evaluate it on the test split, save it; its metrics.json entry."""
    device, precision, attention = runtime.device, runtime.precision, runtime.attention
    model, preprocess = place_model(built, runtime)
    channels_last = preprocess.channels_last
    image_size = processor_image_size(built.processor)
    info = built.info()
    info["flops_per_image"] = count_flops(model, image_size)
    train = data.tensors("train", built.processor)
    validation = data.tensors("validation", built.processor)
    test_images, test_labels = data.tensors("test", built.processor)

    result = train_model(
        model,
        preprocess,
        train,
        validation,
        config.train,
        accelerator,
        runtime,
        name=built.name,
        log=_say,
    )
    with runtime.autocast():
        logits, loss = predict(
            result.model, preprocess, test_images, test_labels, config.train.eval_batch_size
        )
    test = classification_metrics(logits, test_labels, data.class_names, loss)
    with runtime.autocast():
        cost = inference_cost(result.model, preprocess, test_images, config.train.eval_batch_size)

    plain = accelerator.unwrap_model(result.model)
    plain.save_pretrained(run_dir / built.family)
    built.processor.save_pretrained(run_dir / built.family)
    info.update({
        "image_size": image_size,
        "history": result.history,
        "best_epoch": result.best_epoch,
        "training": {
            "lr": config.train.lr,
            "epochs": config.train.epochs,
            "batch_size": config.train.batch_size,
            "precision": precision,
            "memory_format": "channels_last" if channels_last else "contiguous",
            "attention": attention if built.family == "vit" else None,
            "compiled": config.train.compile,
            "device": str(device),
        },
        "test": test,
        "efficiency": {
            "train_seconds": result.train_seconds,
            "train_images_per_second": result.train_images_per_second,
            **cost,
            "peak_memory_mb": result.peak_memory_mb,
        },
    })  # fmt: skip
    return info, logits, test_labels


def evaluate_saved_model(
    model_dir: str | Path, data_config: DataConfig | None = None, seed: int = 0,
    batch_size: int = 512, device: str = "auto", precision: str = "auto",
) -> dict[str, Any]:  # fmt: skip
    """Test-split metrics of a saved model (a run's cnn/ or vit/ folder, or any saved model)."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    path = Path(model_dir).expanduser()
    if not (path / "config.json").is_file():
        raise CnnvitError(f"{path} is not a saved model folder (no config.json)")
    try:
        model = AutoModelForImageClassification.from_pretrained(path)
        processor = AutoImageProcessor.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise CnnvitError(f"cannot load the model in {path}: {str(err).splitlines()[0]}") from None
    data = prepare_data(data_config or DataConfig(), seed)
    model_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if sorted(model_names) != sorted(data.class_names):
        raise CnnvitError(
            f"the model's classes ({', '.join(model_names[:5])}...) are not the dataset's "
            f"({', '.join(data.class_names[:5])}...): evaluate it on the dataset it was trained for"
        )
    to_model = torch.tensor([model_names.index(name) for name in data.class_names])
    images, labels = data.tensors("test", processor)
    labels = to_model[labels]  # dataset label ids -> the model's label ids
    runtime = resolve_runtime(device, precision)
    model = model.to(runtime.device).eval()
    preprocess = BatchPreprocessor(processor, runtime.device)
    chosen = runtime.precision
    with runtime.autocast():
        logits, loss = predict(model, preprocess, images, labels, batch_size)
    return {
        "model": str(path),
        "dataset": data.name,
        "precision": chosen,
        "test": classification_metrics(logits, labels, model_names, loss),
    }
