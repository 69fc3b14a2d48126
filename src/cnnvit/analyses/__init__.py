"""Analyses: probes over a finished run, for the claims that clean accuracy cannot settle.

Each probe is one module with one entry point, `run(context) -> dict`, registered in `PROBES`.
`run_probes` builds one `ProbeContext` from a loaded run (or takes one built in memory), runs the
chosen probes one at a time, and saves each result as `RUN/analyses/<probe>.json` beside its
figures `RUN/analyses/<probe>-*.png`. Probes are independent: one that raises is recorded with
its one-line error in `RUN/analyses/<probe>.failed.json`, an earlier good result of it is left
in place, and the other probes still run and save.

Every result has the same outer shape: `probe`, `schema`, `status`, `seconds`, `seed`,
`settings` (the subset sizes and constants it used), `models` (per family), `claims`
({metric name: {"cnn": value, "vit": value}}, the numbers the evidence engine reads) and
`figures` (file names in the same folder).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import CnnvitError
from ..runs import write_json
from . import calibration, explanations, locality, longrange, robustness
from .context import ProbeContext, ProbedModel, context_from_run

SCHEMA_VERSION = 1

Probe = Callable[[ProbeContext], dict[str, Any]]

# The one table of probes, in the order they run (cheapest and most used first).
PROBES: dict[str, Probe] = {
    "calibration": calibration.run,
    "robustness": robustness.run,
    "locality": locality.run,
    "explanations": explanations.run,
    "longrange": longrange.run,
}

# Claim metrics each probe writes under "claims" ({metric: {family: value}}), for the evidence
# engine. Direction: higher is better for accuracies, robustness and insertion AUC; lower is
# better for ECE, NLL, Brier, patch_shuffle_drop and deletion AUC; distances and radii are
# fractions of the image side (larger: more global).
CLAIM_METRICS: dict[str, tuple[str, ...]] = {
    "calibration": ("ece", "ece_before_scaling", "nll", "brier"),
    "robustness": (
        "relative_robustness",
        "mean_corruption_accuracy",
        "patch_shuffle_drop",
        "clean_accuracy",
    ),
    "locality": ("erf_radius50_fraction", "erf_radius50_fraction_first", "mean_attention_distance"),
    "explanations": (
        "deletion_auc",
        "insertion_auc",
        "deletion_auc_random",
        "insertion_auc_random",
    ),
    "longrange": ("long_range_accuracy",),
}


@dataclass
class ProbeOutcome:
    """How one probe went: its result (saved as JSON) or its one-line error."""

    name: str
    status: str  # ok | failed
    seconds: float
    path: Path | None = None  # the JSON written (result, or the .failed.json record)
    figures: list[str] = field(default_factory=list)
    error: str | None = None
    result: dict[str, Any] | None = None


def probe_names(names: list[str] | None) -> list[str]:
    """The probes to run, in table order; an unknown name is a one-line error."""
    if not names:
        return list(PROBES)
    unknown = [name for name in names if name not in PROBES]
    if unknown:
        raise CnnvitError(f"unknown probe '{unknown[0]}': choose from {', '.join(PROBES)}")
    return [name for name in PROBES if name in names]


def run_probes(
    run: Any,
    names: list[str] | None = None,
    seed: int = 0,
    output_dir: str | Path | None = None,
    max_test_images: int = 256,
    log: Callable[[str], None] | None = None,
    device: str = "auto",
) -> dict[str, ProbeOutcome]:
    """Run probes over a loaded run (or a ready `ProbeContext`), each on its own; save each.

    `output_dir` defaults to RUN/analyses; `device` is where the run's models are loaded.
    Returns one outcome per probe; a failed probe has status "failed" and `error` set, and did
    not stop the others. Building the context (loading models and data) is not isolated: a run
    that cannot be loaded is a one-line `CnnvitError` before any probe runs.
    """
    chosen = probe_names(names)
    log = log or (lambda line: None)
    if isinstance(run, ProbeContext):
        # A copy, so the caller's context keeps its folder (the logits cache stays shared).
        context = run if output_dir is None else replace(run, output_dir=Path(output_dir))
    else:
        context = context_from_run(
            run,
            seed=seed,
            max_test_images=max_test_images,
            device=device,
            output_dir=Path(output_dir) if output_dir is not None else None,
        )
    if context.output_dir is None:
        raise CnnvitError("run_probes needs an output_dir when given a ProbeContext without one")
    folder = Path(context.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    outcomes = {}
    for name in chosen:
        outcomes[name] = _run_one(name, context, folder)
        outcome = outcomes[name]
        state = "ok" if outcome.status == "ok" else f"FAILED: {outcome.error}"
        log(f"[analyses] {name}: {state} ({outcome.seconds:.1f} s)")
    return outcomes


def _run_one(name: str, context: ProbeContext, folder: Path) -> ProbeOutcome:
    start = time.perf_counter()
    try:
        body = PROBES[name](context)
    except Exception as err:  # noqa: BLE001 - one probe's failure must not stop the others
        seconds = time.perf_counter() - start
        first = str(err).splitlines()[0] if str(err) else ""
        error = f"{type(err).__name__}: {first}" if first else type(err).__name__
        record = {
            "probe": name,
            "schema": SCHEMA_VERSION,
            "status": "failed",
            "error": error,
            "seconds": seconds,
            "traceback": traceback.format_exc(limit=6),
        }
        path = folder / f"{name}.failed.json"
        write_json(path, record)
        return ProbeOutcome(name, "failed", seconds, path, error=error)
    seconds = time.perf_counter() - start
    result = {
        "probe": name,
        "schema": SCHEMA_VERSION,
        "status": "ok",
        "seconds": round(seconds, 3),
        "seed": context.seed,
        **body,
    }
    path = folder / f"{name}.json"
    write_json(path, result)
    (folder / f"{name}.failed.json").unlink(missing_ok=True)  # a stale failure no longer holds
    figures = [f for f in result.get("figures", []) if f]
    return ProbeOutcome(name, "ok", seconds, path, figures=figures, result=result)


__all__ = [
    "CLAIM_METRICS",
    "PROBES",
    "ProbeContext",
    "ProbeOutcome",
    "ProbedModel",
    "context_from_run",
    "probe_names",
    "run_probes",
]
