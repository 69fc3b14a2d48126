"""Shared fixtures: small datasets written to temporary folders, and one tiny finished run."""

from __future__ import annotations

import gc
import gzip
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# The decoded-image cache of the tests lives in a temporary folder, never in ~/.cache (subprocess
# tests inherit it through the environment).
os.environ.setdefault("CNNVIT_CACHE", tempfile.mkdtemp(prefix="cnnvit-test-cache-"))

# Small and fast: nano presets on digits at their own 8 px (the ViT cuts 2x2 patches: 16
# tokens), a few hundred images, a few epochs: enough for both models to learn far above chance
# (test_compare checks it), not more. The recipe is fixed by numbers (no learning-rate search),
# so these runs test the pipeline, not the tuner.
TINY = {
    "cnn": "convnext-nano",
    "vit": "vit-nano",
    "image_size": 8,
    "patch_size": 2,
    "epochs": 6,
    "batch_size": 32,
    "lr": 2e-3,
    "warmup_fraction": 0.1,
    "label_smoothing": 0.1,
    "max_train_samples": 300,
    "max_eval_samples": 100,
    "eval_batch_size": 128,
    # The fp32 path on every host: a bf16 host must not hide an fp32 failure, and no figure
    # asserted below may depend on which precision auto picks.
    "precision": "fp32",
}
# Smaller still, for tests that run compare several times (interruptions, determinism).
MINI = {**TINY, "epochs": 2, "max_train_samples": 200, "max_eval_samples": 60}
# A study's recipe for the study and Ray tests: one epoch per cell, two training fractions.
STUDY = {**{k: v for k, v in TINY.items() if k != "patch_size"}, "image_size": 16, "lr": 1e-3,
         "dataset": "digits", "epochs": 1, "label_smoothing": 0.0,
         "max_train_samples": 100, "max_eval_samples": 60, "eval_batch_size": 32,
         "fractions": [0.5, 1.0]}  # fmt: skip


def pytest_collection_finish(session: pytest.Session) -> None:
    """Exempt what importing and collecting made (torch, transformers, every test module) from
    garbage collection, as `compare` does for its own run (pipeline._settled_heap): each
    `accelerator.free_memory()` after a tuning trial or a model is a full `gc.collect()`, which
    in a test process walking those objects takes about half a second."""
    gc.collect()
    gc.freeze()


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (MNIST's format), gzipped when the name ends .gz."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        handle.write(data)


def make_pattern_images(
    count: int, size: int, klass: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Images a classifier can tell apart: class k has a bright bar at a class-specific place."""
    images = []
    for _ in range(count):
        image = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
        row = 2 + 4 * klass + int(rng.integers(0, 2))
        image[row : row + 3, 2 : size - 2] = 230
        images.append(image)
    return images


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A folder with three class subfolders of PNG, JPEG and grayscale/RGBA images."""
    root = tmp_path / "shapes"
    rng = np.random.default_rng(0)
    for klass, name in enumerate(["bars_top", "bars_middle", "bars_bottom"]):
        folder = root / name
        folder.mkdir(parents=True)
        for i, array in enumerate(make_pattern_images(12, 20, klass, rng)):
            image = Image.fromarray(array)
            if i % 4 == 1:
                image = image.convert("L")
            elif i % 4 == 2:
                image = image.convert("RGBA")
            suffix = ".jpg" if i % 4 == 3 else ".png"
            image.save(folder / f"{i}{suffix}")
    return root


@pytest.fixture
def idx_folder(tmp_path: Path) -> Path:
    """MNIST-style IDX files: gzipped training files, plain test files."""
    root = tmp_path / "idx"
    root.mkdir()
    rng = np.random.default_rng(1)
    for split, count, gz in (("train", 60, True), ("t10k", 30, False)):
        labels = np.arange(count) % 3
        images = np.stack([make_pattern_images(1, 16, int(k), rng)[0][..., 0] for k in labels])
        suffix = ".gz" if gz else ""
        write_idx(root / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(root / f"{split}-labels-idx1-ubyte{suffix}", labels)
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real end-to-end `compare` on a digits subset, shared read-only by the tests that read
    it; a test that changes a run works on `copy_run(tiny_run, tmp_path)`."""
    from cnnvit import compare

    out = tmp_path_factory.mktemp("runs") / "tiny"
    return compare(dataset="digits", output=str(out), seed=0, **TINY)


def copy_run(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    """A private copy of a run directory, for tests that modify or damage it."""
    import shutil

    target = tmp_path / name
    shutil.copytree(run, target)
    return target


@pytest.fixture
def quick_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports built with a 1x1 PNG for each figure, for tests that read a report's text or its
    files, not its plots (drawing the four figures is most of a report's cost); the figures
    themselves are checked where they are the subject (test_report.py)."""
    import io

    from cnnvit.report import assemble

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    png = buffer.getvalue()
    for name in ("learning_curves", "confusions", "per_class_f1", "accuracy_vs_cost"):
        monkeypatch.setattr(assemble, name, lambda *args: png)
