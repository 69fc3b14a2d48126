"""`--streaming`: hub datasets and image folders read as shuffled, capped streams, spooled once.

Hub downloads cannot run here, so the hub path maps the dataset id to a local folder laid out as
a hub repository (Parquet files under data/); everything from `load_dataset(..., streaming=True)`
on is the real code.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
from PIL import Image

from cnnvit.cli import main
from cnnvit.config import DataConfig
from cnnvit.data import prepare_data, sources, streaming
from cnnvit.errors import CnnvitError
from cnnvit.models.build import preset_processor

CLASSES = ("a_cat", "b_dog", "c_eel")


@pytest.fixture(autouse=True)
def spool_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Spools go to a fresh datasets cache per test, never ~/.cache/huggingface."""
    root = tmp_path / "hf-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", root)
    # datasets waits 5 s after each Parquet stream (an Arrow thread-shutdown workaround).
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)
    return root


@pytest.fixture
def sorted_folder(tmp_path: Path) -> Path:
    """3 classes x 30 tiny PNGs; the folder streams in file order, i.e. sorted by class."""
    root = tmp_path / "sorted"
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(30):
            image = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / name / f"{i:03d}.png")
    return root


class LoadSpy:
    """Wraps `datasets.load_dataset`: records each call and maps hub ids to local folders."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hub: dict[str, Path] | None = None):
        self.real, self.hub, self.calls = datasets.load_dataset, hub or {}, []
        monkeypatch.setattr(datasets, "load_dataset", self)

    def __call__(self, path: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((path, dict(kwargs)))
        if path in self.hub:  # only the id -> files resolution is faked
            path = str(self.hub[path])
        return self.real(path, *args, **kwargs)

    def stream_reads(self) -> int:
        """Calls from the spool's generator (the only ones that name a split)."""
        return sum(1 for _, kwargs in self.calls if "split" in kwargs)


def test_a_streamed_image_folder_gives_the_same_examples(image_folder: Path) -> None:
    plain = prepare_data(DataConfig(dataset=str(image_folder), test_fraction=0.25))
    config = DataConfig(dataset=str(image_folder), test_fraction=0.25, streaming=True)
    streamed = prepare_data(config)
    assert streamed.class_names == plain.class_names == ["bars_bottom", "bars_middle", "bars_top"]
    assert streamed.summary()["splits"] == plain.summary()["splits"]
    assert sum(streamed.summary()["splits"].values()) == 36
    files = {str(p.resolve()) for p in image_folder.rglob("*") if p.is_file()}
    paths = [row["path"] for s in streamed.splits.values() for row in s.dataset["image"]]
    assert sorted(paths) == sorted(files)  # every image once, none twice
    images, labels = streamed.tensors("train", preset_processor(16))
    assert images.dtype.is_floating_point is False and images.shape == (len(labels), 3, 16, 16)
    manifest = streamed.manifest(config)
    assert manifest["streaming"] is True and plain.manifest(config)["streaming"] is False
    assert manifest["stream"]["shuffle_buffer"] == streaming.FOLDER_BUFFER
    assert manifest["stream"]["rows_read"] == {"train": 36}


def test_a_capped_stream_reads_about_the_cap_and_holds_every_class(sorted_folder: Path) -> None:
    in_file_order = datasets.load_dataset(
        "imagefolder", data_dir=str(sorted_folder), split="train", streaming=True
    ).decode(False)
    config = DataConfig(dataset=str(sorted_folder), streaming=True, max_train_samples=30)
    limit = streaming.row_limits(["train"], config)["train"]
    assert limit == 53  # 30 / (0.8 * 0.9) with the margin: well under the 90 images
    first = [row["label"] for row in in_file_order.take(limit)]
    assert sorted(set(first)) == [0, 1]  # unshuffled, the cap would miss the last class

    data = prepare_data(config)
    assert data.source_splits == {"train": limit}  # the rest of the stream was never read
    assert len(data.splits["train"].labels) == 30
    for split in data.splits.values():
        assert set(split.labels.tolist()) == {0, 1, 2}
    again = prepare_data(DataConfig(dataset=str(sorted_folder), streaming=True,
                                    max_train_samples=30, train_fraction=0.5))  # fmt: skip
    assert data.source_splits == again.source_splits  # the cap ignores the training share
    assert np.array_equal(again.splits["test"].ids, data.splits["test"].ids)
    assert set(again.splits["train"].ids) <= set(data.splits["train"].ids)  # nested


