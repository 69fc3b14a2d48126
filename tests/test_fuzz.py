"""Bad input, fuzzed: every loader and the config reader end in one clear line or a counted skip.

Property-based (hypothesis) over random and damaged bytes, image modes and sizes, IDX headers,
class-folder names and config values; each property says what may happen (a readable RGB image,
or one of the known errors) and nothing else may. A handful of end-to-end cases go through
`prepare_data` on real folders and check that the source files are never modified. Example
counts are small and each has a deadline, so the file runs in well under a minute.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import write_idx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnvit.config import DataConfig, build_config, load_config_file, stage_fields
from cnnvit.data import prepare_data
from cnnvit.data.images import UNREADABLE, _open_image, _to_8bit
from cnnvit.data.sources import _read_idx
from cnnvit.errors import CnnvitError

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out

FAST = settings(
    max_examples=40,
    deadline=5000,  # ms per example: a decoder that hangs fails here instead of stalling
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SLOW = settings(FAST, max_examples=4, deadline=60000)


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _valid(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    return _encoded(Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)), fmt)


def _bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG whose header claims width x height pixels (over Pillow's bomb limit), data absent."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1)))
        + chunk(b"IEND", b"")
    )


def _opens_or_is_unreadable(data: bytes) -> Image.Image | None:
    """The property every image loader must keep: an RGB image, or a known unreadable error."""
    try:
        image = _open_image({"bytes": data, "path": None})
    except UNREADABLE:
        return None
    assert image.mode == "RGB"
    return image


# --- images ----------------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=512))
def test_random_bytes_are_an_image_or_unreadable(data: bytes) -> None:
    _opens_or_is_unreadable(data)


@FAST
@given(st.sampled_from(["PNG", "JPEG"]), st.floats(0.0, 0.99))
def test_truncated_png_and_jpeg_are_unreadable_or_whole(fmt: str, keep: float) -> None:
    whole = _valid(fmt)
    image = _opens_or_is_unreadable(whole[: int(len(whole) * keep)])
    if image is not None:
        assert image.size == (12, 12)


MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "LA", "PA", "I;16", "I", "F", "YCbCr"]


@FAST
@given(
    st.sampled_from(MODES),
    st.integers(1, 6),
    st.integers(1, 6),
    st.integers(0, 2**32 - 1),
)
def test_every_mode_and_tiny_size_decodes_to_rgb_of_the_same_size(
    mode: str, width: int, height: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).convert(mode)
    fmt = "JPEG" if mode in ("CMYK", "YCbCr") else "TIFF" if mode in ("F", "I", "PA") else "PNG"
    opened = _opens_or_is_unreadable(_encoded(image, fmt))
    assert opened is not None and opened.size == (width, height)


def test_16_bit_and_float_pixels_scale_to_8_bits() -> None:
    sixteen = np.array([[0, 257, 257 * 128, 65535]], dtype=np.uint16)
    assert np.asarray(_to_8bit(sixteen)).tolist() == [[0, 1, 128, 255]]
    unit = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    assert np.asarray(_to_8bit(unit)).tolist() == [[0, 128, 255]]  # 127.5 rounds to even 128
    stretched = np.array([[-10.0, 0.0, 10.0]])
    assert np.asarray(_to_8bit(stretched)).tolist() == [[0, 128, 255]]
    # A 16-bit PNG through the loader keeps its contrast (it used to saturate to white).
    png = _encoded(Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)), "PNG")
    assert np.asarray(_open_image({"bytes": png, "path": None}))[0, :, 0].tolist() == [0, 255]


def test_decompression_bomb_is_unreadable_not_a_crash() -> None:
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(_bomb_png()))
    assert _opens_or_is_unreadable(_bomb_png()) is None


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_folder_of_bad_images_counts_the_skips_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNNVIT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "bad"
    rng = np.random.default_rng(3)
    bad = {
        "noise.png": rng.bytes(300),
        "cut.png": _valid("PNG")[:60],
        "cut.jpg": _valid("JPEG")[:200],
        "bomb.png": _bomb_png(),
        "empty.png": b"",
    }
    for klass in ("a cat", "çhien"):  # a space and a non-ASCII letter
        folder = root / klass
        folder.mkdir(parents=True)
        for i in range(8):
            array = rng.integers(0, 255, (1 + i % 3, 1 + i % 2, 3), dtype=np.uint8)  # tiny sizes
            Image.fromarray(array).convert(["RGB", "L", "P", "LA"][i % 4]).save(folder / f"{i}.png")
        for name, data in bad.items():
            (folder / name).write_bytes(data)
    before = _tree_digest(root)
    data = prepare_data(DataConfig(dataset=str(root), test_fraction=0.25, validation_fraction=0.25))
    assert data.class_names == ["a cat", "çhien"]
    total = 0
    with pytest.warns(UserWarning, match="could not be read and were skipped"):
        for split in ("train", "validation", "test"):
            images, labels = data.tensors(split, _processor(data.class_names))
            assert images.shape[1:] == (3, 16, 16) and len(images) == len(labels)
            total += len(images)
    assert total == 16  # every good image, none of the 10 bad ones
    assert sum(data.unreadable.values()) == 10
    assert _tree_digest(root) == before  # the source folder is never written


def _processor(classes: list[str]):  # noqa: ANN202 - a transformers image processor
    from cnnvit.models import build_model

    return build_model("vit-nano", "vit", classes, 16, "eager", 0).processor


NAME = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\\x00"),
    min_size=1,
    max_size=10,
).filter(lambda s: s.strip() == s and s not in (".", "..") and not s.startswith("."))


@SLOW
@given(st.lists(NAME, min_size=2, max_size=2, unique_by=str.lower))
def test_class_folders_with_any_names_load(tmp_path_factory, names: list[str]) -> None:
    if {n.lower() for n in names} & {"train", "test", "validation"}:
        return  # those names mean split folders
    root = tmp_path_factory.mktemp("names")
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).save(
                root / name / f"{i}.png"
            )
    data = prepare_data(DataConfig(dataset=str(root), test_fraction=0.25, validation_fraction=0.25))
    assert sorted(data.class_names) == sorted(names)
    assert sum(data.summary()["splits"].values()) == 12


def test_an_empty_class_is_one_line(tmp_path: Path) -> None:
    for name, count in (("full", 4), ("empty one", 0)):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.new("RGB", (4, 4)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "empty one" / "notes.txt").write_text("not an image")
    with pytest.raises(CnnvitError, match="empty one") as caught:
        prepare_data(DataConfig(dataset=str(tmp_path)))
    assert "\n" not in str(caught.value)


# --- IDX files -------------------------------------------------------------------------------


@FAST
@given(
    st.binary(min_size=0, max_size=4),
    st.lists(st.integers(0, 40), min_size=0, max_size=4),
    st.integers(-8, 8),
)
def test_idx_with_any_header_is_an_array_or_one_line(
    tmp_path_factory, magic: bytes, dims: list[int], extra: int
) -> None:
    path = tmp_path_factory.mktemp("idx") / "train-images-idx3-ubyte"
    magic = (magic + bytes(4))[:4] if len(magic) < 4 else magic
    header = magic[:3] + bytes([len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    size = int(np.prod(dims)) if dims else 1
    path.write_bytes(header + bytes(max(0, size + extra)))
    try:
        array = _read_idx(path)
    except CnnvitError as err:
        assert "\n" not in str(err) and str(path) in str(err)
        return
    # Only a well-formed file loads: the right magic and exactly the promised bytes.
    assert magic[:3] == b"\x00\x00\x08" and extra == 0 and list(array.shape) == dims


def test_idx_folder_with_wrong_magic_or_length_is_one_line(tmp_path: Path) -> None:
    labels = np.arange(30) % 3
    images = np.zeros((30, 8, 8), dtype=np.uint8)
    for split in ("train", "t10k"):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", images)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", labels)
    target = tmp_path / "train-images-idx3-ubyte"
    good = target.read_bytes()
    for broken in (b"\x00\x00\x0d" + good[3:], good[:-5], good + b"\x00"):
        target.write_bytes(broken)
        with pytest.raises(CnnvitError) as caught:
            prepare_data(DataConfig(dataset=str(tmp_path)))
        assert "\n" not in str(caught.value) and "IDX" in str(caught.value)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:20])  # 30 images, 20 labels
    target.write_bytes(good)
    with pytest.raises(CnnvitError, match="disagree"):
        prepare_data(DataConfig(dataset=str(tmp_path)))


# --- config files ----------------------------------------------------------------------------

KEYS = sorted(stage_fields()) + ["learning_rate", "bogus", "train", "data"]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@FAST
@given(st.dictionaries(st.one_of(st.sampled_from(KEYS), st.integers(), st.none()), VALUES))
def test_config_file_with_wrong_types_is_a_config_or_one_line(tmp_path_factory, values) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    try:
        build_config(load_config_file(path))
    except CnnvitError as err:
        assert "\n" not in str(err)


@FAST
@given(st.text(max_size=200))
def test_any_text_as_a_config_file_is_a_mapping_or_one_line(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        loaded = load_config_file(path)
    except CnnvitError as err:
        assert "\n" not in str(err)
        return
    assert isinstance(loaded, dict)


# --- the hub without a network, and never overwriting ---------------------------------------

OFFLINE_PROBE = textwrap.dedent(
    """
    import sys, time
    from cnnvit import compare
    from cnnvit.errors import CnnvitError
    start = time.perf_counter()
    try:
        compare(dataset="someone/some-images", output=sys.argv[1])
    except CnnvitError as err:
        print(f"{time.perf_counter() - start:.2f}", str(err), sep="\\n")
    """
)


def test_hub_id_without_network_fails_fast_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens on the discard port
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_PROBE, str(tmp_path / "run")],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2, (done.stdout, done.stderr[-2000:], time.perf_counter() - started)
    seconds, message = float(lines[0]), lines[1]
    assert seconds < 30  # from the call to the error, imports aside
    assert "cannot reach the Hugging Face hub" in message and "someone/some-images" in message
    assert not (tmp_path / "run").exists()  # nothing created for a run that never started


def test_an_existing_output_is_never_overwritten(tmp_path: Path) -> None:
    from cnnvit import compare

    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(CnnvitError, match="already exists"):
        compare(dataset="digits", output=str(out), max_train_samples=30, image_size=16)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"
