"""Dataset preparation: split a source, keep example ids, decode each image once.

Every source (sources.py) becomes a `datasets.DatasetDict`. Splits are stratified and seeded by
the *split seed*, which is separate from the training seed, so repeated training seeds are compared
on the same test images; a source's own test/validation splits are kept. Each example carries an
id: its position in the source's splits taken in order (the first split's rows, then the next
split's), so a run's manifest and predictions name the same images on any machine. With
`--streaming` (streaming.py) the source's splits are the spooled streams: an id is then a
position in the shuffled, capped stream of the splits the run uses, the same for a given split
seed and dataset revision, and split.json records the stream's buffer, revision and caps.

Training subsets (`max_train_samples`, `train_fraction`) are prefixes of one seeded, stratified
order of the training split, so a smaller subset is always contained in every larger one with the
same split seed (nested data-efficiency curves).

Images are decoded and resized once per model input geometry, by that model's own image
processor with rescaling and normalisation turned off, into a uint8 tensor (N, 3, H, W).
Rescaling, normalisation and augmentation happen later on whole batches (preprocess.py), so the
training loop never touches PIL. The decoded tensor is a memory-mapped file in the on-disk cache
(cache.py), shared by every run that uses the same images at the same size.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import torch

from ..config import DataConfig
from ..errors import CnnvitError
from .images import UNREADABLE, _open_image, decode_cached, geometry_key
from .schema import find_columns, split_roles
from .sources import load_source

SPLITS = ("train", "validation", "test")


@dataclass
class Split:
    """One split: undecoded images (a `datasets.Dataset`), integer labels and example ids."""

    dataset: datasets.Dataset
    labels: np.ndarray  # (N,) int64
    ids: np.ndarray  # (N,) int64, position in the source (see module docstring)


@dataclass
class PreparedData:
    """A split dataset with class names; decodes to tensors on demand, once per geometry."""

    name: str
    class_names: list[str]
    image_column: str
    splits: dict[str, Split]
    source_splits: dict[str, int] = field(default_factory=dict)  # source split -> row count
    streamed: dict[str, Any] | None = None  # with --streaming: buffer, revision, caps, rows read
    unreadable: dict[str, int] = field(default_factory=dict)
    _cache: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor, np.ndarray]] = field(
        default_factory=dict, repr=False
    )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> dict[str, Any]:
        """The dataset block of run.json."""
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

    def manifest(self, config: DataConfig) -> dict[str, Any]:
        """Which example ids went to train, validation and test, and what chose them."""
        return {
            "dataset": self.name,
            "split_seed": config.split_seed,
            "train_fraction": config.train_fraction,
            "max_train_samples": config.max_train_samples,
            "max_eval_samples": config.max_eval_samples,
            "validation_fraction": config.validation_fraction,
            "test_fraction": config.test_fraction,
            "source_splits": dict(self.source_splits),
            "streaming": self.streamed is not None,
            **({"stream": dict(self.streamed)} if self.streamed is not None else {}),
            "ids": {name: split.ids.tolist() for name, split in self.splits.items()},
        }

    def _decoded(self, split: str, processor: Any) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        key = (split, geometry_key(processor))
        if key not in self._cache:
            part = self.splits[split]
            images, keep = decode_cached(part.dataset, self.image_column, processor, part.ids)
            dropped = len(keep) - int(keep.sum())
            if dropped:
                self.unreadable[split] = dropped
                warnings.warn(
                    f"{dropped} of {len(keep)} {split} images could not be read and were skipped",
                    stacklevel=3,
                )
            labels = torch.from_numpy(part.labels[keep].astype(np.int64))
            self._cache[key] = (images, labels, part.ids[keep])
        return self._cache[key]

    def tensors(self, split: str, processor: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (N, 3, H, W) resized as `processor` does, and int64 labels (N,).

        Decoded once per (split, geometry); two models with the same geometry share it.
        Unreadable images are skipped (and counted), so N may be below the split's size.
        """
        images, labels, _ = self._decoded(split, processor)
        return images, labels

    def example_ids(self, split: str, processor: Any) -> np.ndarray:
        """The ids (N,) of the images `tensors(split, processor)` returns, in the same order."""
        return self._decoded(split, processor)[2]

    def native_side(self, sample: int = 32) -> int:
        """The images' own size in pixels: the median longer side of up to `sample` training
        images (the first ones of the split), read without resizing; unreadable ones skipped."""
        part = self.splits["train"]
        sides = []
        head = part.dataset.select(range(min(sample, len(part.labels)))).with_format(None)
        for value in head[self.image_column]:
            try:
                sides.append(max(_open_image(value).size))
            except UNREADABLE:
                continue
        if not sides:
            raise CnnvitError(
                f"none of the first {sample} training images of '{self.name}' could be read: "
                "check the dataset's images"
            )
        return int(np.median(sides))