def test_a_second_prepare_reuses_the_spool_until_a_setting_or_file_changes(
    sorted_folder: Path, spool_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = LoadSpy(monkeypatch)
    config = DataConfig(dataset=str(sorted_folder), streaming=True, max_train_samples=30)
    first = prepare_data(config)
    assert spy.stream_reads() == 1
    spooled = sorted(spool_cache.rglob("*.arrow"))
    assert len(spooled) == 1

    second = prepare_data(config)
    assert spy.stream_reads() == 1  # the stream was not read again
    assert sorted(spool_cache.rglob("*.arrow")) == spooled
    for name, split in first.splits.items():
        assert split.dataset._fingerprint == second.splits[name].dataset._fingerprint
        assert np.array_equal(split.ids, second.splits[name].ids)

    prepare_data(DataConfig(dataset=str(sorted_folder), streaming=True, max_train_samples=30,
                            split_seed=1))  # fmt: skip
    assert spy.stream_reads() == 2  # another seed, another shuffle
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(sorted_folder / CLASSES[0] / "new.png")
    prepare_data(config)
    assert spy.stream_reads() == 3  # a changed folder is streamed again


def _hub_repo(root: Path, test_labels: str = "labelled") -> Path:
    """A local copy of a hub dataset repo: Parquet train/test files, sorted by class, with an
    Image column, a ClassLabel column and an extra column. `test_labels`: "labelled", "-1"
    (every test label missing) or "none" (no label column in the test file)."""
    rng = np.random.default_rng(1)
    features = datasets.Features({"picture": datasets.Image(),
                                  "kind": datasets.ClassLabel(names=list(CLASSES)),
                                  "note": datasets.Value("string")})  # fmt: skip

    def table(count: int, labels: str = "labelled") -> datasets.Dataset:
        kinds = [-1] * (3 * count) if labels == "-1" else sorted([0, 1, 2] * count)
        pictures = []
        for _ in kinds:
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).save(buffer, "PNG")
            pictures.append({"bytes": buffer.getvalue(), "path": None})
        notes = ["x"] * len(kinds)
        table = datasets.Dataset.from_dict(
            {"picture": pictures, "kind": kinds, "note": notes}, features=features
        )
        return table.remove_columns("kind") if labels == "none" else table

    (root / "data").mkdir(parents=True)
    table(40).to_parquet(root / "data" / "train-00000-of-00001.parquet", batch_size=10)
    table(8, test_labels).to_parquet(root / "data" / "test-00000-of-00001.parquet", batch_size=10)
    return root


def test_a_hub_dataset_streams_pinned_to_its_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = LoadSpy(monkeypatch, {"someone/tiny": _hub_repo(tmp_path / "repo")})
    monkeypatch.setattr(sources, "require_hub", lambda *a: None)
    monkeypatch.setattr(streaming, "hub_revision", lambda name: "0123abcd")
    # A buffer far smaller than a file: only the shuffled order of row groups mixes the classes.
    monkeypatch.setattr(streaming, "HUB_BUFFER", 4)
    config = DataConfig(dataset="someone/tiny", streaming=True, max_eval_samples=12)
    data = prepare_data(config)
    assert all(path == "someone/tiny" for path, _ in spy.calls)
    assert all(kw["streaming"] and kw["revision"] == "0123abcd" for _, kw in spy.calls)
    assert data.image_column == "picture" and data.class_names == list(CLASSES)
    assert data.source_splits == {"train": 120, "test": 12}  # the test split capped
    assert set(data.splits["test"].labels.tolist()) == {0, 1, 2}  # row groups shuffled
    assert data.summary()["splits"] == {"train": 108, "validation": 12, "test": 12}
    manifest = data.manifest(config)
    assert manifest["stream"]["revision"] == "0123abcd"
    assert manifest["stream"]["shuffle_buffer"] == 4
    assert manifest["stream"]["row_limits"] == {"train": None, "test": 12}
    images, labels = data.tensors("test", preset_processor(16))
    assert images.shape == (12, 3, 16, 16) and len(labels) == 12

    monkeypatch.setattr(streaming, "hub_revision", lambda name: "4567cdef")
    moved = prepare_data(config)  # a new commit on the hub: streamed again, not the old spool
    assert moved.splits["test"].dataset._fingerprint != data.splits["test"].dataset._fingerprint


