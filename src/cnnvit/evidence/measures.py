"""Evidence functions: from the cells of one group to one `Evidence` per claim.

Each function takes a claim and the cells of one (pair, pretrained) group and returns the
`Evidence` for it, or `NotTested` with the reason when the cells cannot speak to it. A claim
names its function in `EVIDENCE`; a probe with a new kind of evidence adds one with
`register_evidence`. The replicate is the training seed (a seed's two models share data, order
and budget, so ViT - CNN is paired within it); a single replicate falls back to what one run can
say: McNemar and Newcombe's interval on paired test predictions where the cell has them, no test
otherwise. Costs take the cell as the replicate instead: timing noise comes from the machine,
and every run times its two models afresh. What t over seeds covers: every seed is scored on the
same fixed test split, so its interval measures how much training (initialisation, order,
augmentation) moves the gap on these test images, not how much another test sample would; the
per-cell McNemar test is the one that speaks to test-set sampling.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from . import stats
from .cells import CellRecord
from .claims import PARAMS_MATCH_RATIO, Claim
from .stats import CONFIDENCE, Evidence


@dataclass(frozen=True)
class NotTested:
    """Why a claim cannot be judged from these cells."""

    reason: str


# (claim, cells, confidence=0.95): the engine asks again at a wider level where Holm adjusts.
EvidenceFunction = Callable[..., "Evidence | NotTested"]


def _difference(cell: CellRecord, claim: Claim) -> float | None:
    """ViT - CNN on the claim's metric in the claim's unit, or None when either is missing."""
    try:
        vit, cnn = cell.metrics["vit"][claim.metric], cell.metrics["cnn"][claim.metric]
    except KeyError:
        return None
    if vit is None or cnn is None or not (math.isfinite(vit) and math.isfinite(cnn)):
        return None
    return claim.to_unit * (float(vit) - float(cnn))


def _recorded(claim: Claim, cells: Sequence[CellRecord]) -> list[CellRecord] | NotTested:
    have = [c for c in cells if _difference(c, claim) is not None]
    if have:
        return have
    how = f" (run {claim.requires})" if claim.requires else ""
    return NotTested(f"no run recorded {claim.metric} for both models{how}")


def _by_seed_mean(claim: Claim, cells: Sequence[CellRecord]) -> dict[int, float]:
    values: dict[int, list[float]] = defaultdict(list)
    for cell in cells:
        values[cell.seed].append(_difference(cell, claim))  # type: ignore[arg-type]
    return {seed: float(np.mean(v)) for seed, v in sorted(values.items())}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _size_text(n_train: int, fraction: float) -> str:
    return f"at {n_train:,} training images ({fraction:.0%} of the split)"


def smallest_size_difference(
    claim: Claim, cells: Sequence[CellRecord], confidence: float = CONFIDENCE
) -> Evidence | NotTested:
    """ViT - CNN at the smallest training fraction: t over seeds, or McNemar for one run."""
    have = _recorded(claim, cells)
    if isinstance(have, NotTested):
        return have
    fraction = min(c.fraction for c in have)
    at = [c for c in have if c.fraction == fraction]
    n_train = min(c.n_train for c in at)
    if claim.max_train_images is not None and n_train >= claim.max_train_images:
        return NotTested(
            f"the smallest training size is {n_train:,} images, not small data (below "
            f"{claim.max_train_images:,})"
        )
    return _with_detail(_over_seeds(claim, at, confidence), _size_text(n_train, fraction))


def _over_seeds(claim: Claim, cells: Sequence[CellRecord], confidence: float) -> Evidence:
    """t over seeds (each seed's mean); for one cell, McNemar on its paired counts if any."""
    per_seed = _by_seed_mean(claim, cells)
    paired = cells[0].paired_for(claim.metric) if len(cells) == 1 else None
    if paired:  # only accuracy-like metrics have paired counts
        return stats.paired_accuracy_difference(paired, confidence)
    return stats.mean_difference(list(per_seed.values()), claim.unit, "seed", confidence)


def trend_over_log_size(
    claim: Claim, cells: Sequence[CellRecord], confidence: float = CONFIDENCE
) -> Evidence | NotTested:
    """Slope of ViT - CNN against log2(training images), per doubling, over seeds."""
    have = _recorded(claim, cells)
    if isinstance(have, NotTested):
        return have
    sizes = sorted({c.n_train for c in have})
    by_seed: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for cell in have:
        by_seed[cell.seed].append((cell.n_train, _difference(cell, claim)))  # type: ignore[arg-type]
    spanning = [s for s, p in by_seed.items() if len({n for n, _ in p}) >= 2]
    if len(spanning) < 2 and not (len(spanning) == 1 and len(sizes) >= 3):
        return NotTested(
            "a trend needs two or more seeds over two or more training sizes, or one seed over "
            f"three; these runs have {_count(len(by_seed), 'seed')} and "
            f"{_count(len(sizes), 'size')}"
        )
    evidence = stats.slope_per_doubling(by_seed, claim.unit, confidence)
    return _with_detail(evidence, f"from {sizes[0]:,} to {sizes[-1]:,} images")


def per_seed_mean_difference(
    claim: Claim, cells: Sequence[CellRecord], confidence: float = CONFIDENCE
) -> Evidence | NotTested:
    """ViT - CNN averaged over each seed's sizes, then t over seeds (over cells for one seed)."""
    have = _recorded(claim, cells)
    if isinstance(have, NotTested):
        return have
    per_seed = _by_seed_mean(claim, have)
    sizes = sorted({c.n_train for c in have})
    if len(per_seed) >= 2 or len(have) == 1:
        evidence = _over_seeds(claim, have, confidence)
    else:  # one seed, several sizes: the sizes are the replicates
        values = [_difference(c, claim) for c in have]
        evidence = stats.mean_difference(values, claim.unit, "cell of one seed", confidence)  # type: ignore[arg-type]
    where = (
        _size_text(have[0].n_train, have[0].fraction)
        if len(sizes) == 1
        else (f"averaged over {len(sizes)} training sizes ({sizes[0]:,} to {sizes[-1]:,} images)")
    )
    return _with_detail(evidence, where)


def params_mismatch(cells: Sequence[CellRecord]) -> NotTested | None:
    """Why "at equal parameters" does not hold in these cells, or None when it does."""
    ratios = []
    for cell in cells:
        try:
            ratios.append(cell.metrics["vit"]["params"] / cell.metrics["cnn"]["params"])
        except (KeyError, TypeError, ZeroDivisionError):
            continue
    if not ratios:
        return NotTested("parameter counts were not recorded, so 'at equal parameters' is unknown")
    far = max(ratios, key=lambda r: abs(math.log(r)))
    if not 1 / PARAMS_MATCH_RATIO <= far <= PARAMS_MATCH_RATIO:
        return NotTested(
            f"the ViT has {far:.2f}x the CNN's parameters, not equal parameters (within "
            f"{PARAMS_MATCH_RATIO - 1:.0%})"
        )
    return None


def _ratios(claim: Claim, cells: Sequence[CellRecord]) -> tuple[list[float], list[float]]:
    vit, cnn = [], []
    for cell in cells:
        v, c = (
            cell.metrics.get("vit", {}).get(claim.metric),
            cell.metrics.get("cnn", {}).get(claim.metric),
        )
        if v is not None and c is not None and v > 0 and c > 0:
            vit.append(float(v))
            cnn.append(float(c))
    return vit, cnn


def cost_ratio(
    claim: Claim, cells: Sequence[CellRecord], confidence: float = CONFIDENCE
) -> Evidence | NotTested:
    """Geometric-mean ViT/CNN ratio of a timing over all cells, each cell one replicate.

    Cells, not seeds, are the replicates: timing noise comes from the machine, not the training
    seed, and every cell times its two models afresh.
    """
    mismatch = params_mismatch(cells)
    if mismatch:
        return mismatch
    vit, cnn = _ratios(claim, cells)
    if not vit:
        return NotTested(f"no run recorded {claim.metric} for both models")
    metric = claim.metric
    timed = [(c.repeats.get("vit", {}).get(metric), c.repeats.get("cnn", {}).get(metric))
             for c in cells]  # fmt: skip
    where = f"over {len(vit)} runs" if len(vit) > 1 else "in one run"
    if all(v and c for v, c in timed):  # every run timed both models repeatedly
        evidence = stats.timing_log_ratio(timed, confidence)  # type: ignore[arg-type]
        return _with_detail(evidence, where)
    return _with_detail(stats.mean_log_ratio(vit, cnn, "cell", confidence), where)


def exact_cost_ratio(
    claim: Claim, cells: Sequence[CellRecord], confidence: float = CONFIDENCE
) -> Evidence | NotTested:
    """A deterministic ViT/CNN ratio (FLOPs): the same in every cell, decided by its size."""
    mismatch = params_mismatch(cells)
    if mismatch:
        return mismatch
    vit, cnn = _ratios(claim, cells)
    if not vit:
        return NotTested(f"no run recorded {claim.metric} for both models")
    ratios = [v / c for v, c in zip(vit, cnn, strict=True)]
    return stats.exact_ratio(float(np.median(ratios)), 1.0)


def _with_detail(evidence: Evidence, detail: str) -> Evidence:
    return replace(evidence, detail=detail)


EVIDENCE: dict[str, EvidenceFunction] = {
    "smallest_size_difference": smallest_size_difference,
    "trend_over_log_size": trend_over_log_size,
    "per_seed_mean_difference": per_seed_mean_difference,
    "cost_ratio": cost_ratio,
    "exact_cost_ratio": exact_cost_ratio,
}


def register_evidence(name: str, function: EvidenceFunction) -> None:
    """Add an evidence function a probe's claim can name; a name already taken is an error."""
    if name in EVIDENCE:
        raise ValueError(f"evidence function {name!r} is already registered")
    EVIDENCE[name] = function