def _labels_and_names(
    dataset: datasets.DatasetDict, label_column: str
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Integer labels per split and the class names (from ClassLabel, else sorted values).

    A missing label (None: a Parquet split without the label column reads so) becomes -1, the
    ClassLabel marker for "no label", so it never turns into a class named "None".
    """
    first = next(iter(dataset.values()))
    feature = first.features[label_column]
    values = {s: d[label_column] for s, d in dataset.items()}
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)

        def code(value: Any) -> int:
            return -1 if value is None else int(value)
    else:
        present = {str(v) for vs in values.values() for v in vs if v is not None}
        names = sorted(present, key=_natural_key)
        index = {name: i for i, name in enumerate(names)}

        def code(value: Any) -> int:
            return -1 if value is None else index[str(value)]

    return {s: np.asarray([code(v) for v in vs], dtype=np.int64) for s, vs in values.items()}, names


def _natural_key(text: str) -> tuple[int, Any]:
    return (0, int(text)) if text.lstrip("-").isdigit() else (1, text)


def _stratified_take(
    labels: np.ndarray, fraction: float, seed: int, what: str, names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (taken, rest): a seeded stratified sample of `labels`, with clear errors."""
    from sklearn.model_selection import train_test_split

    counts = Counter(labels.tolist())
    present = len(counts)
    take = int(round(len(labels) * fraction))
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


def nested_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A seeded order of `labels`' indices whose every prefix is stratified.

    Within each class the indices are shuffled; an index of rank r in a class of n gets the key
    (r + 0.5) / n, and the order sorts by key (ties broken by a seeded draw). Any prefix of k
    indices then holds each class within one image of its share, and the first k of the order
    are contained in the first k' for every k' > k: subsets are nested.
    """
    rng = np.random.default_rng(seed)
    keys = np.empty(len(labels))
    for klass in np.unique(labels):
        members = np.flatnonzero(labels == klass)
        members = members[rng.permutation(len(members))]
        keys[members] = (np.arange(len(members)) + 0.5) / len(members)
    ties = rng.random(len(labels))
    return np.lexsort((ties, keys))


def _subset(part: Split, count: int, seed: int, what: str, num_classes: int) -> Split:
    """The first `count` examples of the split's nested stratified order."""
    if count >= len(part.labels):
        return part
    if count < len(np.unique(part.labels)):
        raise CnnvitError(
            f"{what} of {count} image(s) cannot hold every one of {num_classes} classes: "
            "raise --max-train-samples/--train-fraction (or --max-eval-samples)"
        )
    taken = np.sort(nested_order(part.labels, seed)[:count])
    return Split(part.dataset.select(taken), part.labels[taken], part.ids[taken])


def prepare_data(config: DataConfig) -> PreparedData:
    """Load, check and split the dataset by `config.split_seed`; images stay undecoded."""
    loaded, name, streamed = load_source(config)
    seed = config.split_seed
    source_sizes = {s: len(d) for s, d in loaded.items()}
    offsets = dict(zip(loaded, np.cumsum([0, *source_sizes.values()])[:-1].tolist(), strict=True))
    ids = {s: np.arange(n, dtype=np.int64) + offsets[s] for s, n in source_sizes.items()}
    image_column, label_column = find_columns(loaded[next(iter(loaded))], config)
    labels, class_names = _labels_and_names(loaded, label_column)
    for split, values in list(labels.items()):
        if len(values) and (values == -1).all():  # unlabelled (e.g. a hub test split of -1s)
            del labels[split], loaded[split]
        elif (values == -1).any():
            raise CnnvitError(
                f"split '{split}' has {int((values == -1).sum())} of {len(values)} images without "
                "a label: label them, remove them, or check --label-column"
            )
        elif len(values) and (values.min() < 0 or values.max() >= len(class_names)):
            raise CnnvitError(
                f"split '{split}' has labels outside 0..{len(class_names) - 1}: "
                "check --label-column"
            )
    if not labels:
        raise CnnvitError(f"dataset '{name}' has no labelled split: every label is missing (-1)")
    if len(class_names) < 2:
        raise CnnvitError(f"dataset '{name}' has one class: a classifier needs at least two")
    tables = {s: d.select_columns([image_column]) for s, d in loaded.items()}
    if isinstance(next(iter(tables.values())).features[image_column], datasets.Image):
        # Keep encoded bytes: decode_images opens each image itself, so unreadable ones are
        # counted and skipped instead of stopping the run.
        tables = {
            s: d.cast_column(image_column, datasets.Image(decode=False)) for s, d in tables.items()
        }
    parts = {s: Split(tables[s], labels[s], ids[s]) for s in tables}

    train_key, val_key, test_key = split_roles(list(loaded))
    train = parts[train_key]
    if test_key is None:
        taken, rest = _stratified_take(
            train.labels, config.test_fraction, seed, "a test split", class_names
        )
        test, train = _select(train, taken), _select(train, rest)
    else:
        test = parts[test_key]
    if val_key is None:
        taken, rest = _stratified_take(
            train.labels, config.validation_fraction, seed + 1, "a validation split", class_names
        )
        val, train = _select(train, taken), _select(train, rest)
    else:
        val = parts[val_key]

    n_classes = len(class_names)
    train_count = len(train.labels)
    if config.max_train_samples is not None:
        train_count = min(train_count, config.max_train_samples)
    train_count = int(round(train_count * config.train_fraction))
    splits = {
        "train": _subset(train, train_count, seed + 2, "a training subset", n_classes),
        "validation": val,
        "test": test,
    }
    if config.max_eval_samples is not None:
        for key in ("validation", "test"):
            splits[key] = _subset(
                splits[key], config.max_eval_samples, seed + 3, f"a {key} subset", n_classes
            )
    missing = set(range(n_classes)) - set(splits["train"].labels.tolist())
    if missing:
        absent = ", ".join(class_names[i] for i in sorted(missing))
        fix = (
            "the capped stream held none: raise --max-train-samples, or drop --streaming"
            if streamed is not None and config.max_train_samples is not None
            else "add some or remove the class"
        )
        raise CnnvitError(f"no training images for class(es) {absent}: {fix}")
    return PreparedData(
        name=name,
        class_names=class_names,
        image_column=image_column,
        splits=splits,
        source_splits=source_sizes,
        streamed=streamed,
    )


def _select(part: Split, indices: np.ndarray) -> Split:
    return Split(part.dataset.select(indices), part.labels[indices], part.ids[indices])
