"""Dataset preparation: load a source as HF `datasets`, split it, decode each image once.

Sources: `digits` (scikit-learn's 8x8 digits, offline), a folder of MNIST-style IDX files, a
folder with one subfolder per class (the `imagefolder` builder), or any hub dataset id. Every
source becomes a `datasets.DatasetDict` with an image column and a label column; splits are
stratified and seeded, and a source's own test/validation splits are kept.

Images are decoded and resized once per model input geometry, by that model's own image
processor with rescaling and normalisation turned off, into a uint8 tensor (N, 3, H, W).
Rescaling, normalisation and augmentation happen later on whole batches (see train.py), so the
training loop never touches PIL.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..config import DataConfig
from ..errors import CnnvitError
from ..hub import looks_like_repo_id, require_hub

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_LABEL_NAMES = ("label", "labels", "fine_label", "target", "class", "category")
_IMAGE_NAMES = ("image", "img", "images", "pixel_values", "picture")
_DECODE_CHUNK = 512  # images per image-processor call: bounds memory of the PIL list


@dataclass
class Split:
    """One split: undecoded images (a `datasets.Dataset`) and integer labels."""

    dataset: datasets.Dataset
    labels: np.ndarray  # (N,) int64


@dataclass
class PreparedData:
    """A split dataset with class names; decodes to tensors on demand, once per geometry."""

    name: str
    class_names: list[str]
    image_column: str
    splits: dict[str, Split]
    unreadable: dict[str, int] = field(default_factory=dict)
    _cache: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, repr=False
    )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> dict[str, Any]:
        """The dataset block of metrics.json."""
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "splits": {name: len(split.labels) for name, split in self.splits.items()},
            "class_counts": {
                name: np.bincount(split.labels, minlength=self.num_classes).tolist()
                for name, split in self.splits.items()
            },
            "unreadable_images": dict(self.unreadable),
        }

    def tensors(self, split: str, processor: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (N, 3, H, W) resized as `processor` does, and int64 labels (N,).

        Decoded once per (split, geometry); two models with the same geometry share it.
        """
        key = (split, geometry_key(processor))
        if key not in self._cache:
            part = self.splits[split]
            images, keep = decode_images(part.dataset, self.image_column, processor)
            dropped = len(keep) - int(keep.sum())
            if dropped:
                self.unreadable[split] = dropped
                warnings.warn(
                    f"{dropped} of {len(keep)} {split} images could not be read and were skipped",
                    stacklevel=2,
                )
            labels = torch.from_numpy(part.labels[keep].astype(np.int64))
            self._cache[key] = (images, labels)
        return self._cache[key]


def geometry_key(processor: Any) -> str:
    """What determines a processor's output pixels before rescaling and normalisation."""
    attrs = ("size", "crop_size", "crop_pct", "resample", "do_resize", "do_center_crop")
    values = {a: getattr(processor, a, None) for a in attrs}
    values["class"] = type(processor).__name__
    return json.dumps(values, sort_keys=True, default=str)


def _open_image(value: Any) -> Image.Image:
    """A PIL RGB image from what a datasets column holds (encoded dict, PIL image or array)."""
    if isinstance(value, dict):
        source = io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
        image = Image.open(source)
    elif isinstance(value, Image.Image):
        image = value
    elif value is None:
        raise ValueError("missing image")
    else:
        array = np.asarray(value)
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)  # channel-first (C, H, W) -> (H, W, C)
        if array.dtype.kind == "f" and array.size and array.max() <= 1.0:
            array = array * 255.0  # floats in [0, 1]
        image = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8).squeeze())
    image.load()
    if image.mode == "RGBA":  # composite on white, as a viewer shows it
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def decode_images(
    dataset: datasets.Dataset, image_column: str, processor: Any
) -> tuple[torch.Tensor, np.ndarray]:
    """Decode, convert to RGB and resize every image once, through the model's processor.

    Returns uint8 images (N_readable, 3, H, W) and a boolean mask (N,) of readable images.
    """
    column = dataset.with_format(None)[image_column]
    keep = np.ones(len(column), dtype=bool)
    chunks: list[np.ndarray] = []
    pending: list[Image.Image] = []

    def flush() -> None:
        if pending:
            out = processor(
                images=pending, do_rescale=False, do_normalize=False, return_tensors="np"
            )["pixel_values"]
            chunks.append(np.clip(np.rint(out), 0, 255).astype(np.uint8))
            pending.clear()

    for index, value in enumerate(column):
        try:
            pending.append(_open_image(value))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, TypeError):
            keep[index] = False
        if len(pending) >= _DECODE_CHUNK:
            flush()
    flush()
    if not chunks:
        raise CnnvitError("none of the images could be read: check that the files are images")
    return torch.from_numpy(np.concatenate(chunks)), keep


