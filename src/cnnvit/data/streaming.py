"""Streaming sources (`--streaming`): a hub dataset or an image folder read as a stream and
spooled once to disk, instead of downloaded and materialised whole first.

Each split the run uses is read like this:

1. Opened with `datasets.load_dataset(..., streaming=True)`. A hub dataset is pinned to the
   commit the hub names when the run starts, so a spool belongs to one dataset revision.
2. Only the image and label columns are kept, and images stay encoded (`decode(False)`): an
   unreadable image is counted and skipped later by `decode_cached`, never fatal while spooling.
3. Shuffled. Hub files are often sorted by class, so the first rows of a capped read would hold
   one class. The order of the stream's shards (its files and, through `reshard()`, each Parquet
   file's row groups) is shuffled with the split seed, then rows pass through a buffer
   (`IterableDataset.shuffle(seed=split_seed, buffer_size=...)`, which fills it from up to 10
   shards at once). `HUB_BUFFER` rows for a hub dataset: a row holds an encoded image, and with
   the batches being read about 2,000 are in memory (~200 MB at 100 KB each). `FOLDER_BUFFER`
   rows for an image folder: a row is a file path (~500 bytes as Python objects: ~50 MB). An
   image folder streams as one shard in file order, which is sorted by class, so the buffer alone
   mixes it: a folder of up to `FOLDER_BUFFER` images is shuffled completely, a larger one read
   with a small cap can leave classes out (prepare.py then names them).
4. Capped when fewer images were asked for (`row_limits`): the training split at enough rows to
   leave `max_train_samples` after any test and validation splits are carved from it (plus a
   small margin), a test or validation split at `max_eval_samples`. The caps never depend on
   `train_fraction`, so every share of one study reads the same rows: the subsets stay nested
   and the test split stays fixed. Uncapped, the whole split is read. A stream shorter than its
   cap is used as it is. Evaluation splits are read first: one whose labels are all missing is
   dropped (prepare.py would drop it), and the training cap then counts that split as carved.
5. Spooled to an on-disk Arrow `datasets.Dataset` by `Dataset.from_generator`, chunk by chunk
   (memory stays flat whatever the dataset's size), in `$HF_DATASETS_CACHE` beside the datasets
   `load_dataset` writes. The generator re-opens the stream itself; the spool's fingerprint
   hashes the source (hub id and commit, or the folder's file list with sizes and times), the
   split, the columns and features, the seed, the buffer and the cap, so a second run with the
   same settings reuses the spool without streaming again, and the decoded-image cache keyed by
   that fingerprint is reused too.

Example ids are then positions in the shuffled, capped stream (the used splits in source order):
deterministic for a given split seed and dataset revision. Splits the run does not use (a hub
dataset's `extra` split, say) are not read at all.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets

from ..config import DataConfig
from ..errors import CnnvitError, first_line
from .schema import find_columns, split_roles

HUB_BUFFER = 1_000  # rows of encoded images held for the shuffle (datasets' own default)
FOLDER_BUFFER = 100_000  # rows of file paths held for the shuffle of an image folder
MARGIN, EXTRA_ROWS = 0.02, 10  # read 2% + 10 rows more: rounding of splits, unreadable images
FORMAT = 1  # bump when what a spool holds changes


def row_limits(split_names: list[str], config: DataConfig) -> dict[str, int | None]:
    """The splits to read, in source order, each with at most how many rows (None: all).

    The training split is capped only under `max_train_samples`: at enough rows that, once the
    test and validation splits the source lacks are carved from it, `max_train_samples` remain
    (and, when those splits are carved, enough for `max_eval_samples` each), plus a margin.
    """
    train, validation, test = split_roles(split_names)
    limits: dict[str, int | None] = {}
    if config.max_train_samples is None:
        limits[train] = None
    else:
        carve_test = 1.0 - (config.test_fraction if test is None else 0.0)
        carve_val = 1.0 - (config.validation_fraction if validation is None else 0.0)
        need = config.max_train_samples / (carve_test * carve_val)
        evals = config.max_eval_samples
        if evals is not None and test is None:
            need = max(need, evals / config.test_fraction)
        if evals is not None and validation is None:
            need = max(need, evals / (carve_test * config.validation_fraction))
        limits[train] = math.ceil(need * (1 + MARGIN)) + EXTRA_ROWS
    for key in (validation, test):
        if key is not None:
            limits[key] = config.max_eval_samples
    return {name: limits[name] for name in split_names if name in limits}


def hub_revision(name: str) -> str | None:
    """The commit a hub dataset's main branch points at now (None if the hub names none)."""
    from huggingface_hub import HfApi

    return HfApi().dataset_info(name).sha


