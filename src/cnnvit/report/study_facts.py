"""Study facts: a study directory read once into a typed object, the way facts.py reads a run.

`load_study(path)` reads `study.json` (its format is documented in `cnnvit.study`) and each
cell's run directory through `cnnvit.runs.load_run` only; a cell counts as finished when its own
run.json says complete, whatever study.json last recorded. The evidence table is built by the
engine's `cell_from_run`, so a study and a single run turn the same run into the same cell.
This module sits in the report stage, below the study runner that writes the directory, so the
report never imports the code that trains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..config import flatten
from ..errors import CnnvitError
from ..evidence import CellRecord, PriorSpread, Verdict, cell_from_run, judge_claims
from ..runs import Run, load_run
from ..runs.files import DEFAULT_STUDIES_ROOT, read_record

STUDY_SCHEMA_VERSION = 1
STUDY_KIND = "cnnvit-study"
STUDY_STATUSES = ("running", "complete", "failed", "interrupted")
CELL_STATUSES = ("pending", "running", "complete", "failed", "interrupted")


@dataclass(frozen=True)
class StudyCell:
    """One cell as study.json lists it, with its run when that run finished."""

    id: str
    pair: str
    cnn: str
    vit: str
    fraction: float
    seed: int
    epochs: int
    n_train: int
    status: str  # study.json's record of the cell
    path: Path
    wall_seconds: float | None
    run: Run | None = field(default=None, repr=False)  # loaded when its run.json is complete
    problem: str = ""  # why a cell recorded as complete could not be used

    @property
    def complete(self) -> bool:
        return self.run is not None


@dataclass(frozen=True)
class Study:
    """A loaded study directory."""

    path: Path
    status: str
    error: str | None
    config: dict[str, Any]
    grid: dict[str, Any]
    cells: list[StudyCell]
    timings: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)

    @property
    def complete_cells(self) -> list[StudyCell]:
        return [c for c in self.cells if c.complete]

    @cached_property
    def records(self) -> list[CellRecord]:
        """The evidence table: one engine cell per finished run, in grid order."""
        return [cell_from_run(c.run) for c in self.complete_cells]

    @cached_property
    def verdicts(self) -> list[Verdict]:
        """Every declared claim judged over the finished cells (Holm over all of them)."""
        return judge_claims(self.records)

    @property
    def first_run(self) -> Run | None:
        done = self.complete_cells
        return done[0].run if done else None

    def test_ids_agree(self) -> bool:
        """Whether every finished cell was tested on the same images (it should be)."""
        ids = [c.run.models["cnn"].predictions().ids for c in self.complete_cells]
        return all(np.array_equal(ids[0], other) for other in ids[1:])


def _cell(study_dir: Path, key: str, entry: dict[str, Any]) -> StudyCell:
    path = study_dir / str(entry.get("path", f"cells/{key}"))
    run, problem = None, ""
    if (path / "run.json").is_file():
        try:
            loaded = load_run(path)
        except CnnvitError as err:
            problem = str(err)
        else:
            if loaded.status == "complete":
                run = loaded
            elif entry.get("status") == "complete":
                problem = f"its run.json says {loaded.status}"
    elif entry.get("status") == "complete":
        problem = f"{path} has no run.json"
    return StudyCell(
        id=key,
        pair=str(entry.get("pair", "")),
        cnn=str(entry.get("cnn", "")),
        vit=str(entry.get("vit", "")),
        fraction=float(entry.get("fraction", 0.0)),
        seed=int(entry.get("seed", 0)),
        epochs=int(entry.get("epochs", 0)),
        n_train=int(entry.get("n_train", 0)),
        status="complete" if run is not None else str(entry.get("status", "pending")),
        path=path,
        wall_seconds=entry.get("wall_seconds"),
        run=run,
        problem=problem,
    )


def load_study(path: str | Path) -> Study:
    """Read and check a study directory; one-line `CnnvitError` for anything unusable."""
    root = Path(path).expanduser()
    record_path = root / "study.json"
    if not record_path.is_file():
        raise CnnvitError(f"no study.json in {root}: is this a cnnvit study directory?")
    record, version = read_record(root, "study.json", STUDY_KIND, STUDY_SCHEMA_VERSION, "study")
    if record.get("status") not in STUDY_STATUSES:
        raise CnnvitError(f"{record_path} has an unknown status {record.get('status')!r}")
    cells = record.get("cells")
    if not isinstance(cells, dict):
        raise CnnvitError(f"{record_path} lists no cells: the study record is damaged")
    return Study(
        path=root,
        status=str(record["status"]),
        error=record.get("error"),
        config=dict(record.get("config") or {}),
        grid=dict(record.get("grid") or {}),
        cells=[_cell(root, key, entry) for key, entry in cells.items()],
        timings=dict(record.get("timings") or {}),
        raw=record,
    )


def earlier_spreads(run: Run, root: Path = DEFAULT_STUDIES_ROOT) -> dict[str, PriorSpread]:
    """The SD over seeds that the latest finished study under `root` of the same pair, dataset
    and image size measured for each claim: what a one-run power estimate can stand on. Empty
    when there is none (or the run itself has several seeds' worth of nothing to borrow)."""
    config = run.config
    names = {f: run.models[f].name for f in ("cnn", "vit") if f in run.models}
    found: list[tuple[str, Path]] = []
    for record_path in sorted(root.glob("*/study.json")) if root.is_dir() else []:
        try:
            record = json.loads(record_path.read_text())
            compare = flatten(record["config"]["compare"])
            pairs = record["grid"]["pairs"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a readable study: it has nothing to lend
        same_data = (compare.get("dataset"), compare.get("image_size")) == (
            config.data.dataset, config.models.image_size)  # fmt: skip
        same_pair = any(p.get("cnn") == names.get("cnn") and p.get("vit") == names.get("vit")
                        for p in pairs)  # fmt: skip
        if record.get("status") != "running" and same_data and same_pair:
            found.append((str(record.get("updated", "")), record_path.parent))
    for _, path in sorted(found, reverse=True):
        spreads = _study_spreads(str(path), (path / "study.json").stat().st_mtime_ns)
        if spreads:
            return dict(spreads)
    return {}


@lru_cache(maxsize=32)
def _study_spreads(path: str, _mtime_ns: int) -> dict[str, PriorSpread]:
    """A finished study's per-claim seed spreads, judged once per version of its study.json
    (a process that builds many run reports, such as a study, loads each study once)."""
    try:
        verdicts = load_study(path).verdicts
    except CnnvitError:
        return {}
    return {
        v.claim_id: PriorSpread(v.evidence.spread, v.evidence.n, f"the study {path}")
        for v in verdicts
        if v.evidence is not None and v.evidence.spread is not None
        and v.claim is not None and v.claim.power_estimate
    }  # fmt: skip
