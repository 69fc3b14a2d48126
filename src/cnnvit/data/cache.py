"""Decoded images on disk: a memory-mapped uint8 cache, so data larger than memory trains.

A split decoded for one model geometry is stored once as a raw uint8 array (N, 3, H, W) in
`<cache>/<key>.u8` with a small `<key>.json` beside it (shape, which source rows were
unreadable, what the key was made of). The key hashes the split's Hugging Face `datasets`
fingerprint (which changes when a source file changes), the image processor's geometry and the
split's example ids, so every run of a study that uses the same images at the same size reads
the same file instead of decoding again. Images are written chunk by chunk into a temporary
file that is renamed into place (the .json last), so a reader sees a whole entry or none, and
two processes racing to fill the same entry both leave a correct one.

`tensors` then hand out `torch.from_numpy` views of a copy-on-write `np.memmap`: pages are read
from disk as batches index them and stay reclaimable page cache, never process-owned memory, so
a process's private memory no longer grows with the dataset. Pages a process has touched still
count in its resident set (RSS) while they stay mapped, so for an entry of TRIM_BYTES or more a
daemon thread drops them from the mapping every TRIM_SECONDS (`madvise(MADV_DONTNEED)`: the
page cache keeps them, and the next read maps them again): RSS then stays flat as the data
grows. The tensors are read-only by contract: a page written in place would be dropped too.
Writing an entry goes through plain file writes, so the decode does not map it either. The
cache lives in `$CNNVIT_CACHE` (default `~/.cache/cnnvit`); `CNNVIT_CACHE=off` decodes into
memory as before.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CnnvitError

FORMAT = 1
DEFAULT_ROOT = Path("~/.cache/cnnvit")


def cache_root() -> Path | None:
    """Where decoded images are cached, or None when `CNNVIT_CACHE=off`."""
    setting = os.environ.get("CNNVIT_CACHE", "")
    if setting.lower() in ("off", "0", "none", "false"):
        return None
    return (Path(setting) if setting else DEFAULT_ROOT).expanduser() / "decoded"


def cache_key(fingerprint: str, geometry: str, ids: np.ndarray) -> str:
    """The entry name for one split at one geometry (a sha256 of what determines its pixels)."""
    digest = hashlib.sha256()
    digest.update(f"format={FORMAT}\nfingerprint={fingerprint}\ngeometry={geometry}\n".encode())
    digest.update(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    return digest.hexdigest()[:32]


# Entries this large have their touched pages dropped from the process's mapping regularly.
TRIM_BYTES = 32 * 2**20
TRIM_SECONDS = 0.25
_trimmed: weakref.WeakSet[mmap.mmap] = weakref.WeakSet()
_trimmer: list[threading.Thread] = []  # the running trimmer of this process, if any


def _trim_forever() -> None:
    while True:
        time.sleep(TRIM_SECONDS)
        for mapping in list(_trimmed):
            try:
                mapping.madvise(mmap.MADV_DONTNEED)
            except (ValueError, OSError):  # closed meanwhile
                _trimmed.discard(mapping)


def _trim(array: np.memmap) -> None:
    """Have the trimmer thread drop `array`'s touched pages from this process, regularly."""
    mapping = getattr(array, "_mmap", None)
    if mapping is None or not hasattr(mmap, "MADV_DONTNEED"):
        return  # an empty array, or a system without madvise: nothing to trim
    _trimmed.add(mapping)
    if not _trimmer:
        thread = threading.Thread(target=_trim_forever, name="cnnvit-cache-trim", daemon=True)
        thread.start()
        _trimmer.append(thread)


if hasattr(os, "register_at_fork"):  # a forked child has no trimmer thread: it starts its own
    os.register_at_fork(after_in_child=_trimmer.clear)


def _as_tensor(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    # Copy-on-write: writable for torch (no warning), the file is never changed.
    array = np.memmap(path, dtype=np.uint8, mode="c", shape=shape)
    if array.nbytes >= TRIM_BYTES:
        _trim(array)
    return torch.from_numpy(array)


def load(root: Path, key: str) -> tuple[torch.Tensor, np.ndarray] | None:
    """A cached entry as (memmap-backed uint8 images, keep mask), or None if absent or bad."""
    try:
        meta = json.loads((root / f"{key}.json").read_text(encoding="utf-8"))
        shape = tuple(int(v) for v in meta["shape"])
        data = root / f"{key}.u8"
        if meta.get("format") != FORMAT or data.stat().st_size != int(np.prod(shape)):
            return None  # another format, or a file cut short: decode again
        keep = np.ones(int(meta["rows"]), dtype=bool)
        keep[np.asarray(meta["unreadable"], dtype=np.int64)] = False
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return _as_tensor(data, shape), keep


def store(
    root: Path,
    key: str,
    rows: int,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    about: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """Write decoded chunks into a new entry and return it as `load` does.

    `chunks` yields (uint8 images (n, 3, H, W) of the readable rows, keep mask of the chunk's
    rows), in row order, `rows` rows in all. Memory use is one chunk, whatever `rows` is.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=root, prefix=f".{key}.", suffix=".tmp")
    except OSError as err:
        raise CnnvitError(
            f"cannot write the image cache in {root} ({err.strerror}): "
            "set CNNVIT_CACHE to a writable folder, or CNNVIT_CACHE=off"
        ) from None
    temp = Path(temp_name)
    keep = np.zeros(rows, dtype=bool)
    geometry: tuple[int, ...] | None = None
    count = position = 0
    try:
        # Plain appends, not a writable memmap: the written pages never enter this process's
        # resident set, so the decode's memory is one chunk whatever `rows` is.
        with os.fdopen(handle, "wb") as out:
            for images, mask in chunks:
                keep[position : position + len(mask)] = mask
                position += len(mask)
                if not len(images):
                    continue
                geometry = geometry or tuple(images.shape[1:])  # the first chunk tells it
                if tuple(images.shape[1:]) != geometry:
                    raise CnnvitError(
                        f"the image processor gave images of shape {images.shape[1:]} and "
                        f"{geometry}: give it a fixed size"
                    )
                out.write(np.ascontiguousarray(images, dtype=np.uint8).data)
                count += len(images)
        if geometry is None:
            raise CnnvitError("none of the images could be read: check that the files are images")
        shape = (count, *geometry)
        data = root / f"{key}.u8"
        os.replace(temp, data)
    except OSError as err:
        raise CnnvitError(
            f"cannot write the image cache in {root} ({err.strerror}): free some space, "
            "set CNNVIT_CACHE to another folder, or CNNVIT_CACHE=off"
        ) from None
    finally:
        temp.unlink(missing_ok=True)
    meta = {
        "format": FORMAT,
        "shape": list(shape),
        "rows": rows,
        "unreadable": np.flatnonzero(~keep).tolist(),
        **(about or {}),
    }
    # The description goes in last (temp + rename): it is what makes the entry visible.
    handle, meta_temp = tempfile.mkstemp(dir=root, prefix=f".{key}.", suffix=".json.tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(meta, out)
    os.replace(meta_temp, root / f"{key}.json")
    return _as_tensor(data, shape), keep
