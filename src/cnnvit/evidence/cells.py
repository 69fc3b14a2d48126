"""Cells: the one table the verdict engine reads, one `CellRecord` per finished run.

A cell holds both models' metrics under the names the claims use (`claims` gives their units)
and the paired test counts McNemar needs. `cell_from_run` builds one from a run loaded with
`cnnvit.runs.load_run` (duck-typed, so this stage does not import the loader's types): test
accuracy and macro-F1, parameters, FLOPs, the timings, and two figures derived here from the
validation history so that every report derives them the same way: `epochs_to_95` (first epoch
reaching 95% of the model's own best validation accuracy) and `overfit_gap` (final-epoch train
minus validation accuracy, in points). Probe metrics (`analyses/<probe>.json` "claims") and a
probe's own paired counts are passed in by the caller that read them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import FAMILIES
from ..pretraining import SCRATCH, UNKNOWN


@dataclass(frozen=True)
class CellRecord:
    """One finished run: both models' metrics and their paired test outcomes.

    `metrics` maps "cnn"/"vit" to metric name -> value (see `claims` for units); a missing metric
    makes the claims resting on it "not tested". `paired` counts the run's test images by who got
    them right: {"only_cnn", "only_vit", "both", "neither"}; `probe_paired` holds the same counts
    for a probe's own test set, keyed by the metric they score (e.g. "long_range_accuracy").
    """

    pair: str
    fraction: float  # share of the training split used
    n_train: int  # training images
    seed: int
    pretrained: bool  # whether either model started from pretrained weights
    metrics: Mapping[str, Mapping[str, float]]
    paired: Mapping[str, int] | None = None
    probe_paired: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    dataset: str = ""  # for the verdict's scope
    epochs: int | None = None  # the training budget, for the verdict's scope
    # Each model's repeated timings of a cost metric (model_repeats), and where they were timed.
    repeats: Mapping[str, Mapping[str, Sequence[float]]] = field(default_factory=dict)
    host: str = ""
    # "" for a pair matched on what the run asked; else what it missed and by how much, for
    # the verdict's scope: "unmatched on FLOPs per image (ViT/CNN 6.39x, tolerance 15%)".
    unmatched: str = ""
    # Each model's pretraining data ("cnn"/"vit" -> pretraining.SCRATCH, UNKNOWN or dataset
    # names), and how the run adapted them ("full", "head", "probe"; "" when not recorded).
    pretraining: Mapping[str, str] = field(default_factory=dict)
    adaptation: str = ""
    # The budget the models trained under (run.json's budget: "epochs", "flops" or "time", and
    # its description) and each model's convergence record (training/convergence.py).
    budget_mode: str = "epochs"
    budget: str = ""
    convergence: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Each model's validation accuracy after each epoch against the training FLOPs spent by
    # then (compute_curve): the accuracy-against-compute curve.
    compute: Mapping[str, Sequence[tuple[float, float]]] = field(default_factory=dict)
    # --adapt probe,full: test images by their ViT-minus-CNN difference of probe-to-full gaps
    # (keys "-2" to "2"; evidence/adaptation.py), or None for a run of one mode.
    probe_gaps: Mapping[str, int] | None = None

    def paired_for(self, metric: str) -> Mapping[str, int] | None:
        """Paired counts behind an accuracy metric, or None when the cell has none for it."""
        return self.paired if metric == "accuracy" else self.probe_paired.get(metric)


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) else None


def epochs_to_95(history: Sequence[Mapping[str, Any]]) -> int | None:
    """First epoch whose validation accuracy reaches 95% of the model's own best, or None."""
    rows = [(r.get("epoch", i + 1), _number(r.get("val_accuracy"))) for i, r in enumerate(history)]
    rows = [(e, v) for e, v in rows if v is not None]
    if not rows:
        return None
    best = max(v for _, v in rows)
    return int(next(e for e, v in rows if v >= 0.95 * best))


def overfit_gap(history: Sequence[Mapping[str, Any]]) -> float | None:
    """Final-epoch training minus validation accuracy, in points (train on augmented batches)."""
    if not history:
        return None
    train = _number(history[-1].get("train_accuracy"))
    val = _number(history[-1].get("val_accuracy"))
    return None if train is None or val is None else 100.0 * (train - val)


