"""Dataset sources, splits and the decode-once tensors."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest

from cnnvit.config import DataConfig
from cnnvit.data import prepare_data
from cnnvit.errors import CnnvitError
from cnnvit.models.build import preset_processor

FASHION = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion_mnist"


def test_digits_split_is_stratified_and_seeded() -> None:
    data = prepare_data(DataConfig())
    sizes = data.summary()["splits"]
    assert sum(sizes.values()) == 1797  # every digit used once
    assert sizes["test"] == round(1797 * 0.2)
    counts = np.bincount(data.splits["test"].labels, minlength=10)
    assert counts.min() >= 33 and counts.max() <= 38  # stratified: ~36 per class
    again = prepare_data(DataConfig())
    assert np.array_equal(again.splits["test"].labels, data.splits["test"].labels)
    other = prepare_data(DataConfig(split_seed=1))
    images_a, _ = data.tensors("test", preset_processor(8))
    images_b, _ = other.tensors("test", preset_processor(8))
    assert not np.array_equal(images_a.numpy(), images_b.numpy())  # another seed, another split


def test_tensors_are_uint8_rgb_at_processor_size_and_decoded_once() -> None:
    data = prepare_data(DataConfig(max_train_samples=100))
    processor = preset_processor(24)
    images, labels = data.tensors("train", processor)
    assert images.dtype.is_floating_point is False and images.shape == (100, 3, 24, 24)
    assert images.max() > 200 and images.min() == 0  # digits span black to white
    assert (images[:, 0] == images[:, 1]).all()  # grayscale became RGB
    assert len(labels) == 100
    again, _ = data.tensors("train", preset_processor(24))
    assert again is images  # same geometry: decoded once, shared


def test_image_folder_keeps_class_names_and_converts_modes(image_folder: Path) -> None:
    data = prepare_data(DataConfig(dataset=str(image_folder), test_fraction=0.25))
    assert data.class_names == ["bars_bottom", "bars_middle", "bars_top"]
    images, labels = data.tensors("train", preset_processor(16))
    assert images.shape[1:] == (3, 16, 16)
    assert sum(data.summary()["splits"].values()) == 36


def test_idx_folder_uses_its_own_test_split(idx_folder: Path) -> None:
    data = prepare_data(DataConfig(dataset=str(idx_folder)))
    sizes = data.summary()["splits"]
    assert sizes["test"] == 30 and sizes["train"] + sizes["validation"] == 60
    images, labels = data.tensors("test", preset_processor(16))
    assert images.shape == (30, 3, 16, 16)
    assert labels.tolist() == [i % 3 for i in range(30)]  # the file's order and labels


def _hub_like(splits: dict[str, list]) -> datasets.DatasetDict:
    """A DatasetDict shaped like a hub dataset: extra columns, an Image column, string labels."""
    rng = np.random.default_rng(0)
    features = datasets.Features(
        {
            "id": datasets.Value("int32"),
            "picture": datasets.Image(),
            "kind": datasets.Value("string"),
        }
    )
    return datasets.DatasetDict({
        name: datasets.Dataset.from_dict(
            {"id": list(range(len(kinds))),
             "picture": [rng.integers(0, 255, (6, 6, 3), dtype=np.uint8) for _ in kinds],
             "kind": kinds},
            features=features,
        )
        for name, kinds in splits.items()
    })  # fmt: skip


def test_hub_dataset_path_finds_columns_and_string_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from cnnvit.data import sources as data_module

    hub = _hub_like({"train": ["cat", "dog", "eel"] * 10, "test": ["dog", "cat", "eel"] * 3})
    monkeypatch.setattr(data_module, "require_hub", lambda *a: None)
    monkeypatch.setattr(datasets, "load_dataset", lambda name, **kw: hub)
    data = prepare_data(DataConfig(dataset="someone/pets", label_column="kind"))
    assert data.image_column == "picture" and data.class_names == ["cat", "dog", "eel"]
    assert data.summary()["splits"] == {"train": 27, "validation": 3, "test": 9}
    assert data.splits["test"].labels.tolist() == [1, 0, 2] * 3  # the hub's own test split


def test_a_lone_or_unlabelled_split_is_never_both_train_and_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import datasets

    from cnnvit.data import sources as data_module

    monkeypatch.setattr(data_module, "require_hub", lambda *a: None)
    only_test = _hub_like({"test": ["a", "b"] * 15})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, **kw: only_test)
    data = prepare_data(DataConfig(dataset="someone/only-test", label_column="kind"))
    # Every image is random noise, so its encoded bytes identify it.
    ids = {k: {x["bytes"] for x in v.dataset["picture"]} for k, v in data.splits.items()}
    assert ids["train"].isdisjoint(ids["test"]) and ids["train"].isdisjoint(ids["validation"])
    assert sum(map(len, ids.values())) == 30

    unlabelled = _hub_like({"train": ["a", "b"] * 15, "test": ["a", "b"] * 5})
    unlabelled["test"] = unlabelled["test"].cast_column(
        "kind", datasets.ClassLabel(names=["a", "b"])
    )
    unlabelled["train"] = unlabelled["train"].cast_column(
        "kind", datasets.ClassLabel(names=["a", "b"])
    )
    unlabelled["test"] = unlabelled["test"].map(lambda row: {"kind": -1})  # as hub test sets do
    monkeypatch.setattr(datasets, "load_dataset", lambda name, **kw: unlabelled)
    data = prepare_data(DataConfig(dataset="someone/unlabelled-test"))
    assert set(data.splits["test"].labels.tolist()) == {0, 1}  # carved from train instead
    assert sum(data.summary()["splits"].values()) == 30


def test_missing_labels_are_no_class_and_a_half_labelled_split_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import datasets

    from cnnvit.data import sources as data_module

    monkeypatch.setattr(data_module, "require_hub", lambda *a: None)
    # A Parquet test file without the label column reads as a column of None.
    hub = _hub_like({"train": ["a", "b"] * 15, "test": [None] * 6})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, **kw: hub)
    data = prepare_data(DataConfig(dataset="someone/no-test-labels", label_column="kind"))
    assert data.class_names == ["a", "b"]  # no class named "None"
    assert sum(data.summary()["splits"].values()) == 30  # the test split was carved from train

    hub = _hub_like({"train": ["a", "b", None] * 10})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, **kw: hub)
    with pytest.raises(CnnvitError, match="10 of 30 images without a label"):
        prepare_data(DataConfig(dataset="someone/half-labelled", label_column="kind"))


def test_idx_labels_need_not_start_at_zero(idx_folder: Path) -> None:
    from conftest import write_idx

    for split, count in (("train", 60), ("t10k", 30)):
        for path in idx_folder.glob(f"{split}-labels*"):
            write_idx(path, np.arange(count) % 3 + 1)  # labels 1..3, as EMNIST letters
    (idx_folder / "classes.txt").write_text("one\r\ntwo\r\nthree\r\n")
    data = prepare_data(DataConfig(dataset=str(idx_folder)))
    assert data.class_names == ["one", "two", "three"]
    assert data.splits["test"].labels.tolist() == [i % 3 for i in range(30)]


@pytest.mark.skipif(
    not FASHION.is_dir(), reason="Fashion-MNIST IDX files are not beside this checkout"
)
def test_fashion_mnist_idx_files_load_with_class_names() -> None:
    data = prepare_data(
        DataConfig(dataset=str(FASHION), max_train_samples=500, max_eval_samples=200)
    )
    assert data.class_names[0] == "T-shirt/top" and data.num_classes == 10
    assert data.summary()["splits"] == {"train": 500, "validation": 200, "test": 200}


def test_training_subsets_are_nested_stratified_and_leave_the_test_split_alone() -> None:
    full = prepare_data(DataConfig())
    counts_full = np.bincount(full.splits["train"].labels, minlength=10)
    previous: set[int] = set()
    for fraction in (0.1, 0.25, 0.5, 1.0):
        data = prepare_data(DataConfig(train_fraction=fraction))
        train = data.splits["train"]
        ids = set(train.ids.tolist())
        assert previous <= ids  # every smaller subset lies inside this one
        previous = ids
        assert len(ids) == round(len(full.splits["train"].labels) * fraction)
        expected = counts_full * len(ids) / counts_full.sum()
        counts = np.bincount(train.labels, minlength=10)
        assert np.abs(counts - expected).max() <= 1.0  # stratified to within one image
        # Validation and test never depend on the training subset.
        for split in ("validation", "test"):
            assert np.array_equal(data.splits[split].ids, full.splits[split].ids)
    capped = prepare_data(DataConfig(max_train_samples=200))
    quarter = prepare_data(DataConfig(max_train_samples=800, train_fraction=0.25))
    assert set(capped.splits["train"].ids.tolist()) == set(quarter.splits["train"].ids.tolist())


def test_split_seed_moves_the_split_and_example_ids_follow_the_images() -> None:
    a = prepare_data(DataConfig(split_seed=0))
    b = prepare_data(DataConfig(split_seed=5))
    assert not np.array_equal(a.splits["test"].ids, b.splits["test"].ids)
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = a.tensors("test", preset_processor(8))
    ids = a.example_ids("test", preset_processor(8))
    assert np.array_equal(labels.numpy(), digits.target[ids])
    expected = np.rint(digits.images[ids] * (255.0 / 16.0)).astype(np.uint8)
    assert np.array_equal(images[:, 0].numpy(), expected)  # the image with that id, unchanged