# --- sources ------------------------------------------------------------------------------


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


def _image_folder(folder: Path) -> datasets.DatasetDict:
    """A folder with one subfolder per class (optionally inside train/ and test/ folders)."""
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
    try:
        loaded = datasets.load_dataset("imagefolder", data_dir=str(folder))
    except Exception as err:  # the builder's errors vary by version; all mean a bad folder
        raise CnnvitError(
            f"cannot read image folder {folder}: {str(err).splitlines()[0]}"
        ) from None
    return loaded


def _hub(name: str, config: DataConfig) -> datasets.DatasetDict:
    require_hub("dataset", name, "use --dataset digits, a local image folder or IDX files")
    try:
        loaded = datasets.load_dataset(name)
    except Exception as err:  # network, missing repo, gated repo, bad builder: one line each
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CnnvitError(f"cannot load hub dataset '{name}': {first}") from None
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def load_source(config: DataConfig) -> tuple[datasets.DatasetDict, str]:
    """Load `config.dataset` as a DatasetDict; returns it and a display name."""
    spec = config.dataset
    if spec == "digits":
        return _digits(), "digits"
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CnnvitError(
                f"--dataset {spec} is a file: give a folder of class subfolders or IDX files"
            )
        if find_idx_files(path) is not None:
            return _idx_folder(path), path.name
        return _image_folder(path), path.name
    if spec.startswith((".", "/", "~")) or not looks_like_repo_id(spec):
        raise CnnvitError(
            f"dataset '{spec}' not found: give 'digits', an existing folder or a hub dataset id"
        )
    return _hub(spec, config), spec


# --- columns, labels and splits -----------------------------------------------------------


def find_columns(dataset: datasets.Dataset, config: DataConfig) -> tuple[str, str]:
    """The image and label column names: given ones, else found by feature type and name."""
    features = dataset.features
    for given, kind in ((config.image_column, "image"), (config.label_column, "label")):
        if given is not None and given not in features:
            raise CnnvitError(
                f"--{kind}-column '{given}' is not a column of this dataset: "
                f"it has {', '.join(features)}"
            )
    image = config.image_column or next(
        (n for n, f in features.items() if isinstance(f, datasets.Image)),
        next((n for n in _IMAGE_NAMES if n in features), None),
    )
    label = config.label_column or next(
        (n for n, f in features.items() if isinstance(f, datasets.ClassLabel)),
        next((n for n in _LABEL_NAMES if n in features), None),
    )
    if image is None or label is None:
        missing = "image" if image is None else "label"
        raise CnnvitError(
            f"no {missing} column found among {', '.join(features)}: "
            f"name it with --{missing}-column"
        )
    return image, label


