"""Files of a run directory: created fresh (never overwritten), written atomically.

A reader sees a file's old content or its new content, never half of it: every write goes to a
temporary file in the same folder and is renamed over the target (`os.replace` is atomic on
POSIX and Windows). The format of the files is documented in `cnnvit.runs` (its __init__).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import CnnvitError

DEFAULT_RUNS_ROOT = Path("runs")
DEFAULT_STUDIES_ROOT = Path("studies")  # where `cnnvit study` puts a study without --output-dir


def _slug(text: str) -> str:
    """A file-name-safe short form of a model name or hub id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.rstrip("/").split("/")[-1])[:40]


def create_run_dir(output: str | None, cnn: str, vit: str) -> Path:
    """Make a new, empty run directory; an existing path is an error, never reused."""
    if output is not None:
        path = Path(output).expanduser()
        if path.exists():
            raise CnnvitError(
                f"output directory {path} already exists: choose another --output-dir or remove it"
            )
        try:
            path.mkdir(parents=True)
        except OSError as err:
            raise CnnvitError(f"cannot create output directory {path}: {err.strerror}") from None
        return path
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = DEFAULT_RUNS_ROOT / f"{stamp}-{_slug(cnn)}-vs-{_slug(vit)}"
    for attempt in range(1, 1000):
        path = base if attempt == 1 else base.with_name(f"{base.name}-{attempt}")
        try:
            path.mkdir(parents=True, exist_ok=False)  # atomic: two runs never share a name
            return path
        except FileExistsError:
            continue
        except OSError as err:
            raise CnnvitError(f"cannot create run directory {path}: {err.strerror}") from None
    raise CnnvitError(f"too many runs named {base.name}*: remove some from {DEFAULT_RUNS_ROOT}")


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a file so that readers see the old content or the new, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(temp, 0o644)  # mkstemp creates 0600; run files are meant to be shared
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=True) + "\n")


def read_record(root: Path, name: str, kind: str, latest: int, noun: str) -> tuple[dict, int]:
    """Read `root/name`, a versioned record of `kind` ("cnnvit-run", "cnnvit-study"), and check
    its kind and schema version; one-line errors name the file and what to do."""
    record_path = root / name
    record = read_json(record_path)
    if not isinstance(record, dict) or record.get("kind") != kind:
        raise CnnvitError(f"{record_path} is not a cnnvit {noun} record")
    version = record.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise CnnvitError(f"{record_path} has no valid schema_version: is it a cnnvit {noun}?")
    if version > latest:
        raise CnnvitError(
            f"{root} uses {noun} format version {version}, newer than this cnnvit reads "
            f"({latest}): upgrade cnnvit"
        )
    return record, version


def read_json(path: Path) -> Any:
    """Parse a JSON file, with one-line errors for a missing or damaged file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CnnvitError(f"{path} not found: is {path.parent} a finished cnnvit run?") from None
    except json.JSONDecodeError as err:
        raise CnnvitError(
            f"{path} is not valid JSON ({err.msg}): the run may be incomplete"
        ) from None