@pytest.mark.parametrize("test_labels", ["-1", "none"])
def test_an_unlabelled_hub_test_split_counts_as_carved_from_the_capped_training_split(
    test_labels: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    LoadSpy(monkeypatch, {"someone/no-test-labels": _hub_repo(tmp_path / "repo", test_labels)})
    monkeypatch.setattr(sources, "require_hub", lambda *a: None)
    monkeypatch.setattr(streaming, "hub_revision", lambda name: "0123abcd")
    config = DataConfig(dataset="someone/no-test-labels", streaming=True, max_train_samples=60)
    data = prepare_data(config)
    # 60 / (0.8 * 0.9) with the margin; counted as if the test split were there, 78 rows
    # would leave 56 training images once test and validation are carved.
    assert data.source_splits == {"train": 95}
    assert data.summary()["splits"]["train"] == 60
    assert set(data.splits["test"].labels.tolist()) == {0, 1, 2}  # carved, labelled


def _one_line(err: pytest.ExceptionInfo[CnnvitError]) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_failing_stream_ends_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "require_hub", lambda *a: None)

    def missing(name: str) -> str:
        raise OSError("Repository Not Found for url: https://huggingface.co/x\nmore detail")

    monkeypatch.setattr(streaming, "hub_revision", missing)
    with pytest.raises(CnnvitError) as err:
        prepare_data(DataConfig(dataset="someone/gone", streaming=True))
    assert "cannot stream hub dataset 'someone/gone': Repository Not Found" in _one_line(err)

    monkeypatch.setattr(streaming, "hub_revision", lambda name: "0123abcd")
    repo = _hub_repo(tmp_path / "repo")
    real = datasets.load_dataset

    def drops_mid_stream(path: str, **kwargs: Any) -> Any:
        if "split" in kwargs:  # the spool's generator: the connection drops
            raise ConnectionError("Couldn't reach 'someone/flaky' on the Hub (ConnectError)")
        return real(str(repo), **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", drops_mid_stream)
    with pytest.raises(CnnvitError) as err:
        prepare_data(DataConfig(dataset="someone/flaky", streaming=True))
    assert "cannot stream hub dataset 'someone/flaky': Couldn't reach" in _one_line(err)


def test_hub_image_files_are_spooled_with_their_bytes(tmp_path: Path) -> None:
    image = tmp_path / "one.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image)
    remote = {"bytes": None, "path": image.as_uri()}  # a URL, as hub image files stream
    assert streaming._embedded(remote)["bytes"] == image.read_bytes()
    gone = {"bytes": None, "path": (tmp_path / "gone.png").as_uri()}
    assert streaming._embedded(gone) == gone  # left for decode_cached to count as unreadable
    local = {"bytes": None, "path": str(image)}
    assert streaming._embedded(local) == local  # local files are read where they are


def test_streaming_digits_or_idx_files_is_refused_in_one_line(
    idx_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fast = ["--epochs", "1", "--cnn", "convnext-nano", "--vit", "vit-nano", "--image-size", "16",
            "--max-train-samples", "60", "--output-dir", str(tmp_path / "run")]  # fmt: skip
    settings = tmp_path / "streaming.yaml"
    settings.write_text("data:\n  dataset: digits\n  streaming: true\n")
    for argv in (["--dataset", "digits", "--streaming"], ["--dataset", str(idx_folder),
                 "--streaming"], ["--config", str(settings)]):  # fmt: skip
        code = main(["compare", *argv, *fast])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("cnnvit: error:")]
        assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
        assert "--streaming applies to hub datasets and image folders" in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_streamed_run_records_the_stream_and_loads_back_with_its_split(
    sorted_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from cnnvit.runs import load_run

    spy = LoadSpy(monkeypatch)
    run = tmp_path / "run"
    code = main(["compare", "--dataset", str(sorted_folder), "--streaming", "--epochs", "1",
                 "--max-train-samples", "30", "--cnn", "convnext-nano", "--vit", "vit-nano",
                 "--image-size", "16", "--lr", "1e-3", "--precision", "fp32",
                 "--output-dir", str(run), "--quiet"])  # fmt: skip
    assert code == 0
    manifest = json.loads((run / "split.json").read_text())
    assert manifest["streaming"] is True and manifest["source_splits"] == {"train": 53}
    assert manifest["stream"]["shuffle_buffer"] == streaming.FOLDER_BUFFER
    loaded = load_run(run)
    assert loaded.config.data.streaming is True  # run.json's config carries the option
    loaded.prepare_data()  # the same ids as split.json, from the reused spool
    assert spy.stream_reads() == 1