def _labels_and_names(
    dataset: datasets.DatasetDict, label_column: str
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Integer labels per split and the class names (from ClassLabel, else sorted values)."""
    first = next(iter(dataset.values()))
    feature = first.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
        return {s: np.asarray(d[label_column], dtype=np.int64) for s, d in dataset.items()}, names
    values = {s: list(d[label_column]) for s, d in dataset.items()}
    names = sorted({str(v) for vs in values.values() for v in vs}, key=_natural_key)
    index = {name: i for i, name in enumerate(names)}
    return {
        s: np.asarray([index[str(v)] for v in vs], dtype=np.int64) for s, vs in values.items()
    }, names


def _natural_key(text: str) -> tuple[int, Any]:
    return (0, int(text)) if text.lstrip("-").isdigit() else (1, text)


def _stratified_take(
    labels: np.ndarray, fraction_or_count: float | int, seed: int, what: str, names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (taken, rest): a seeded stratified sample of `labels`, with clear errors."""
    from sklearn.model_selection import train_test_split

    counts = Counter(labels.tolist())
    present = len(counts)
    take = (
        int(fraction_or_count)
        if isinstance(fraction_or_count, int)
        else int(round(len(labels) * fraction_or_count))
    )
    smallest_class, smallest = min(counts.items(), key=lambda kv: kv[1])
    if smallest < 2:
        raise CnnvitError(
            f"class '{names[smallest_class]}' has {smallest} image(s), too few to split into "
            f"{what}: give each class at least 3 images"
        )
    if take < present or len(labels) - take < present:
        raise CnnvitError(
            f"{len(labels)} images are too few to hold out {what} with every one of {present} "
            f"classes on both sides: add images or change --test-fraction/--validation-fraction"
        )
    indices = np.arange(len(labels))
    rest, taken = train_test_split(
        indices, test_size=take, stratify=labels, random_state=seed, shuffle=True
    )
    return np.sort(taken), np.sort(rest)


def prepare_data(config: DataConfig, seed: int) -> PreparedData:
    """Load, check and split the dataset; images stay undecoded until `tensors()`."""
    loaded, name = load_source(config)
    split_names = {s.lower(): s for s in loaded}
    image_column, label_column = find_columns(loaded[next(iter(loaded))], config)
    labels, class_names = _labels_and_names(loaded, label_column)
    for split, values in list(labels.items()):
        if len(values) and (values < 0).all():  # unlabelled (e.g. a hub test split of -1s)
            del labels[split], loaded[split], split_names[split.lower()]
        elif len(values) and (values.min() < 0 or values.max() >= len(class_names)):
            raise CnnvitError(
                f"split '{split}' has labels outside 0..{len(class_names) - 1}: "
                "check --label-column"
            )
    if not labels:
        raise CnnvitError(f"dataset '{name}' has no labelled split: every label is missing (-1)")
    if len(class_names) < 2:
        raise CnnvitError(f"dataset '{name}' has one class: a classifier needs at least two")
    keep_columns = [image_column]
    tables = {s: d.select_columns(keep_columns) for s, d in loaded.items()}
    if isinstance(next(iter(tables.values())).features[image_column], datasets.Image):
        # Keep encoded bytes: decode_images opens each image itself, so unreadable ones are
        # counted and skipped instead of stopping the run.
        tables = {
            s: d.cast_column(image_column, datasets.Image(decode=False)) for s, d in tables.items()
        }

    test_key = next((split_names[k] for k in ("test", "testing") if k in split_names), None)
    val_key = next(
        (split_names[k] for k in ("validation", "valid", "val", "dev") if k in split_names), None
    )
    train_key = split_names.get("train") or split_names.get("training")
    if train_key is None:  # no split named train: the first other one, else carve from one
        others = [s for s in loaded if s not in (test_key, val_key)]
        train_key = others[0] if others else (val_key or test_key)
        # A split used for training is never also the test or validation split.
        test_key = None if test_key == train_key else test_key
        val_key = None if val_key == train_key else val_key
    train, train_labels = tables[train_key], labels[train_key]
    if test_key is None:
        test_idx, rest = _stratified_take(
            train_labels, config.test_fraction, seed, "a test split", class_names
        )
        test, test_labels = train.select(test_idx), train_labels[test_idx]
        train, train_labels = train.select(rest), train_labels[rest]
    else:
        test, test_labels = tables[test_key], labels[test_key]
    if val_key is None:
        val_idx, rest = _stratified_take(
            train_labels, config.validation_fraction, seed + 1, "a validation split", class_names
        )
        val, val_labels = train.select(val_idx), train_labels[val_idx]
        train, train_labels = train.select(rest), train_labels[rest]
    else:
        val, val_labels = tables[val_key], labels[val_key]

    splits = {"train": Split(train, train_labels), "validation": Split(val, val_labels),
              "test": Split(test, test_labels)}  # fmt: skip
    limits = {"train": config.max_train_samples, "validation": config.max_eval_samples,
              "test": config.max_eval_samples}  # fmt: skip
    for key, limit in limits.items():
        part = splits[key]
        if limit is not None and limit < len(part.labels):
            taken, _ = _stratified_take(
                part.labels, int(limit), seed + 2, f"a {limit}-image {key} subset", class_names
            )
            splits[key] = Split(part.dataset.select(taken), part.labels[taken])
    missing = set(range(len(class_names))) - set(splits["train"].labels.tolist())
    if missing:
        absent = ", ".join(class_names[i] for i in sorted(missing))
        raise CnnvitError(
            f"no training images for class(es) {absent}: add some or remove the class"
        )
    return PreparedData(
        name=name, class_names=class_names, image_column=image_column, splits=splits
    )
