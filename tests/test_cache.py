"""The decoded-image cache: memory-mapped, the same pixels as decoding in memory, reused, and
keyed so that a changed source file is decoded again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnvit.config import DataConfig
from cnnvit.data import cache, prepare_data
from cnnvit.models import build_model


def _processor(classes: list[str]):  # noqa: ANN202 - a transformers image processor
    return build_model("vit-nano", "vit", classes, 16, "eager", 0).processor


def _entries(root: Path) -> list[Path]:
    return sorted((root / "decoded").glob("*.u8"))


def test_cached_images_equal_in_memory_decoding_and_are_reused(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNNVIT_CACHE", "off")
    data = prepare_data(DataConfig(dataset=str(image_folder)))
    processor = _processor(data.class_names)
    expected, expected_labels = data.tensors("train", processor)

    monkeypatch.setenv("CNNVIT_CACHE", str(tmp_path / "cache"))
    first, labels = prepare_data(DataConfig(dataset=str(image_folder))).tensors("train", processor)
    assert torch.equal(first, expected) and torch.equal(labels, expected_labels)
    [entry] = _entries(tmp_path / "cache")
    assert entry.stat().st_size == first.numel()  # the tensor's bytes are this file's
    on_disk = np.fromfile(entry, dtype=np.uint8).reshape(first.shape)
    assert np.array_equal(on_disk, first.numpy())
    written = entry.stat().st_mtime_ns

    # Another run of the same data reads the same entry: nothing decoded or written again.
    again, _ = prepare_data(DataConfig(dataset=str(image_folder))).tensors("train", processor)
    assert torch.equal(again, expected)
    assert _entries(tmp_path / "cache") == [entry] and entry.stat().st_mtime_ns == written


def test_a_changed_source_file_gets_a_new_entry(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNNVIT_CACHE", str(tmp_path / "cache"))
    data = prepare_data(DataConfig(dataset=str(image_folder)))
    processor = _processor(data.class_names)
    before, _ = data.tensors("test", processor)
    for path in sorted(image_folder.rglob("*.png")):  # repaint every PNG white
        Image.new("RGB", (20, 20), (255, 255, 255)).save(path)
    after, _ = prepare_data(DataConfig(dataset=str(image_folder))).tensors("test", processor)
    assert len(_entries(tmp_path / "cache")) == 2
    assert not torch.equal(before, after)


def test_a_cut_short_entry_is_decoded_again(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNNVIT_CACHE", str(tmp_path / "cache"))
    data = prepare_data(DataConfig(dataset=str(image_folder)))
    processor = _processor(data.class_names)
    good = data.tensors("validation", processor)[0].clone()  # the file is about to be cut
    [entry] = _entries(tmp_path / "cache")
    with open(entry, "r+b") as handle:
        handle.truncate(entry.stat().st_size // 2)
    again, _ = prepare_data(DataConfig(dataset=str(image_folder))).tensors("validation", processor)
    assert torch.equal(good, again)
    assert entry.stat().st_size == good.numel()


def test_unreadable_rows_are_recorded_and_skipped(tmp_path: Path) -> None:
    images = [np.full((1, 3, 2, 2), value, dtype=np.uint8) for value in (10, 20)]
    chunks = [
        (images[0], np.array([True, False])),  # row 1 unreadable
        (np.empty((0, 3, 0, 0), dtype=np.uint8), np.array([False])),  # a chunk with none
        (images[1], np.array([True])),
    ]
    stored, keep = cache.store(tmp_path, "k", 4, iter(chunks))
    assert keep.tolist() == [True, False, False, True]
    assert stored[:, 0, 0, 0].tolist() == [10, 20]
    loaded, loaded_keep = cache.load(tmp_path, "k")  # type: ignore[misc]
    assert torch.equal(loaded, stored) and loaded_keep.tolist() == keep.tolist()


def _mapped_kb(path: Path) -> int:
    """Resident kB of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line[:1].isalnum() and "-" in line.split(" ", 1)[0]:  # a mapping's header line
            inside = line.endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's smaps")
def test_touched_pages_of_a_large_entry_leave_the_resident_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setattr(cache, "TRIM_BYTES", 2**20)
    rows = np.full((64, 3, 64, 64), 7, dtype=np.uint8)  # 768 kB per chunk, 3 MB in all
    chunks = [(rows, np.ones(64, bool))] * 4
    images, keep = cache.store(tmp_path, "k", 256, chunks)
    path = (tmp_path / "k.u8").resolve()
    assert keep.all() and int(images[200].amax()) == 7 and _mapped_kb(path) < 3 * 1024
    for _ in range(100):  # the trimmer drops the pages within TRIM_SECONDS of their reading
        images.amax()  # touches every page
        time.sleep(cache.TRIM_SECONDS / 4)
        if _mapped_kb(path) < 1024:
            break
    assert _mapped_kb(path) < 1024 and int(images.sum(dtype=torch.int64)) == 7 * rows.size * 4
