"""Dataset sources: each becomes a `datasets.DatasetDict` with an image and a label column.

`digits` (scikit-learn's 8x8 digits, offline), a folder of MNIST-style IDX files, a folder with
one subfolder per class (the `imagefolder` builder), or any hub dataset id. With `--streaming`, a
hub dataset or an image folder is read as a stream and spooled to disk instead (streaming.py).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from ..config import DataConfig
from ..errors import CnnvitError, first_line
from ..hub import looks_like_repo_id, require_hub

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _digits() -> datasets.DatasetDict:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 8x8 intensities 0..16 -> 0..255 grayscale uint8.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return _arrays_to_dataset({"train": (images, bunch.target)}, [str(i) for i in range(10)])


def _arrays_to_dataset(
    parts: dict[str, tuple[np.ndarray, np.ndarray]], class_names: list[str]
) -> datasets.DatasetDict:
    """In-memory uint8 image arrays (N, H, W) as a DatasetDict, without PNG-encoding them."""
    out = {}
    for split, (images, labels) in parts.items():
        height, width = images.shape[1:3]
        features = datasets.Features(
            {
                "image": datasets.Array2D(shape=(height, width), dtype="uint8"),
                "label": datasets.ClassLabel(names=class_names),
            }
        )
        out[split] = datasets.Dataset.from_dict(
            {"image": list(images), "label": labels.astype(np.int64)}, features=features
        )
    return datasets.DatasetDict(out)


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST format), gzipped or not, as a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return array.reshape(shape)
    except (OSError, ValueError, struct.error, EOFError) as err:
        raise CnnvitError(f"cannot read IDX file {path}: {err}") from None


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four MNIST-style files in `folder` (with or without .gz), or None if any is missing."""
    found = {}
    for key, stem in IDX_FILES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            # Some copies use a dot before "idx" (train-images.idx3-ubyte).
            dotted = [
                folder / stem.replace("-idx", ".idx"),
                folder / f"{stem.replace('-idx', '.idx')}.gz",
            ]
            match = next((c for c in dotted if c.is_file()), None)
            if match is None:
                return None
            found[key] = match
    return found


def _idx_folder(folder: Path) -> datasets.DatasetDict:
    files = find_idx_files(folder)
    assert files is not None
    parts = {}
    for split in ("train", "test"):
        images = _read_idx(files[f"{split}_images"])
        labels = _read_idx(files[f"{split}_labels"]).astype(np.int64)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise CnnvitError(
                f"IDX files in {folder} disagree: {len(images)} images, {len(labels)} labels"
            )
        parts[split] = (images, labels)
    values = np.unique(np.concatenate([parts["train"][1], parts["test"][1]]))
    num_classes = len(values)  # labels need not start at 0 (EMNIST letters use 1..26)
    parts = {k: (images, np.searchsorted(values, y)) for k, (images, y) in parts.items()}
    names_file = folder / "classes.txt"
    if names_file.is_file():
        names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        if len(names) != num_classes:
            raise CnnvitError(
                f"{names_file} names {len(names)} classes but the labels hold {num_classes}: "
                "give one class name per line"
            )
    else:
        names = _known_idx_names(folder, num_classes)
    return _arrays_to_dataset(parts, names)


def _known_idx_names(folder: Path, num_classes: int) -> list[str]:
    """Fashion-MNIST's class names when the folder is named so; digits otherwise."""
    fashion = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
    if "fashion" in folder.name.lower() and num_classes == 10:
        return fashion
    return [str(i) for i in range(num_classes)]


def _image_folder(
    folder: Path, config: DataConfig
) -> tuple[datasets.DatasetDict, dict[str, Any] | None]:
    """A folder with one subfolder per class (optionally inside train/ and test/ folders), and
    what was streamed (None unless `--streaming`)."""
    split_dirs = [d for d in ("train", "test", "validation") if (folder / d).is_dir()]
    class_root = folder / "train" if "train" in split_dirs else folder
    classes = sorted(
        d.name for d in class_root.iterdir() if d.is_dir() and not d.name.startswith(".")
    )
    if not classes:
        raise CnnvitError(
            f"{folder} has no class subfolders: "
            "put each class's images in a subfolder named after it"
        )
    if len(classes) < 2:
        raise CnnvitError(
            f"{folder} has one class ('{classes[0]}'): a classifier needs at least two"
        )
    counts = {
        name: sum(1 for p in (class_root / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        for name in classes
    }
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise CnnvitError(f"class folder(s) {', '.join(empty)} in {class_root} hold no image files")
    if config.streaming:
        from .streaming import FOLDER_BUFFER, folder_signature, stream_source

        folder = folder.resolve()
        identity = f"folder:{folder}:{folder_signature(folder)}"
        what = f"image folder {folder}"
        return stream_source(
            "imagefolder", config, what=what, identity=identity, buffer=FOLDER_BUFFER,
            data_dir=str(folder),
        )  # fmt: skip
    try:
        loaded = datasets.load_dataset("imagefolder", data_dir=str(folder))
    except Exception as err:  # the builder's errors vary by version; all mean a bad folder
        raise CnnvitError(
            f"cannot read image folder {folder}: {str(err).splitlines()[0]}"
        ) from None
    return loaded, None


def _hub(name: str, config: DataConfig) -> tuple[datasets.DatasetDict, dict[str, Any] | None]:
    """A hub dataset, downloaded whole or (`--streaming`) streamed and spooled."""
    require_hub("dataset", name, "use --dataset digits, a local image folder or IDX files")
    if config.streaming:
        from .streaming import HUB_BUFFER, hub_revision, stream_source

        what = f"hub dataset '{name}'"
        try:
            revision = hub_revision(name)
        except Exception as err:  # missing, gated or unreachable repo: one line
            first = first_line(err)
            raise CnnvitError(f"cannot stream {what}: {first}") from None
        return stream_source(name, config, what=what, identity=f"hub:{name}@{revision}",
                             buffer=HUB_BUFFER, revision=revision)  # fmt: skip
    try:
        loaded = datasets.load_dataset(name)
    except Exception as err:  # network, missing repo, gated repo, bad builder: one line each
        first = first_line(err)
        raise CnnvitError(f"cannot load hub dataset '{name}': {first}") from None
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded, None


def _no_streaming(config: DataConfig, what: str) -> None:
    if config.streaming:
        raise CnnvitError(
            f"--streaming applies to hub datasets and image folders; {what} is read into "
            "memory whole: drop --streaming"
        )


def load_source(
    config: DataConfig,
) -> tuple[datasets.DatasetDict, str, dict[str, Any] | None]:
    """Load `config.dataset` as a DatasetDict; returns it, a display name and, with
    `--streaming`, what was streamed (buffer, revision, caps, rows read) for the manifest."""
    spec = config.dataset
    if spec == "digits":
        _no_streaming(config, "digits (built in)")
        return _digits(), "digits", None
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CnnvitError(
                f"--dataset {spec} is a file: give a folder of class subfolders or IDX files"
            )
        if find_idx_files(path) is not None:
            _no_streaming(config, f"{spec} (IDX files)")
            return _idx_folder(path), path.name, None
        loaded, streamed = _image_folder(path, config)
        return loaded, path.name, streamed
    if spec.startswith((".", "/", "~")) or not looks_like_repo_id(spec):
        raise CnnvitError(
            f"dataset '{spec}' not found: give 'digits', an existing folder or a hub dataset id"
        )
    loaded, streamed = _hub(spec, config)
    return loaded, spec, streamed