def train_flops(results: Mapping[str, Any], n_train: int = 0) -> float | None:
    """Training FLOPs one model spent: its budget record's, or for a run from before budgets,
    forward FLOPs x 3 x its epochs x `n_train` images."""
    spent = _number((results.get("budget") or {}).get("flops"))
    forward = _number(results.get("flops_per_image"))
    history = results.get("history") or []
    if spent is None and forward is not None and history and n_train > 0:
        spent = 3.0 * forward * len(history) * n_train
    return spent


def compute_curve(results: Mapping[str, Any], n_train: int) -> list[tuple[float, float]]:
    """(training FLOPs spent, validation accuracy) after each epoch: forward FLOPs x 3 x the
    images trained so far (each row's, or `n_train` for a run from before rows counted them)."""
    forward = _number(results.get("flops_per_image"))
    if forward is None:
        return []
    curve, images = [], 0.0
    for row in results.get("history") or []:
        images += _number(row.get("images")) or n_train
        accuracy = _number(row.get("val_accuracy"))
        if accuracy is not None and images > 0:
            curve.append((3.0 * forward * images, accuracy))
    return curve


def model_metrics(results: Mapping[str, Any], n_train: int = 0) -> dict[str, float]:
    """One model's claim metrics from its run.json block; missing values are left out."""
    test = results.get("test") or {}
    efficiency = results.get("efficiency") or {}
    history = results.get("history") or []
    values = {
        "accuracy": test.get("accuracy"),
        "macro_f1": test.get("macro_f1"),
        "params": results.get("params"),
        "flops_per_image": results.get("flops_per_image"),
        "latency_ms_batch1": efficiency.get("latency_ms_batch1"),
        "inference_images_per_second": efficiency.get("inference_images_per_second"),
        "train_images_per_second": efficiency.get("train_images_per_second"),
        "train_seconds": efficiency.get("train_seconds"),
        "epochs_to_95": epochs_to_95(history),
        "overfit_gap": overfit_gap(history),
        "train_flops": train_flops(results, n_train),
    }
    return {k: float(v) for k, v in values.items() if _number(v) is not None}


# A cost claim needs at least this many timings of each model for a within-run interval.
MIN_REPEATS = 5


def model_repeats(results: Mapping[str, Any]) -> dict[str, list[float]]:
    """One model's repeated timings by cost metric: the evaluation's timed calls, and each epoch
    after the first (warm-up) for training, as per-epoch seconds and their inverse (images/s
    up to the same image count for both models); metrics with fewer than MIN_REPEATS are left
    out."""
    recorded = (results.get("efficiency") or {}).get("repeats") or {}
    rows = (results.get("history") or [])[1:]
    # Under a FLOP or time budget the last epoch may be cut short: time whole epochs only, and
    # leave training time to the totals (an epoch's time is not the budget's time).
    whole = max((_number(r.get("images")) or 0 for r in rows), default=0)
    rows = [r for r in rows if (_number(r.get("images")) or whole) >= whole]
    seconds = [_number(r.get("seconds")) for r in rows]
    seconds = [s for s in seconds if s is not None and s > 0]
    equal_epochs = (results.get("budget") or {}).get("mode", "epochs") == "epochs"
    values = {
        **{k: [float(v) for v in vs] for k, vs in recorded.items()},
        "train_seconds": seconds if equal_epochs else [],
        "train_images_per_second": [1 / s for s in seconds],
    }
    return {k: v for k, v in values.items() if len(v) >= MIN_REPEATS}


def probe_gap(results: Mapping[str, Any]) -> float | None:
    """Full fine-tune minus linear probe test accuracy (a fraction) under --adapt probe,full."""
    probe = (results.get("adaptation") or {}).get("probe") or {}
    full, linear = (
        _number((results.get("test") or {}).get("accuracy")),
        _number(probe.get("test_accuracy")),
    )
    return None if full is None or linear is None else full - linear


def host_of(run: Any) -> str:
    """Where a run timed its models: CPU or device, precision and threads."""
    env = getattr(run, "environment", None) or {}
    resolved = getattr(run, "resolved", None) or {}
    where = env.get("cpu") if str(resolved.get("device", "cpu")) == "cpu" else env.get("device")
    parts = [
        where,
        resolved.get("precision"),
        f"{env['threads']} threads" if env.get("threads") else None,
    ]
    return ", ".join(str(p) for p in parts if p)


_MATCH_NAMES = {"params": "parameters", "flops": "FLOPs per image"}


