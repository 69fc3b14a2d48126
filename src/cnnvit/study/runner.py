"""Running a study: every cell of the grid through `compare`, resumable, with one progress bar.

`run_study(config)` creates the study directory (or continues the one that holds this study),
takes its lock, lists the cells (grid.py) and trains each one that is not complete into
`cells/<id>/` with the ordinary `compare`. A cell whose run.json says complete (and whose
settings are the cell's) is skipped; any other cell folder found there (interrupted, failed,
half-written, or made with other settings) is moved aside to `cells/.incomplete-<id>-<time>/`,
never deleted. study.json is rewritten atomically after every cell, so an interrupted study
says which cells finished; running it again trains only the rest. Each cell's log (compare's
epoch lines and warnings) goes to `logs/<id>.log`; the terminal shows one bar over the whole
study, weighted by images trained, with the time left, and one line per finished cell. At the
end the study report is built from the directory alone (`cnnvit report STUDY_DIR` rebuilds it).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import (
    ADAPT_BOTH,
    FAMILIES,
    StudyConfig,
    build_config,
    format_family_rates,
    parse_family_rates,
)
from ..errors import CnnvitError, first_line
from ..evidence.stats import mcnemar_exact_p
from ..report.study_facts import STUDY_KIND, STUDY_SCHEMA_VERSION
from ..runs import load_run, read_json, write_json
from ..runs.files import DEFAULT_STUDIES_ROOT
from ..runs.lock import HOLDER_NAME, LOCK_NAME, RunLock
from .executors import CellJob, LocalExecutor, RayExecutor, make_executor, run_cell
from .grid import Cell, build_study_config, expand_grid, grid_differences, study_values


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def resume_values(study_dir: str | Path) -> dict[str, Any]:
    """The settings a study directory was made with, to continue it (`--resume DIR`)."""
    path = Path(study_dir).expanduser()
    record_path = path / "study.json"
    if not record_path.is_file():
        raise CnnvitError(f"no study.json in {path}: nothing to resume there")
    record = read_json(record_path)
    if not isinstance(record, dict) or record.get("kind") != STUDY_KIND:
        raise CnnvitError(f"{record_path} is not a cnnvit study record")
    return {**(record.get("config") or {}), "output": str(path)}


def _default_dir(config: StudyConfig) -> Path:
    last = config.compare.data.dataset.rstrip("/").split("/")[-1]  # hub id or folder: its name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", last)[:40]
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = DEFAULT_STUDIES_ROOT / f"{stamp}-{name}{'-quick' if config.quick else ''}"
    path, attempt = base, 1
    while path.exists():
        attempt += 1
        path = base.with_name(f"{base.name}-{attempt}")
    return path


def _grown(config: StudyConfig, saved: dict[str, Any]) -> StudyConfig:
    """`config` with the saved study's grid added (continuing a study never drops its cells)."""
    differences = grid_differences(saved, study_values(config))
    if differences:
        shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
        raise CnnvitError(
            f"{config.output} holds a study made with other settings ({shown}): continue it "
            "with `cnnvit study --resume DIR` or choose another --output-dir"
        )
    values = study_values(config)
    for key in ("seeds", "fractions", "pairs"):
        values[key] = [*dict.fromkeys([*(saved.get(key) or []), *values[key]])]
    return build_study_config(values)