def folder_signature(folder: Path) -> str:
    """A hash of every file's path, size and modification time under `folder`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _open(path: str, data_dir: str | None, revision: str | None, **kwargs: Any) -> Any:
    """`datasets.load_dataset(..., streaming=True)` for a hub id or the imagefolder builder."""
    options = {"data_dir": data_dir} if data_dir else {}
    if revision:
        options["revision"] = revision
    return datasets.load_dataset(path, streaming=True, **options, **kwargs)


def _columns(stream: datasets.IterableDataset, image: str, label: str) -> datasets.IterableDataset:
    """The image and label columns, images kept encoded (bytes or a path)."""
    if stream.features is None:  # no features in the dataset card: read them off the first row
        stream = stream._resolve_features()
    return stream.select_columns([image, label]).decode(False)


def _embedded(value: Any) -> Any:
    """An encoded image whose bytes lie behind a URL (hub image files) with its bytes read in,
    so the spool does not depend on the network; left as it is when they cannot be read."""
    if not isinstance(value, dict) or value.get("bytes") or "://" not in str(value.get("path")):
        return value
    import fsspec

    try:
        with fsspec.open(value["path"], "rb") as handle:
            return {"bytes": handle.read(), "path": value["path"]}
    except Exception:  # noqa: BLE001 - any failure: decode_cached counts it as unreadable
        return value


def _rows(
    path: str,
    data_dir: str | None,
    revision: str | None,
    split: str,
    image: str,
    label: str,
    seed: int,
    buffer: int,
    limit: int | None,
) -> Iterator[dict[str, Any]]:
    """The spool's generator: re-opens the stream, then shuffles, caps and yields its rows."""
    stream = _columns(_open(path, data_dir, revision, split=split), image, label)
    stream = stream.reshard().shuffle(seed=seed, buffer_size=buffer)
    if limit is not None:
        stream = stream.take(limit)
    for row in stream:
        yield {image: _embedded(row[image]), label: row[label]}


def _unlabelled(dataset: datasets.Dataset, label: str) -> bool:
    """True when every label of a non-empty split is missing: null (a split without the label
    column, as Parquet files read it) or negative (-1, as ClassLabel marks it)."""
    column = dataset.data.column(label)
    if len(column) == 0:
        return False
    if column.null_count == len(column):
        return True
    values = column.to_numpy()
    return values.dtype.kind in "iu" and bool((values < 0).all())


def _first_line(err: BaseException) -> str:
    """The first line of an error, or of its cause when datasets wrapped a generator's error."""
    if isinstance(err, datasets.exceptions.DatasetGenerationError) and err.__cause__ is not None:
        err = err.__cause__
    return first_line(err)


def stream_source(
    path: str,
    config: DataConfig,
    *,
    what: str,
    identity: str,
    buffer: int,
    data_dir: str | None = None,
    revision: str | None = None,
) -> tuple[datasets.DatasetDict, dict[str, Any]]:
    """Read the splits a run uses as streams, shuffle, cap and spool them (see module docs).

    `what` names the source in errors ("hub dataset 'x'"); `identity` says what the data is
    (id and commit, or a folder and its signature). Returns the spooled splits and what the
    manifest records about the stream.
    """
    try:
        opened = _open(path, data_dir, revision)
        if not isinstance(opened, datasets.IterableDatasetDict):
            opened = datasets.IterableDatasetDict({"train": opened})
        first = opened[next(iter(opened))]
        if first.features is None:
            first = first._resolve_features()
        image, label = find_columns(first, config)
        names = list(opened)
        train = split_roles(names)[0]
        spooled: dict[str, datasets.Dataset] = {}
        # Evaluation splits first: one without labels (all -1, as hub test splits often are, or
        # all missing) is dropped, so the training split's cap counts what prepare.py carves.
        for split in [*(s for s in names if s != train), train]:
            limits = row_limits(names, config)  # the training cap follows what was dropped
            if split not in limits:  # a split the run does not use
                continue
            limit = limits[split]
            features = _columns(opened[split], image, label).features
            kwargs = {"path": path, "data_dir": data_dir, "revision": revision, "split": split,
                      "image": image, "label": label, "seed": config.split_seed,
                      "buffer": buffer, "limit": limit}  # fmt: skip
            about = {"format": FORMAT, "source": identity, "features": features.to_dict(),
                     **{k: kwargs[k] for k in kwargs if k not in ("path", "data_dir")}}  # fmt: skip
            fingerprint = hashlib.sha256(json.dumps(about, sort_keys=True).encode()).hexdigest()
            spooled[split] = datasets.Dataset.from_generator(
                _rows, features=features, gen_kwargs=kwargs, fingerprint=fingerprint[:32]
            )
            if split != train and _unlabelled(spooled[split], label):
                del spooled[split]
                names.remove(split)
    except CnnvitError:
        raise
    except Exception as err:  # network, missing repo, gated repo, bad files: one line each
        raise CnnvitError(f"cannot stream {what}: {_first_line(err)}") from None
    spooled = {split: spooled[split] for split in names if split in spooled}  # source order
    record = {
        "shuffle_buffer": buffer,
        "revision": revision,
        "row_limits": row_limits(names, config),
        "rows_read": {split: len(d) for split, d in spooled.items()},
    }
    return datasets.DatasetDict(spooled), record
