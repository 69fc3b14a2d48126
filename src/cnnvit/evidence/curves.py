"""Data-efficiency curves for the study report: per training size, both models and the gap.

`fraction_table` gives, per (pair, pretrained, fraction), each model's mean metric over seeds
with a Student-t band and the ViT - CNN difference as `Evidence` (t over seeds, paired by seed;
McNemar and Newcombe's interval when one seed has paired test counts): the numbers behind the
curves with bands and the per-fraction table of issue 9. `crossing` says where the two curves
cross, per group, from the per-seed curves (`stats.curve_crossing`). Both use the same cells and
the same statistics as the verdicts, so a figure never disagrees with the verdict table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import stats
from .cells import CellRecord
from .stats import Crossing, Evidence


@dataclass(frozen=True)
class FractionRow:
    """One training size of one group: each model's mean (with band) and their difference."""

    pair: str
    pretrained: bool
    fraction: float
    n_train: int
    seeds: int
    cnn: tuple[float, float, float]  # mean, band low, band high (metric units x to_unit)
    vit: tuple[float, float, float]
    difference: Evidence  # ViT - CNN


def _band(values: list[float], unit: str) -> tuple[float, float, float]:
    evidence = stats.mean_difference(values, unit, "seed")
    return (evidence.estimate, evidence.low, evidence.high)


def fraction_table(
    cells: Sequence[CellRecord], metric: str = "accuracy", to_unit: float = 100.0
) -> list[FractionRow]:
    """Per group and training fraction: both models over seeds and ViT - CNN with its interval."""
    unit = "points" if to_unit == 100.0 else metric
    groups: dict[tuple[str, bool, float], list[CellRecord]] = defaultdict(list)
    for cell in cells:
        if metric in cell.metrics.get("cnn", {}) and metric in cell.metrics.get("vit", {}):
            groups[(cell.pair, cell.pretrained, cell.fraction)].append(cell)
    rows = []
    for (pair, pretrained, fraction), group in sorted(groups.items()):
        by_seed: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for cell in group:
            by_seed[cell.seed].append(
                (to_unit * cell.metrics["cnn"][metric], to_unit * cell.metrics["vit"][metric])
            )
        cnn = [float(np.mean([c for c, _ in v])) for v in by_seed.values()]
        vit = [float(np.mean([w for _, w in v])) for v in by_seed.values()]
        paired = group[0].paired_for(metric) if len(group) == 1 else None
        difference = (
            stats.paired_accuracy_difference(paired)
            if paired
            else stats.mean_difference([w - c for c, w in zip(cnn, vit, strict=True)], unit)
        )
        rows.append(
            FractionRow(
                pair,
                pretrained,
                fraction,
                min(c.n_train for c in group),
                len(by_seed),
                _band(cnn, unit),
                _band(vit, unit),
                difference,
            )
        )
    return rows


def crossing(
    cells: Sequence[CellRecord], metric: str = "accuracy", to_unit: float = 100.0
) -> dict[tuple[str, bool], Crossing]:
    """Where the ViT and CNN curves cross, per (pair, pretrained) group, over seeds."""
    curves: dict[tuple[str, bool], dict[int, list[tuple[int, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for cell in cells:
        try:
            gap = to_unit * (cell.metrics["vit"][metric] - cell.metrics["cnn"][metric])
        except KeyError:
            continue
        curves[(cell.pair, cell.pretrained)][cell.seed].append((cell.n_train, gap))
    return {group: stats.curve_crossing(by_seed) for group, by_seed in curves.items()}
