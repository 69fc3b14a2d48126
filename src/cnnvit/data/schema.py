"""A source's schema: which of its splits trains, validates and tests, and which of its columns
hold the image and the label. prepare.py asks this of a loaded source and streaming.py of a stream
before it reads any rows, so the answers live here, below sources.py and streaming.py, and
streaming.py no longer imports back from sources.py (which hands `--streaming` reads to it).
"""

from __future__ import annotations

import datasets

from ..config import DataConfig
from ..errors import CnnvitError

_LABEL_NAMES = ("label", "labels", "fine_label", "target", "class", "category")
_IMAGE_NAMES = ("image", "img", "images", "pixel_values", "picture")


def split_roles(names: list[str]) -> tuple[str, str | None, str | None]:
    """Which of a source's splits (`names`, in order) trains, validates and tests.

    A split named train (or training) trains, else the first split that is neither test nor
    validation, else the only one (test or validation are then carved from it: a split that
    trains is never also the test or validation split).
    """
    lowered = {s.lower(): s for s in names}
    test = next((lowered[k] for k in ("test", "testing") if k in lowered), None)
    val = next((lowered[k] for k in ("validation", "valid", "val", "dev") if k in lowered), None)
    train = lowered.get("train") or lowered.get("training")
    if train is None:
        others = [s for s in names if s not in (test, val)]
        train = others[0] if others else (val or test)
        assert train is not None  # a source has at least one split
        test = None if test == train else test
        val = None if val == train else val
    return train, val, test


def find_columns(
    dataset: datasets.Dataset | datasets.IterableDataset, config: DataConfig
) -> tuple[str, str]:
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
