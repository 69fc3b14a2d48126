"""Reading a run directory: `load_run(path) -> Run`, the only way any stage reads a run.

The loader checks the format version, the config, and every file a complete model needs
(its save_pretrained folder and a readable predictions.npz whose arrays agree), and turns each
problem into one line naming the file and what to do. A partial run (failed or interrupted)
loads too: its complete models are usable and `Run.missing` says what is absent.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import FAMILIES, CompareConfig, build_config
from ..errors import CnnvitError, first_line
from .files import read_json, read_record
from .writer import MODEL_STATUSES, RUN_STATUSES, SCHEMA_VERSION

# --adapt probe,full: the linear probe's test predictions, beside the full fine-tune's.
PROBE_PREDICTIONS = "probe_predictions.npz"

if TYPE_CHECKING:
    from ..data import PreparedData
    from ..runtime import Runtime


@dataclass(frozen=True)
class Predictions:
    """One model's test predictions: logits (N, C) float32, labels (N,) and ids (N,) int64."""

    logits: np.ndarray
    labels: np.ndarray
    ids: np.ndarray

    @property
    def predicted(self) -> np.ndarray:
        return self.logits.argmax(1)

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels


def read_predictions(path: Path) -> Predictions:
    """Load and check a predictions.npz; one-line error if missing, truncated or inconsistent."""
    if not path.is_file():
        raise CnnvitError(f"{path} is missing: the run did not finish this model; re-run it")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in ("logits", "labels", "ids")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        reason = first_line(err)
        raise CnnvitError(f"{path} is damaged or truncated ({reason}): re-run this model") from None
    logits, labels, ids = arrays["logits"], arrays["labels"], arrays["ids"]
    if logits.ndim != 2 or labels.ndim != 1 or not len(logits) == len(labels) == len(ids):
        raise CnnvitError(
            f"{path} holds arrays of shapes {logits.shape}, {labels.shape}, {ids.shape} that do "
            "not agree: re-run this model"
        )
    return Predictions(logits.astype(np.float32), labels.astype(np.int64), ids.astype(np.int64))


@dataclass(frozen=True)
class ModelRecord:
    """One model of a run: where it is saved, its status and its results (run.json's block)."""

    family: str
    path: Path
    results: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.results.get("status", "pending"))

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def name(self) -> str:
        return str(self.results.get("name", self.family))

    @property
    def pretrained(self) -> bool:
        return bool(self.results.get("pretrained", False))

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.results.get("history") or [])

    @property
    def test(self) -> dict[str, Any]:
        return dict(self.results.get("test") or {})

    @property
    def efficiency(self) -> dict[str, Any]:
        return dict(self.results.get("efficiency") or {})

    @property
    def training(self) -> dict[str, Any]:
        return dict(self.results.get("training") or {})

    @cached_property
    def _predictions(self) -> Predictions:
        return read_predictions(self.path / "predictions.npz")

    def predictions(self) -> Predictions:
        """The test predictions (checked when the run was loaded)."""
        return self._predictions

    def probe_predictions(self) -> Predictions | None:
        """Under --adapt probe,full, the linear probe's test predictions (None otherwise)."""
        path = self.path / PROBE_PREDICTIONS
        return read_predictions(path) if path.is_file() else None

    def load(self, device: str = "cpu", attention: str | None = None) -> tuple[Any, Any]:
        """The saved model (eval mode, on `device`) and its image processor."""
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        kwargs = {"attn_implementation": attention} if attention and self.family == "vit" else {}
        try:
            model = AutoModelForImageClassification.from_pretrained(self.path, **kwargs)
            processor = AutoImageProcessor.from_pretrained(self.path)
        except (OSError, ValueError) as err:
            first = str(err).splitlines()[0]
            raise CnnvitError(f"cannot load the model in {self.path}: {first}") from None
        return model.to(device).eval(), processor


