"""Writing a run directory as it is produced, so that whatever finished is on disk.

`RunWriter` keeps `run.json` current: it is rewritten (atomically) when the run starts, after
every epoch, when a model finishes and when the run ends. A model counts as finished only once
its save_pretrained folder and its predictions are in place: the folder is written under a
temporary name and renamed, then the predictions are written, and only then does run.json say
"complete". A reader therefore never sees a model marked complete whose files are half-written.

Under several processes (torchrun, accelerate launch) every process keeps the same record, but
only the main one writes (`write=True`); the others' writers keep it in memory only.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FAMILIES
from .files import write_atomic, write_json

SCHEMA_VERSION = 1
RUN_STATUSES = ("running", "complete", "failed", "interrupted")
MODEL_STATUSES = ("pending", "training", "complete", "failed", "interrupted")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def predictions_bytes(logits: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> bytes:
    """predictions.npz content: float32 logits (N, C), int64 labels (N,), int64 ids (N,)."""
    if not len(logits) == len(labels) == len(ids):
        lengths = f"{len(logits)}, {len(labels)}, {len(ids)}"
        raise ValueError(f"predictions disagree in length: {lengths}")
    buffer = io.BytesIO()
    np.savez(
        buffer,
        logits=np.asarray(logits, dtype=np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        ids=np.asarray(ids, dtype=np.int64),
    )
    return buffer.getvalue()


class RunWriter:
    """Keeps one run directory's run.json and files up to date while the run is produced."""

    def __init__(
        self,
        path: Path,
        config: dict[str, Any],
        resolved: dict[str, Any],
        environment: dict[str, Any],
        dataset: dict[str, Any],
        manifest: dict[str, Any],
        models: dict[str, dict[str, Any]],
        write: bool = True,
    ) -> None:
        self.path = path
        self.write = write  # False on every process but the main one
        if write:
            write_json(path / "split.json", manifest)
        self.record: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "kind": "cnnvit-run",
            "status": "running",
            "error": None,
            "created": _now(),
            "updated": _now(),
            "config": config,
            "resolved": resolved,
            "environment": environment,
            "dataset": dataset,
            "timings": {},
            "models": {
                family: {"status": "pending", "history": [], **info}
                for family, info in models.items()
            },
            "comparison": None,
        }
        self.save()

    @classmethod
    def reopen(cls, path: Path, record: dict[str, Any], write: bool = True) -> RunWriter:
        """Continue writing an existing run (resume): its record, status back to running."""
        writer = cls.__new__(cls)
        writer.path, writer.write = path, write
        writer.record = record
        record.update(status="running", error=None)
        writer.save()
        return writer

    def save(self) -> None:
        """Write run.json as it stands now."""
        self.record["updated"] = _now()
        if self.write:
            write_json(self.path / "run.json", self.record)

    def model(self, family: str) -> dict[str, Any]:
        return self.record["models"][family]

    def update(self, section: str, values: dict[str, Any]) -> None:
        """Merge `values` into a top-level section (timings, dataset, resolved) and save."""
        self.record.setdefault(section, {}).update(values)
        self.save()

    def model_started(self, family: str, **info: Any) -> None:
        entry = self.model(family)
        entry.update(info, status="training", history=[])
        self.save()

    def update_model(self, family: str, **values: Any) -> None:
        """Record facts about a model before it finishes (its tuning, its resolved recipe)."""
        self.model(family).update(values)
        self.save()

    def epoch_done(self, family: str, row: dict[str, Any]) -> None:
        """Record one finished epoch, so an interrupted run still shows its curve so far."""
        self.model(family)["history"].append(dict(row))
        self.save()

    def model_finished(
        self,
        family: str,
        results: dict[str, Any],
        save_model: Callable[[Path], None],
        logits: np.ndarray,
        labels: np.ndarray,
        ids: np.ndarray,
    ) -> None:
        """Save the model folder and predictions, then mark the model complete."""
        if self.write:
            self._save_model_files(family, save_model, logits, labels, ids)
        entry = self.model(family)
        entry.update(results)
        entry["status"] = "complete"
        self.save()

    def _save_model_files(
        self,
        family: str,
        save_model: Callable[[Path], None],
        logits: np.ndarray,
        labels: np.ndarray,
        ids: np.ndarray,
    ) -> None:
        folder = self.path / family
        temp = self.path / f".{family}.partial"
        shutil.rmtree(temp, ignore_errors=True)
        save_model(temp)
        write_atomic(temp / "predictions.npz", predictions_bytes(logits, labels, ids))
        if folder.exists():  # a folder left by an earlier failed attempt at this model
            shutil.rmtree(folder)
        os.replace(temp, folder)

    def finished_models(self) -> list[str]:
        return [f for f, m in self.record["models"].items() if m.get("status") == "complete"]

    def has_finished_work(self) -> bool:
        """True once anything worth keeping exists: a complete model, or a finished epoch
        (checkpointed, so the run can be resumed from it)."""
        models = self.record["models"].values()
        return bool(self.finished_models()) or any(m.get("history") for m in models)

    def finish(self, comparison: dict[str, Any] | None, timings: dict[str, Any]) -> None:
        self.record["comparison"] = comparison
        self.record["timings"].update(timings)
        self.record["status"] = "complete"
        self.save()

    def abort(self, status: str, error: str) -> None:
        """Mark the run failed or interrupted; models that were training say so too."""
        assert status in ("failed", "interrupted")
        for entry in self.record["models"].values():
            if entry.get("status") == "training":
                entry["status"] = status
        self.record["status"] = status
        self.record["error"] = error
        self.save()
        for family in FAMILIES if self.write else ():  # unfinished folders hold nothing finished
            shutil.rmtree(self.path / f".{family}.partial", ignore_errors=True)
