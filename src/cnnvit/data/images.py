"""Decoding images once: any value a datasets column holds becomes an RGB uint8 array at the
model's input geometry, through the model's own image processor (rescaling and normalisation
off). Unreadable images (corrupt bytes, truncated files, decompression bombs) are counted and
skipped, never fatal; odd modes (16-bit, float, palette, transparency) become 8-bit RGB.
"""

from __future__ import annotations

import io
import json
import struct
import sys
from collections.abc import Iterator
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from ..errors import CnnvitError
from . import cache

# Images per image-processor call. The processor's float32 copies of a chunk are the decode's
# peak memory: at 128 px, 512 images peaked near 200 MB above the start, 64 images near 40 MB,
# at the same speed (benchmarks/memory.py).
_DECODE_CHUNK = 64


def geometry_key(processor: Any) -> str:
    """What determines a processor's output pixels before rescaling and normalisation."""
    attrs = ("size", "crop_size", "crop_pct", "resample", "do_resize", "do_center_crop")
    values = {a: getattr(processor, a, None) for a in attrs}
    values["class"] = type(processor).__name__
    return json.dumps(values, sort_keys=True, default=str)


def _open_image(value: Any) -> Image.Image:
    """A PIL RGB image from what a datasets column holds (encoded dict, PIL image or array)."""
    if isinstance(value, dict):
        source = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
        if not source:  # empty bytes and no path
            raise ValueError("empty image")
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
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):  # 16-bit and float images
        image = _to_8bit(np.asarray(image))
    if image.mode in ("LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode == "RGBA":  # composite on white, as a viewer shows it
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def _to_8bit(array: np.ndarray) -> Image.Image:
    """A grayscale 8-bit image from 16-bit or float pixels: 0..65535 and 0..1 scale to 0..255,
    other ranges are stretched from their minimum to their maximum."""
    array = array.astype(np.float64)
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if 0 <= low and high <= 1:
        scaled = array * 255
    elif 0 <= low and high <= 255:
        scaled = array
    elif 0 <= low and high <= 65535:
        scaled = array / 257
    else:
        scaled = (array - low) * (255 / (high - low))
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


# Everything Pillow raises for a file it cannot decode: a damaged or truncated file, a format it
# does not know, or one whose header claims more pixels than MAX_IMAGE_PIXELS allows (a
# decompression bomb).
UNREADABLE = (
    UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError,
    TypeError, EOFError, struct.error,
)  # fmt: skip


def _decoded_chunks(
    dataset: datasets.Dataset, image_column: str, processor: Any
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Decode _DECODE_CHUNK rows at a time: (uint8 images (n, 3, H, W) of the readable rows,
    boolean mask of the chunk's rows that were readable). Memory: one chunk. A progress bar
    with the time left shows on a terminal (decoding a large split is the first long step)."""
    bar = tqdm(total=len(dataset), desc="decoding images", unit="img", leave=False,
               file=sys.stderr, disable=None)  # fmt: skip
    try:
        yield from _chunks(dataset, image_column, processor, bar)
    finally:
        bar.close()


def _chunks(
    dataset: datasets.Dataset, image_column: str, processor: Any, bar: tqdm
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for batch in dataset.with_format(None).iter(batch_size=_DECODE_CHUNK):
        bar.update(len(batch[image_column]))
        values = batch[image_column]
        keep = np.ones(len(values), dtype=bool)
        opened: list[Image.Image] = []
        for index, value in enumerate(values):
            try:
                opened.append(_open_image(value))
            except UNREADABLE:
                keep[index] = False
        if not opened:
            yield np.empty((0, 3, 0, 0), dtype=np.uint8), keep
            continue
        pixels = processor(images=opened, do_rescale=False, do_normalize=False, return_tensors="np")
        yield np.clip(np.rint(pixels["pixel_values"]), 0, 255).astype(np.uint8), keep


def decode_images(
    dataset: datasets.Dataset, image_column: str, processor: Any
) -> tuple[torch.Tensor, np.ndarray]:
    """Decode, convert to RGB and resize every image once, through the model's processor.

    Returns uint8 images (N_readable, 3, H, W) in memory and a boolean mask (N,) of readable
    images.
    """
    chunks, masks = [], []
    for images, keep in _decoded_chunks(dataset, image_column, processor):
        masks.append(keep)
        if len(images):
            chunks.append(images)
    if not chunks:
        raise CnnvitError("none of the images could be read: check that the files are images")
    return torch.from_numpy(np.concatenate(chunks)), np.concatenate(masks)


def decode_cached(
    dataset: datasets.Dataset, image_column: str, processor: Any, ids: np.ndarray
) -> tuple[torch.Tensor, np.ndarray]:
    """`decode_images` through the on-disk cache: a memory-mapped tensor, decoded only once
    for these rows at this geometry (keyed by the dataset's fingerprint; see cache.py)."""
    root = cache.cache_root()
    if root is None:
        return decode_images(dataset, image_column, processor)
    geometry = geometry_key(processor)
    key = cache.cache_key(dataset._fingerprint, geometry, ids)
    found = cache.load(root, key)
    if found is not None:
        return found
    chunks = _decoded_chunks(dataset, image_column, processor)
    about = {"fingerprint": dataset._fingerprint, "geometry": geometry}
    return cache.store(root, key, len(dataset), chunks, about)


# --- labels and splits ---------------------------------------------------------------------