@dataclass(frozen=True)
class Run:
    """A loaded run directory (format version 1; see the package docstring)."""

    path: Path
    schema_version: int
    status: str
    error: str | None
    config: CompareConfig
    resolved: dict[str, Any]
    environment: dict[str, Any]
    dataset: dict[str, Any]
    timings: dict[str, Any]
    models: dict[str, ModelRecord]
    comparison: dict[str, Any] | None
    manifest: dict[str, Any] = field(repr=False)
    raw: dict[str, Any] = field(repr=False)

    @cached_property
    def analyses(self) -> dict[str, dict[str, Any]]:
        """Probe results saved in RUN/analyses (name -> its JSON), the successful ones."""
        folder = self.path / "analyses"
        found: dict[str, dict[str, Any]] = {}
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            if path.name.endswith(".failed.json"):
                continue
            try:
                result = read_json(path)
            except CnnvitError:
                continue  # a damaged probe file is a missing probe, not an unreadable run
            if isinstance(result, dict) and result.get("status") == "ok":
                found[path.stem] = result
        return found

    @property
    def probe_claims(self) -> dict[str, dict[str, float]]:
        """{claim metric: {"cnn": value, "vit": value}} from every saved probe."""
        claims: dict[str, dict[str, float]] = {}
        for result in self.analyses.values():
            claims.update(result.get("claims") or {})
        return claims

    @property
    def complete_models(self) -> dict[str, ModelRecord]:
        return {f: m for f, m in self.models.items() if m.complete}

    @property
    def missing(self) -> list[str]:
        """What a partial run lacks, one phrase each (empty for a complete run)."""
        out = [
            f"the {f.upper() if f == 'cnn' else 'ViT'} ({m.name}) is {m.status}"
            for f, m in self.models.items()
            if not m.complete
        ]
        if self.comparison is None and not out:
            out.append("the paired comparison")
        return out

    def runtime(self, device: str = "auto", precision: str | None = None) -> Runtime:
        """A runtime for re-running this run's models here (its precision unless told)."""
        from ..runtime import resolve_runtime

        wanted = precision or self.config.train.precision
        return resolve_runtime(device, wanted, "eager")

    def prepare_data(self) -> PreparedData:
        """The run's dataset with exactly the run's splits (checked against split.json)."""
        from ..data import prepare_data

        data = prepare_data(self.config.data)
        for name, split in data.splits.items():
            if split.ids.tolist() != list(self.manifest.get("ids", {}).get(name, [])):
                raise CnnvitError(
                    f"the {name} split of '{data.name}' no longer matches {self.path}/split.json "
                    "(the dataset changed?): evaluate on the dataset the run used"
                )
        return data


def load_run(path: str | Path) -> Run:
    """Read and check a run directory; one-line `CnnvitError` for anything unusable."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise CnnvitError(f"run directory {root} does not exist")
    record_path = root / "run.json"
    if not record_path.is_file():
        if (root / "metrics.json").is_file():
            raise CnnvitError(
                f"{root} was written by an older cnnvit (no run.json): re-run `cnnvit compare`"
            )
        raise CnnvitError(f"no run.json in {root}: is this a cnnvit run directory?")
    record, version = read_record(root, "run.json", "cnnvit-run", SCHEMA_VERSION, "run")
    status = record.get("status")
    if status not in RUN_STATUSES:
        raise CnnvitError(f"{record_path} has an unknown status {status!r}")
    try:
        config = build_config(record.get("config") or {})
    except CnnvitError as err:
        raise CnnvitError(f"{record_path} holds a config this cnnvit cannot read: {err}") from None
    manifest = read_json(root / "split.json") if (root / "split.json").is_file() else {}
    models: dict[str, ModelRecord] = {}
    for family, block in (record.get("models") or {}).items():
        if family not in FAMILIES or not isinstance(block, dict):
            raise CnnvitError(f"{record_path} has an unknown model entry '{family}'")
        if block.get("status", "pending") not in MODEL_STATUSES:
            raise CnnvitError(f"{record_path}: model '{family}' has an unknown status")
        models[family] = ModelRecord(family, root / family, block)
    for model in models.values():
        if model.complete:
            if not (model.path / "config.json").is_file():
                raise CnnvitError(
                    f"{model.path} has no saved model (config.json missing): re-run this model"
                )
            model.predictions()  # read and checked now, so a damaged file fails at load
    if status == "complete" and not manifest:
        raise CnnvitError(f"{root}/split.json is missing: the run's split cannot be checked")
    return Run(
        path=root,
        schema_version=version,
        status=status,
        error=record.get("error"),
        config=config,
        resolved=dict(record.get("resolved") or {}),
        environment=dict(record.get("environment") or {}),
        dataset=dict(record.get("dataset") or {}),
        timings=dict(record.get("timings") or {}),
        models=models,
        comparison=record.get("comparison"),
        manifest=manifest,
        raw=record,
    )
