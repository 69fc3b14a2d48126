"""Dataset sources, splits and the decode-once tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnvit.config import DataConfig
from cnnvit.data import prepare_data
from cnnvit.models import preset_processor

FASHION = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion_mnist"


def test_digits_split_is_stratified_seeded_and_disjoint() -> None:
    data = prepare_data(DataConfig(), seed=0)
    sizes = data.summary()["splits"]
    assert sum(sizes.values()) == 1797  # every digit used once
    assert sizes["test"] == round(1797 * 0.2)
    counts = np.bincount(data.splits["test"].labels, minlength=10)
    assert counts.min() >= 33 and counts.max() <= 38  # stratified: ~36 per class
    again = prepare_data(DataConfig(), seed=0)
    assert np.array_equal(again.splits["test"].labels, data.splits["test"].labels)
    other = prepare_data(DataConfig(), seed=1)
    images_a, _ = data.tensors("test", preset_processor(8))
    images_b, _ = other.tensors("test", preset_processor(8))
    assert not np.array_equal(images_a.numpy(), images_b.numpy())  # another seed, another split


def test_tensors_are_uint8_rgb_at_processor_size_and_decoded_once() -> None:
    data = prepare_data(DataConfig(max_train_samples=100), seed=0)
    processor = preset_processor(24)
    images, labels = data.tensors("train", processor)
    assert images.dtype.is_floating_point is False and images.shape == (100, 3, 24, 24)
    assert images.max() > 200 and images.min() == 0  # digits span black to white
    assert (images[:, 0] == images[:, 1]).all()  # grayscale became RGB
    assert len(labels) == 100
    again, _ = data.tensors("train", preset_processor(24))
    assert again is images  # same geometry: decoded once, shared


def test_image_folder_keeps_class_names_and_converts_modes(image_folder: Path) -> None:
    data = prepare_data(DataConfig(dataset=str(image_folder), test_fraction=0.25), seed=0)
    assert data.class_names == ["bars_bottom", "bars_middle", "bars_top"]
    images, labels = data.tensors("train", preset_processor(16))
    assert images.shape[1:] == (3, 16, 16)
    assert sum(data.summary()["splits"].values()) == 36


def test_idx_folder_uses_its_own_test_split(idx_folder: Path) -> None:
    data = prepare_data(DataConfig(dataset=str(idx_folder)), seed=0)
    sizes = data.summary()["splits"]
    assert sizes["test"] == 30 and sizes["train"] + sizes["validation"] == 60
    images, labels = data.tensors("test", preset_processor(16))
    assert images.shape == (30, 3, 16, 16)
    assert labels.tolist() == [i % 3 for i in range(30)]  # the file's order and labels


def test_hub_dataset_loading_through_a_local_arrow_copy(tmp_path: Path) -> None:
    """The hub path (load_dataset) resolves columns by feature type; a saved copy stands in."""
    import datasets

    from cnnvit.data import find_columns

    table = datasets.Dataset.from_dict(
        {"idx": [0, 1], "picture": [np.zeros((4, 4, 3), np.uint8)] * 2, "kind": [0, 1]},
        features=datasets.Features({"idx": datasets.Value("int32"), "picture": datasets.Image(),
                                    "kind": datasets.ClassLabel(names=["a", "b"])}),
    )  # fmt: skip
    assert find_columns(table, DataConfig()) == ("picture", "kind")
    assert find_columns(table, DataConfig(label_column="idx")) == ("picture", "idx")


@pytest.mark.skipif(
    not FASHION.is_dir(), reason="Fashion-MNIST IDX files are not beside this checkout"
)
def test_fashion_mnist_idx_files_load_with_class_names() -> None:
    data = prepare_data(
        DataConfig(dataset=str(FASHION), max_train_samples=500, max_eval_samples=200), seed=0
    )
    assert data.class_names[0] == "T-shirt/top" and data.num_classes == 10
    assert data.summary()["splits"] == {"train": 500, "validation": 200, "test": 200}