def _open(config: StudyConfig) -> tuple[StudyConfig, Path, dict[str, Any] | None]:
    """The study directory (made if new), the config grown by a saved study, its record."""
    path = Path(config.output).expanduser() if config.output else _default_dir(config)
    config = build_study_config({**study_values(config), "output": str(path)})
    saved = None
    if (path / "study.json").is_file():
        saved = read_json(path / "study.json")
        if not isinstance(saved, dict) or saved.get("kind") != STUDY_KIND:
            raise CnnvitError(f"{path}/study.json is not a cnnvit study record")
        config = _grown(config, saved.get("config") or {})
    elif path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise CnnvitError(f"{path} exists and holds no study: choose another --output-dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CnnvitError(f"cannot create study directory {path}: {err.strerror}") from None
    return config, path, saved


class StudyRecord:
    """study.json: the grid, each cell's status, run path and wall time; saved on every change."""

    def __init__(
        self, path: Path, config: StudyConfig, cells: list[Cell], n_split: int,
        saved: dict[str, Any] | None,
    ) -> None:  # fmt: skip
        self.path = path
        old = saved or {}
        entries = dict(old.get("cells") or {})
        for cell in cells:
            entry = entries.get(cell.id, {})
            entries[cell.id] = {
                "pair": cell.pair.name, "cnn": cell.pair.cnn, "vit": cell.pair.vit,
                "fraction": cell.fraction, "seed": cell.seed, "epochs": cell.epochs,
                "n_train": cell.n_train, "path": f"cells/{cell.id}",
                "status": entry.get("status", "pending"),
                "wall_seconds": entry.get("wall_seconds"), "error": entry.get("error"),
                "attempts": entry.get("attempts", 0), "set_aside": entry.get("set_aside", []),
            }  # fmt: skip
        pairs = {c.pair.name: {"name": c.pair.name, "cnn": c.pair.cnn, "vit": c.pair.vit}
                 for c in cells}  # fmt: skip
        timings = dict(old.get("timings") or {})
        self.session = {"started": _now(), "wall_seconds": 0.0, "cells_trained": 0}
        timings["sessions"] = [*timings.get("sessions", []), self.session]
        self.started = time.perf_counter()
        self.record: dict[str, Any] = {
            "schema_version": STUDY_SCHEMA_VERSION,
            "kind": STUDY_KIND,
            "status": "running",
            "error": None,
            "created": old.get("created", _now()),
            "updated": _now(),
            "config": study_values(config),
            "grid": {
                "pairs": list(pairs.values()),
                "fractions": list(config.fractions),
                "seeds": list(config.seeds),
                "split_seed": config.compare.data.split_seed,
                "budget": config.budget,
                "train_split_images": n_split,
            },
            "cells": entries,
            "timings": timings,
        }
        self.save()

    def entry(self, cell: Cell) -> dict[str, Any]:
        return self.record["cells"][cell.id]

    def save(self) -> None:
        now = time.perf_counter()
        self.session["wall_seconds"] = now - self.started
        sessions = self.record["timings"]["sessions"]
        self.record["timings"]["wall_seconds"] = sum(s["wall_seconds"] for s in sessions)
        self.record["updated"] = _now()
        write_json(self.path / "study.json", self.record)

    def tuned(self, cell: Cell, rates: str) -> None:
        """Record the rates a pair's tuning cell chose, which its other cells reuse."""
        chosen = parse_family_rates(rates)
        self.record["grid"].setdefault("tuning", {})[cell.pair.name] = {"cell": cell.id, **chosen}
        self.save()

    def cell_state(self, cell: Cell, **changes: Any) -> None:
        self.entry(cell).update(changes)
        self.save()

    def finish(self, status: str, error: str | None = None) -> None:
        self.record["status"], self.record["error"] = status, error
        self.save()


def _expected_config(config: StudyConfig, settings: dict[str, Any]) -> dict[str, Any]:
    values = build_config({**config.compare.to_dict(), **settings}).to_dict()
    values.pop("output", None)
    return values


def tuning_cells(config: StudyConfig, cells: list[Cell]) -> dict[str, Cell]:
    """Under --lr auto, each pair's cell that tunes the rates (its largest training fraction,
    first seed); every other cell of the pair reuses them. Empty when the rate is fixed."""
    if config.compare.train.lr != "auto":
        return {}
    chosen: dict[str, Cell] = {}
    for cell in cells:
        best = chosen.get(cell.pair.name)
        if best is None or (cell.fraction, -cell.seed) > (best.fraction, -best.seed):
            chosen[cell.pair.name] = cell
    return chosen


def tuned_rates(run: Any) -> str:
    """The per-family --lr a tuning cell's run chose ("cnn=0.002,vit=0.0005")."""
    rates = {f: float(run.models[f].results["tuning"]["chosen_lr"]) for f in FAMILIES}
    return format_family_rates(rates)


def _finished_run(config: StudyConfig, settings: dict[str, Any], cell_dir: Path) -> tuple[Any, str]:
    """(the cell's complete run, "") or (None, why the folder cannot count as this cell)."""
    try:
        run = load_run(cell_dir)
    except CnnvitError as err:
        return None, str(err)
    if run.status != "complete":
        return None, f"its run is {run.status}"
    recorded = run.config.to_dict()
    recorded.pop("output", None)
    if recorded != _expected_config(config, settings):
        return None, "it was made with other settings"
    return run, ""


def _set_aside(cells_dir: Path, cell: Cell) -> Path:
    """Move an unusable cell folder to cells/.incomplete-<id>-<time>/ (never delete work)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = cells_dir / f".incomplete-{cell.id}-{stamp}"
    attempt = 1
    while target.exists():
        attempt += 1
        target = cells_dir / f".incomplete-{cell.id}-{stamp}-{attempt}"
    (cells_dir / cell.id).rename(target)
    return target


def _summary(run: Any) -> str:
    """One line on a finished cell: both accuracies and the cell's exact McNemar test."""
    comparison = run.comparison or {}
    acc = {f: run.models[f].test.get("accuracy") for f in FAMILIES}
    text = f"CNN {acc['cnn']:.1%}, ViT {acc['vit']:.1%}"
    if comparison.get("only_cnn_correct") is not None:
        p = mcnemar_exact_p(comparison["only_cnn_correct"], comparison["only_vit_correct"])
        text += f" (exact McNemar p = {p:.3g})"
    return text


def _progress(total: float) -> Any:
    """A bar over the study's images trained, with the time left; drawn only on a terminal."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total, unit="img", unit_scale=True, desc="study", file=sys.stderr,
        disable=not sys.stderr.isatty(), dynamic_ncols=True,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} images "
        "[{elapsed}<{remaining}]",
    )  # fmt: skip


class _Progress:
    """The study's bar, moved between cells by the current cell's finished epochs.

    A daemon thread reads the running cell's run.json (rewritten after every epoch) every two
    seconds, so the bar and its estimate of the time left move during a cell, not only after.
    """

    def __init__(self, cells: list[Cell]) -> None:
        self.bar = _progress(sum(c.images_trained for c in cells))
        self.done = 0  # images of finished cells
        self.cell: Cell | None = None
        self.cell_dir: Path | None = None
        self._stop = threading.Event()
        if not self.bar.disable:
            threading.Thread(target=self._watch, daemon=True).start()

    def start(self, cell: Cell, cell_dir: Path) -> None:
        self.cell, self.cell_dir = cell, cell_dir
        self.bar.set_postfix_str(cell.id)

    def _watch(self) -> None:
        while not self._stop.wait(2.0):
            cell, cell_dir = self.cell, self.cell_dir
            if cell is None or cell_dir is None or not (cell_dir / "run.json").is_file():
                continue
            try:
                models = load_run(cell_dir).models.values()
            except CnnvitError:  # between writes, or not yet readable: try again later
                continue
            epochs = sum(len(m.history) for m in models)
            self.bar.n = self.done + min(epochs * cell.n_train, cell.images_trained)
            self.bar.refresh()

    def finish_cell(self, cell: Cell, line: str) -> None:
        self.cell = None
        self.done += cell.images_trained
        self.bar.n = self.done
        self.bar.refresh()
        if self.bar.disable:
            _say(line)
        else:
            self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self._stop.set()
        self.bar.close()


def run_study(config: StudyConfig) -> Path:
    """Train every cell of the study that is not complete; returns the study directory."""
    if config.compare.train.adapt == ADAPT_BOTH:  # before anything is created
        raise CnnvitError(
            f"--adapt {ADAPT_BOTH} is not supported in study yet: give the study one mode "
            "(probe, head or full), or compare both modes with `cnnvit compare`"
        )
    # An unknown name or a bad resource count creates nothing.
    executor = make_executor(config.executor, config.cell_cpus, config.cell_gpus)
    existed = bool(config.output) and Path(config.output).expanduser().exists()
    config, study_dir, saved = _open(config)
    try:
        return _run_locked(config, study_dir, saved, executor)
    except BaseException:
        if not existed:  # a folder this call made, failed before any record: leave none behind
            _remove_if_only_lock(study_dir)
        raise


def _remove_if_only_lock(study_dir: Path) -> None:
    """Remove a study directory that holds nothing but its lock files."""
    entries = list(study_dir.iterdir()) if study_dir.is_dir() else []
    if entries and not all(e.name in (LOCK_NAME, HOLDER_NAME) for e in entries):
        return
    for entry in entries:
        entry.unlink(missing_ok=True)
    study_dir.rmdir()


class _CellScan:
    """Which cells are left and what each trains with. Under --lr auto each pair's tuning cell
    (`tuners`) runs first and chooses both families' rates on validation; the pair's other
    cells then train at those rates (`--lr cnn=..,vit=..`, kept in `rates`)."""

    def __init__(
        self, config: StudyConfig, record: StudyRecord, study_dir: Path, tuners: dict[str, Cell]
    ) -> None:
        self.config, self.record, self.study_dir, self.tuners = config, record, study_dir, tuners
        self.cells_dir, self.logs_dir = study_dir / "cells", study_dir / "logs"
        self.rates: dict[str, str] = {}

    def settings(self, cell: Cell) -> dict[str, Any]:
        """What the cell changes from the study's recipe, its pair's tuned rates included."""
        reused = cell.pair.name in self.rates and self.tuners[cell.pair.name] is not cell
        return {**cell.settings(), **({"lr": self.rates[cell.pair.name]} if reused else {})}

    def tuned(self, cell: Cell, run: Any) -> None:
        """Take a finished tuning cell's rates for its pair (other cells: nothing)."""
        if self.tuners.get(cell.pair.name) is cell:
            self.rates[cell.pair.name] = tuned_rates(run)
            self.record.tuned(cell, self.rates[cell.pair.name])

    def pending(self, batch: list[Cell]) -> list[Cell]:
        """The cells of `batch` left to train; a complete one is recorded, an unusable folder
        set aside; a finished tuning cell gives its pair's rates."""
        todo = []
        for cell in batch:
            cell_dir = self.cells_dir / cell.id
            run, why = (_finished_run(self.config, self.settings(cell), cell_dir)
                        if cell_dir.exists() else (None, ""))  # fmt: skip
            if run is not None:
                self.record.cell_state(cell, status="complete",
                                       n_train=run.dataset["splits"]["train"])  # fmt: skip
                self.tuned(cell, run)
                continue
            if cell_dir.exists():
                aside = _set_aside(self.cells_dir, cell)
                _say(f"cnnvit: cell {cell.id} was not complete ({why}); moved it to {aside}")
                self.record.entry(cell)["set_aside"].append(str(aside.relative_to(self.study_dir)))
            todo.append(cell)
        return todo

    def jobs(self, batch: list[Cell]) -> list[CellJob]:
        """The cells of `batch` as picklable jobs for the executor."""
        return [
            CellJob(cell.id, self.config.compare.to_dict(), self.settings(cell),
                    str((self.cells_dir / cell.id).resolve()),
                    str((self.logs_dir / f"{cell.id}.log").resolve()), os.getcwd())
            for cell in batch
        ]  # fmt: skip


def _run_locked(
    config: StudyConfig,
    study_dir: Path,
    saved: dict[str, Any] | None,
    executor: LocalExecutor | RayExecutor,
) -> Path:
    """`run_study` once the directory exists: lock it, train what is left, report."""
    from ..data import prepare_data
    from ..report import build_report

    with RunLock(study_dir) as lock:
        if (stale := lock.stale_message()) is not None:
            _say(f"cnnvit: {stale}")
        data = prepare_data(config.compare.data)  # the full training split (fraction 1)
        n_split = len(data.splits["train"].labels)
        cells = expand_grid(config, n_split)
        record = StudyRecord(study_dir, config, cells, n_split, saved)
        cells_dir, logs_dir = study_dir / "cells", study_dir / "logs"
        cells_dir.mkdir(exist_ok=True)
        logs_dir.mkdir(exist_ok=True)
        scan = _CellScan(config, record, study_dir, tuning_cells(config, cells))
        tuners, pending = scan.tuners, scan.pending
        first = pending(list(tuners.values()))
        waiting = [c for c in cells if c.pair.name in tuners and c.pair.name not in scan.rates
                   and tuners[c.pair.name] is not c]  # fmt: skip
        rest = pending([c for c in cells if c not in tuners.values() and c not in waiting])
        done = len(cells) - len(first) - len(rest) - len(waiting)
        _say(
            f"study {study_dir}: {len(cells)} cells ({done} already complete), "
            f"{len(config.seeds)} seeds x {len(config.fractions)} fractions x "
            f"{len({c.pair.name for c in cells})} pair(s); logs in {logs_dir}"
            + (f"; rates tuned once per pair, in {', '.join(c.id for c in tuners.values())}"
               if tuners else "")
        )  # fmt: skip
        bar = _Progress(first + rest + waiting)
        # The executor (executors.py) trains the cells, here or as Ray tasks, and reports each
        # one; in_flight holds the cells handed out and not yet finished.
        by_id = {cell.id: cell for cell in cells}
        in_flight: dict[str, Cell] = {}

        def started(cell_id: str) -> None:
            cell = in_flight[cell_id] = by_id[cell_id]
            record.cell_state(cell, status="running", attempts=record.entry(cell)["attempts"] + 1,
                              error=None)  # fmt: skip
            bar.start(cell, cells_dir / cell.id)

        def finished(
            cell_id: str, run_dir: str | None, seconds: float, error: BaseException | None
        ) -> None:
            cell = in_flight.pop(cell_id)
            if error is not None:
                reason = first_line(error)
                record.cell_state(cell, status="failed", error=reason)
                _say(f"cnnvit: cell {cell.id} failed: {reason} (log: {logs_dir}/{cell.id}.log)")
                return
            run = load_run(run_dir)
            scan.tuned(cell, run)
            record.session["cells_trained"] += 1
            record.cell_state(cell, status="complete", wall_seconds=seconds,
                              n_train=run.dataset["splits"]["train"])  # fmt: skip
            index = record.session["cells_trained"]
            bar.finish_cell(cell, f"[{index}/{total}] {cell.id}: {_summary(run)}, {seconds:.0f} s")

        total = len(first) + len(rest) + len(waiting)
        try:
            executor.run(scan.jobs(first), run_cell, started, finished)
            later = pending(waiting)  # their pair's rates are known now
            for cell in set(waiting) - set(later):
                bar.finish_cell(cell, f"{cell.id}: already complete at its pair's tuned rates")
            order = {cell.id: i for i, cell in enumerate(cells)}
            executor.run(scan.jobs(sorted(rest + later, key=lambda c: order[c.id])), run_cell,
                         started, finished)  # fmt: skip
        except BaseException as err:
            status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            reason = first_line(err)
            for current in in_flight.values():  # a failed cell was recorded by finished()
                record.cell_state(current, status=status, error=reason)
            record.finish(status, reason if status == "failed" else "interrupted by the user")
            bar.close()
            _say(
                f"cnnvit: study {status}; finished cells are kept in {cells_dir}: run the same "
                f"command again (or `cnnvit study --resume {study_dir}`) to train the rest"
            )
            raise
        bar.close()
        record.finish("complete")
        build_report(study_dir)  # reads the study directory only
    return study_dir


def study(
    config: StudyConfig | None = None, *, resume: str | Path | None = None, **settings: Any
) -> Path:
    """Run a study (or continue one); returns the study directory.

    `settings` are the flags' names: study keys (`seeds=[0, 1, 2]`, `fractions="10%,50%,100%"`,
    `pairs=["micro"]`, `quick=True`, `output="dir"`) and any compare key (`dataset=...`,
    `epochs=...`). `resume` continues the study in that directory with its saved settings
    (settings given here change them; a larger grid is added to it).
    """
    base = study_values(config) if config is not None else {}
    if resume is not None:
        base = {**base, **resume_values(resume)}
    if settings or resume is not None or config is None:
        config = build_study_config({**base, **settings})
    return run_study(config)