def unmatched_note(pairing: Mapping[str, Any] | None) -> str:
    """The scope's note for a run whose pair missed its --match tolerance (run.json's
    pairing.match), or "" when it met it or the run predates the record."""
    asked = (pairing or {}).get("match") or {}
    ratio = _number(asked.get("ratio"))
    if not asked or asked.get("met") or ratio is None:
        return ""
    on = _MATCH_NAMES.get(asked.get("on"), str(asked.get("on")))
    tolerance = _number(asked.get("tolerance"))
    within = f", tolerance {tolerance:.0%}" if tolerance is not None else ""
    return f"unmatched on {on} (ViT/CNN {ratio:.2f}x{within})"


def pretraining_of(model: Any) -> str:
    """One model's pretraining data as its run.json block records it; a run from before the
    record: from scratch for a model that was not pretrained, else unknown."""
    recorded = (getattr(model, "results", None) or {}).get("pretraining") or {}
    if recorded.get("data"):
        return str(recorded["data"])
    return UNKNOWN if getattr(model, "pretrained", False) else SCRATCH


def paired_counts(comparison: Mapping[str, Any] | None) -> dict[str, int] | None:
    """The engine's paired counts from a run's (or probe's) comparison block."""
    keys = {
        "only_cnn": "only_cnn_correct",
        "only_vit": "only_vit_correct",
        "both": "both_correct",
        "neither": "both_wrong",
    }
    if not comparison or any(comparison.get(v) is None for v in keys.values()):
        return None
    return {k: int(comparison[v]) for k, v in keys.items()}


def cell_from_run(
    run: Any,
    probe_metrics: Mapping[str, Mapping[str, float]] | None = None,
    probe_paired: Mapping[str, Mapping[str, Any]] | None = None,
    pair: str | None = None,
) -> CellRecord:
    """A cell from a loaded, complete run (`cnnvit.runs.load_run`), plus its probe results.

    `probe_metrics` is {metric: {"cnn": value, "vit": value}} (a probe's "claims" block);
    `probe_paired` is {metric: comparison block with *_correct counts}. `pair` defaults to
    "<cnn name>+<vit name>".
    """
    models = run.models
    if probe_metrics is None:  # the run's own saved probes, if it has any
        probe_metrics = getattr(run, "probe_claims", None)
    splits = (run.dataset or {}).get("splits") or {}
    n_train = int(splits.get("train", 0))
    metrics = {
        f: model_metrics(models[f].results, n_train) if f in models else {} for f in FAMILIES
    }
    for family in FAMILIES:
        gap = probe_gap(models[family].results) if family in models else None
        if gap is not None:
            metrics[family]["probe_gap"] = gap
    for metric, by_family in (probe_metrics or {}).items():
        for family in FAMILIES:
            value = _number(by_family.get(family))
            if value is not None:
                metrics[family][metric] = value
    names = [models[f].name if f in models else "?" for f in FAMILIES]
    splits = (run.dataset or {}).get("splits") or {}
    probe_counts = {m: paired_counts(c) for m, c in (probe_paired or {}).items()}
    budget = (getattr(run, "raw", None) or {}).get("budget") or {}
    return CellRecord(
        pair=pair or "+".join(names),
        fraction=float(run.config.data.train_fraction),
        n_train=int(splits.get("train", 0)),
        seed=int(run.config.train.seed),
        pretrained=any(models[f].pretrained for f in FAMILIES if f in models),
        metrics=metrics,
        paired=paired_counts(run.comparison),
        probe_paired={m: c for m, c in probe_counts.items() if c is not None},
        dataset=str((run.dataset or {}).get("name", "")),
        epochs=int(run.config.train.epochs),
        repeats={f: model_repeats(models[f].results) for f in FAMILIES if f in models},
        host=host_of(run),
        unmatched=unmatched_note((getattr(run, "raw", None) or {}).get("pairing")),
        pretraining={f: pretraining_of(models[f]) for f in FAMILIES if f in models},
        adaptation=str(getattr(run.config.train, "adapt", "") or ""),
        budget_mode=str(budget.get("mode") or "epochs"),
        budget=str(budget.get("describe") or ""),
        compute={f: compute_curve(models[f].results, n_train) for f in FAMILIES if f in models},
        convergence={
            f: models[f].results["convergence"]
            for f in FAMILIES
            if f in models and isinstance(models[f].results.get("convergence"), dict)
        },
        probe_gaps=((run.comparison or {}).get("probe_full") or {}).get("gap_difference_counts"),
    )
