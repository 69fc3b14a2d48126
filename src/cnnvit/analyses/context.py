"""What every probe reads: the two trained models, their inputs and the run's recipe, built once.

A `ProbeContext` is built from a loaded run (`context_from_run`) or directly from models in
memory (tests, notebooks). It holds per family the model in eval mode and its batch
preprocessor, the uint8 test and validation images each model sees, the class names, the
runtime (device, autocast) and the run's training recipe (for the long-range probe, which
trains fresh models). Helpers here are the few operations several probes share: a seeded test
subset, batched logits under autocast, and atomic figure saving.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..config import FAMILIES, TrainConfig
from ..data.preprocess import BatchPreprocessor
from ..runs import write_atomic
from ..runtime import Runtime

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..runs import Run


@dataclass
class ProbedModel:
    """One trained model as the probes see it."""

    family: str  # cnn | vit
    name: str  # preset name, hub id or folder it came from
    model: torch.nn.Module  # eval mode, on the runtime's device
    preprocess: BatchPreprocessor
    test_images: torch.Tensor  # uint8 (N, 3, H, W) at this model's input size
    validation_images: torch.Tensor  # uint8 (M, 3, H, W)
    training: dict[str, Any] = field(default_factory=dict)  # the run's record of its training

    @property
    def image_size(self) -> int:
        return int(self.test_images.shape[-1])


@dataclass
class ProbeContext:
    """Everything a probe needs, shared by all probes of one `run_probes` call."""

    models: dict[str, ProbedModel]  # keyed "cnn" / "vit"
    test_labels: torch.Tensor  # int64 (N,), the same images for both models
    validation_labels: torch.Tensor  # int64 (M,)
    class_names: list[str]
    runtime: Runtime
    train_config: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    max_test_images: int = 256  # cap for speed; every probe states what it used
    output_dir: Path | None = None  # where figures go (RUN/analyses)
    _logits: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def test_subset(self, cap: int | None = None) -> torch.Tensor:
        """Sorted indices of a seeded random subset of the test split (at most `cap` images)."""
        count = len(self.test_labels)
        cap = min(count, cap if cap is not None else self.max_test_images)
        generator = torch.Generator().manual_seed(self.seed)
        return torch.randperm(count, generator=generator)[:cap].sort().values

    def logits(self, family: str, split: str = "test") -> torch.Tensor:
        """float32 logits (N, C) on the CPU of one model on a whole split, computed once."""
        key = (family, split)
        if key not in self._logits:
            probed = self.models[family]
            images = probed.test_images if split == "test" else probed.validation_images
            self._logits[key] = batched_logits(probed, images, self.runtime)
        return self._logits[key]

    def figure_path(self, name: str) -> Path | None:
        return None if self.output_dir is None else self.output_dir / name


@torch.no_grad()  # not inference_mode: calibration fits a temperature on these logits
def batched_logits(
    probed: ProbedModel, pixels: torch.Tensor, runtime: Runtime, batch_size: int = 256
) -> torch.Tensor:
    """float32 logits (N, C) on the CPU for images in pixel units (uint8, or float 0..255)."""
    outputs = []
    for start in range(0, len(pixels), batch_size):
        x = probed.preprocess(pixels[start : start + batch_size])
        with runtime.autocast():
            outputs.append(probed.model(pixel_values=x).logits.float().cpu())
    if not outputs:
        return torch.zeros(0, 0)
    return torch.cat(outputs)


def save_figure(figure: Figure, path: Path | None) -> str | None:
    """Write a matplotlib figure as PNG atomically and close it; returns its file name."""
    import matplotlib.pyplot as plt

    try:
        if path is None:
            return None
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        write_atomic(path, buffer.getvalue())
        return path.name
    finally:
        plt.close(figure)


def context_from_run(
    run: Run,
    seed: int = 0,
    max_test_images: int = 256,
    device: str = "auto",
    output_dir: Path | None = None,
) -> ProbeContext:
    """Build the probes' context from a loaded run (`cnnvit.runs.load_run`).

    Loads every finished model in eval mode on the run's runtime (eager attention, so the ViT
    can return its attention weights), decodes the run's exact test and validation splits at
    each model's input size, and keeps the run's training recipe.
    """
    from ..errors import CnnvitError
    from ..runtime import place_model

    runtime = run.runtime(device=device)
    records = {f: run.models[f] for f in FAMILIES if f in run.complete_models}
    if not records:
        raise CnnvitError(f"run {run.path} has no finished model to analyse: finish the run first")
    data = run.prepare_data()
    models: dict[str, ProbedModel] = {}
    test_labels = validation_labels = None
    for family, record in records.items():
        model, processor = record.load(str(runtime.device), attention=runtime.attention)
        built = _Placed(model=model, processor=processor, family=family)
        model, preprocess = place_model(built, runtime)  # type: ignore[arg-type]
        model.eval()
        test_images, labels = data.tensors("test", processor)
        validation_images, validation_labels = data.tensors("validation", processor)
        if test_labels is not None and not torch.equal(test_labels, labels):
            raise CnnvitError(f"the two models of {run.path} read different test images")
        test_labels = labels
        models[family] = ProbedModel(
            family,
            record.name,
            model,
            preprocess,
            test_images,
            validation_images,
            training=record.training,
        )
    assert test_labels is not None and validation_labels is not None
    return ProbeContext(
        models=models,
        test_labels=test_labels,
        validation_labels=validation_labels,
        class_names=list(data.class_names),
        runtime=runtime,
        train_config=run.config.train,
        seed=seed,
        max_test_images=max_test_images,
        output_dir=output_dir if output_dir is not None else Path(run.path) / "analyses",
    )


@dataclass
class _Placed:
    """The three attributes `place_model` reads from a BuiltModel."""

    model: torch.nn.Module
    processor: Any
    family: str


# The learning rate when the run chose it per model ("auto", "usual") but recorded no number.
FALLBACK_LR = 5e-4


def recipe_for_probe(
    config: TrainConfig, recorded: dict[str, Any] | None = None, **changes: Any
) -> TrainConfig:
    """The run's recipe with `changes` applied, for a probe that trains a fresh model.

    A learning rate left at "auto" or "usual" (chosen per model by the run) becomes the number
    the run recorded for that model (`recorded`, its run.json training block), else FALLBACK_LR;
    the other "auto" settings stay, so the training loop applies its budget rule to them.
    """
    names = {f.name for f in dataclasses.fields(config)}
    resolved: dict[str, Any] = {}
    if not isinstance(config.lr, (int, float)):  # "auto" or "usual": chosen per model
        value = (recorded or {}).get("lr")
        resolved["lr"] = float(value) if isinstance(value, (int, float)) else FALLBACK_LR
    resolved.update({k: v for k, v in changes.items() if k in names})
    return dataclasses.replace(config, **resolved)
