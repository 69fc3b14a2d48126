"""The statistics behind every verdict, each one a named, textbook method.

Library first: the exact McNemar test is `scipy.stats.binomtest` on the discordant pairs, Wilson
intervals come from `statsmodels.stats.proportion.proportion_confint`, the t tests and intervals
over seeds from `scipy.stats.ttest_1samp(...).confidence_interval()`, per-seed slopes and the
one-seed slope test from `scipy.stats.linregress`, the sign test from `binomtest`, and the Holm
correction from `statsmodels.stats.multitest.multipletests`. Written by hand, because neither
library has it: Newcombe's hybrid score interval for a difference of paired proportions (his 1998
method 10; statsmodels only has intervals for independent proportions), and the crossing point of
two curves by linear interpolation in log2 size. Every function returns an `Evidence` whose
`method` says in words what was computed, so a report can print it verbatim. Conventions: a
difference is always ViT minus CNN and a ratio always ViT over CNN; ratios are tested on the log
scale (timings are multiplicative: log ratios are closer to normal and symmetric in which model is
on top), and reported back as ratios.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Evidence:
    """One measured effect: ViT minus CNN (scale "difference") or ViT over CNN (scale "ratio").

    `low`/`high` bound a `CONFIDENCE` interval (equal to the estimate for an exact quantity);
    `p_value` tests "no difference" (None where no test applies: an exact quantity, or one
    replicate with no spread to test against); `n` counts the replicates (seeds, cells or test
    images) the method used; `exact` marks a deterministic quantity (FLOPs, parameters) decided by
    its value alone.
    """

    estimate: float
    low: float
    high: float
    p_value: float | None
    method: str
    n: int
    unit: str
    scale: str = "difference"  # "difference" (ViT - CNN) or "ratio" (ViT / CNN)
    exact: bool = False
    detail: str = ""  # where it was measured, e.g. "at 129 training images (10% of the split)"
    confidence: float = CONFIDENCE  # the interval's level (wider where Holm adjusted the test)
    spread: float | None = None  # sample SD of the per-seed values (None unless 2+ seeds)


POWER = 0.80  # the power a "how many seeds" estimate is for


def seeds_to_resolve(
    spread: float, threshold: float, confidence: float = CONFIDENCE, power: float = POWER
) -> int:
    """Seeds a two-sided paired test at level 1 - `confidence` needs to detect a true mean
    difference of `threshold` with probability `power`, given a per-seed SD of `spread`.

    The normal approximation n = ((z_{1-a/2} + z_power) sd / threshold)^2, rounded up and at
    least 2 (a t-test needs two seeds; the approximation is optimistic below about 10). With
    zero spread the test is the exact sign test, which needs n with 2 / 2^n below alpha."""
    if threshold <= 0:
        raise ValueError("a power estimate needs a positive threshold")
    alpha = 1 - confidence
    if spread == 0:  # every seed agreed: the test is the sign test, p = 2 / 2^n at best
        return max(2, math.ceil(math.log2(2 / alpha) + 1e-12))
    z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    return max(2, math.ceil((z * spread / threshold) ** 2))


def mcnemar_exact_p(only_cnn: int, only_vit: int) -> float:
    """Two-sided exact McNemar p: binomial test of the discordant pairs against p = 0.5."""
    discordant = only_cnn + only_vit
    if discordant == 0:
        return 1.0  # the models agree on every image: no evidence of any difference
    return float(stats.binomtest(only_vit, discordant, 0.5, alternative="two-sided").pvalue)


def newcombe_paired_interval(
    both: int, only_vit: int, only_cnn: int, neither: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Newcombe's (1998, method 10) hybrid score interval for p_vit - p_cnn on paired data.

    Square-and-add of the two Wilson intervals, with the correlation of the paired proportions
    estimated by phi (continuity-corrected as Newcombe does: ad - bc shrunk by n/2 when
    positive). Returns (low, high) as proportions. Chosen over the Wald interval, which is too
    narrow when the accuracies are near 100%, as they are on easy datasets.
    """
    from statsmodels.stats.proportion import proportion_confint  # statsmodels loads pandas: lazy

    n = both + only_vit + only_cnn + neither
    if n == 0:
        return (math.nan, math.nan)
    vit_right, cnn_right = both + only_vit, both + only_cnn
    p1, p2 = vit_right / n, cnn_right / n
    l1, u1 = proportion_confint(vit_right, n, alpha=1 - confidence, method="wilson")
    l2, u2 = proportion_confint(cnn_right, n, alpha=1 - confidence, method="wilson")
    # 2x2 table rows: ViT right / wrong; columns: CNN right / wrong.
    a, b, c, d = both, only_vit, only_cnn, neither
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    if margins == 0 or 0 <= cross <= n / 2:
        phi = 0.0
    else:
        phi = (cross - n / 2 if cross > n / 2 else cross) / math.sqrt(margins)
    diff = p1 - p2
    low = diff - math.sqrt(
        max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    )
    high = diff + math.sqrt(
        max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2)
    )
    return (max(-1.0, low), min(1.0, high))


def paired_accuracy_difference(
    paired: Mapping[str, int], confidence: float = CONFIDENCE
) -> Evidence:
    """ViT - CNN accuracy (points) on one test set: Newcombe interval, exact McNemar p."""
    both, only_vit = int(paired["both"]), int(paired["only_vit"])
    only_cnn, neither = int(paired["only_cnn"]), int(paired["neither"])
    n = both + only_vit + only_cnn + neither
    low, high = newcombe_paired_interval(both, only_vit, only_cnn, neither, confidence)
    return Evidence(
        confidence=confidence,
        estimate=100.0 * (only_vit - only_cnn) / n if n else math.nan,
        low=100.0 * low,
        high=100.0 * high,
        p_value=mcnemar_exact_p(only_cnn, only_vit),
        method=(
            f"one run on {n} paired test images: exact McNemar test (binomial on the "
            f"{only_cnn + only_vit} images only one model got right), Newcombe hybrid score "
            "interval"
        ),
        n=n,
        unit="points",
    )


def _all_equal(values: np.ndarray) -> bool:
    # Equal up to float rounding: slopes fitted to identical curves differ in the last bits,
    # and a t-test on that residue would report an absurdly small p-value.
    return bool(np.ptp(values) <= 1e-9 * max(1.0, float(np.max(np.abs(values)))))


def mean_difference(
    values: Sequence[float], unit: str, replicate: str = "seed", confidence: float = CONFIDENCE
) -> Evidence:
    """Mean of paired ViT - CNN differences with a Student-t interval and one-sample t-test.

    `values` are one difference per replicate (per seed, pairing the two models trained with
    it). With zero spread the t statistic is undefined (scipy would report p = 0): the p-value
    then comes from the exact sign test (binomtest on how many replicates are positive), and the
    interval is the range of the replicates, which is all one can honestly say.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    plural = f"{n} {replicate}{'s' * (n != 1)}"
    if n == 0:
        raise ValueError("mean_difference needs at least one value")
    if n == 1:
        # No interval: one replicate says nothing about how much another would differ.
        return Evidence(
            float(x[0]), math.nan, math.nan, None, f"one {replicate}: no spread", 1, unit
        )
    if _all_equal(x):
        tiny = 1e-9 * max(1.0, float(np.max(np.abs(x))))  # float residue counts as zero
        nonzero = int(np.sum(np.abs(x) > tiny))
        positive = int(np.sum(x > tiny))
        p = 1.0 if nonzero == 0 else float(stats.binomtest(positive, nonzero, 0.5).pvalue)
        return Evidence(
            float(x[0]),
            float(x[0]),
            float(x[0]),
            p,
            f"all {plural} gave the same difference, so a t-test is undefined: exact sign test, "
            "interval = range over replicates",
            n,
            unit,
            confidence=confidence,
            spread=0.0 if replicate == "seed" else None,
        )
    result = stats.ttest_1samp(x, 0.0)
    ci = result.confidence_interval(confidence)
    return Evidence(
        float(x.mean()),
        float(ci.low),
        float(ci.high),
        float(result.pvalue),
        f"mean over {plural}, one-sample t-test and Student-t interval ({n - 1} df)",
        n,
        unit,
        confidence=confidence,
        spread=float(x.std(ddof=1)) if replicate == "seed" else None,
    )


def mean_log_ratio(
    vit: Sequence[float],
    cnn: Sequence[float],
    replicate: str = "cell",
    confidence: float = CONFIDENCE,
) -> Evidence:
    """Geometric-mean ViT/CNN ratio: t over the log ratios of paired replicates, back-transformed.

    Each replicate pairs one ViT and one CNN measurement taken in the same run, so the spread of
    the log ratios over replicates carries the timing noise of the machine.
    """
    logs = np.log(np.asarray(vit, dtype=float) / np.asarray(cnn, dtype=float))
    on_log = mean_difference(logs, "log ratio", replicate, confidence)
    method = on_log.method.replace("mean over", "geometric mean ViT/CNN ratio over")
    if on_log.n > 1:
        method += " on the log ratios"
    return Evidence(
        math.exp(on_log.estimate),
        math.exp(on_log.low),
        math.exp(on_log.high),
        on_log.p_value,
        method,
        on_log.n,
        "x",
        scale="ratio",
        confidence=confidence,
    )


def timing_log_ratio(
    runs: Sequence[tuple[Sequence[float], Sequence[float]]], confidence: float = CONFIDENCE
) -> Evidence:
    """ViT/CNN ratio of a timing from each run's repeated measurements (vit, cnn repeats).

    Per run: the difference of mean log timings, with Welch's standard error and degrees of
    freedom. One run: Welch's t-test and interval. Several: their inverse-variance (fixed-effect)
    mean with a normal interval and z-test. Either way the interval bounds the timing noise of
    this host within the runs, not how another seed or machine would time the pair.
    """
    estimates, variances, dfs = [], [], []
    for vit, cnn in runs:
        x, y = np.log(np.asarray(vit, dtype=float)), np.log(np.asarray(cnn, dtype=float))
        vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
        variance = max(vx + vy, 1e-12)  # identical repeats: no spread, a tiny floor
        estimates.append(float(x.mean() - y.mean()))
        variances.append(variance)
        dfs.append(variance**2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1) or 1e-300))
    calls = sum(len(v) + len(c) for v, c in runs)
    if len(runs) == 1:
        d, se, df = estimates[0], math.sqrt(variances[0]), dfs[0]
        p = float(2 * stats.t.sf(abs(d) / se, df))
        half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
        how = f"Welch's t-test and interval on log timings ({df:.1f} df)"
    else:
        weights = [1 / v for v in variances]
        d = sum(w * e for w, e in zip(weights, estimates, strict=True)) / sum(weights)
        se = math.sqrt(1 / sum(weights))
        p = float(2 * stats.norm.sf(abs(d) / se))
        half = float(stats.norm.ppf(0.5 + confidence / 2)) * se
        how = f"Welch's standard error per run, inverse-variance mean over {len(runs)} runs, z-test"
    return Evidence(
        math.exp(d),
        math.exp(d - half),
        math.exp(d + half),
        p,
        f"within-run timing repeats ({calls} timed calls): {how}; it bounds timing noise on "
        "this host, not variation between seeds or machines",
        calls,
        "x",
        scale="ratio",
        confidence=confidence,
    )


def exact_ratio(vit: float, cnn: float) -> Evidence:
    """A deterministic ViT/CNN ratio (FLOPs, parameters): no noise, so no test and no interval."""
    ratio = float(vit) / float(cnn)
    return Evidence(
        ratio,
        ratio,
        ratio,
        None,
        "exact count: no noise, decided by its size",
        1,
        "x",
        "ratio",
        True,
    )


def slope_per_doubling(
    by_seed: Mapping[int, Sequence[tuple[int, float]]], unit: str, confidence: float = CONFIDENCE
) -> Evidence:
    """Trend of the ViT - CNN difference against log2(training images), per doubling of data.

    With two or more seeds that each span two or more sizes: a least-squares slope per seed
    (`linregress`), then a one-sample t over the seeds' slopes, so seed is the replicate. With one
    seed over three or more sizes: the `linregress` slope test itself (t with sizes - 2 df), whose
    residual spread across separately trained sizes stands in for seed noise.
    """
    curves = [p for p in by_seed.values() if len({s for s, _ in p}) >= 2]
    if len(curves) >= 2:
        slopes = [
            stats.linregress(np.log2([s for s, _ in p]), [d for _, d in p]).slope for p in curves
        ]
        evidence = mean_difference(slopes, unit, "seed", confidence)
        return Evidence(
            evidence.estimate,
            evidence.low,
            evidence.high,
            evidence.p_value,
            "least-squares slope against log2(training images) per seed, then " + evidence.method,
            evidence.n,
            unit,
            confidence=confidence,
            spread=evidence.spread,
        )
    if len(curves) != 1 or len({s for s, _ in curves[0]}) < 3:
        raise ValueError("a slope needs two seeds over two sizes, or one seed over three sizes")
    points = curves[0]
    fit = stats.linregress(np.log2([s for s, _ in points]), [d for _, d in points])
    half = stats.t.ppf(0.5 + confidence / 2, len(points) - 2) * fit.stderr
    return Evidence(
        float(fit.slope),
        float(fit.slope - half),
        float(fit.slope + half),
        float(fit.pvalue),
        f"one seed: least-squares slope against log2(training images) over {len(points)} "
        f"sizes, t-test on the slope and its t interval ({len(points) - 2} df)",
        len(points),
        unit,
        confidence=confidence,
    )


@dataclass(frozen=True)
class Crossing:
    """Where the ViT - CNN difference changes sign, in training images, over seeds."""

    seeds: int  # seeds with a curve over two or more sizes
    seeds_crossing: int  # of those, how many change sign inside the measured range
    n_train: float | None  # geometric mean crossing size over the seeds that cross
    low: float | None  # Student-t interval on log2 size when >= 2 seeds cross, else the range
    high: float | None
    method: str


def crossing_log2(points: Sequence[tuple[int, float]]) -> float | None:
    """log2 size where a difference curve last changes sign (linear in log2 size), or None.

    The last sign change is where the curves cross for good within the measured range; a curve
    that touches zero at a measured size crosses there.
    """
    ordered = sorted(points)
    found = None
    for (s0, d0), (s1, d1) in zip(ordered, ordered[1:], strict=False):
        x0, x1 = math.log2(s0), math.log2(s1)
        if d0 == 0 and d1 != 0:
            found = x0
        elif d0 * d1 < 0:
            found = x0 + (x1 - x0) * (0 - d0) / (d1 - d0)
    return found


def curve_crossing(
    by_seed: Mapping[int, Sequence[tuple[int, float]]], confidence: float = CONFIDENCE
) -> Crossing:
    """Per-seed crossing points of the two curves, summarised over the seeds that cross."""
    curves = [p for p in by_seed.values() if len({s for s, _ in p}) >= 2]
    found = [x for x in (crossing_log2(p) for p in curves) if x is not None]
    if not found:
        return Crossing(len(curves), 0, None, None, None, "no seed's curves cross")
    mean = float(np.mean(found))
    if len(found) >= 2 and not _all_equal(np.asarray(found)):
        ci = stats.ttest_1samp(found, 0.0).confidence_interval(confidence)
        low, high = float(ci.low), float(ci.high)
        how = f"Student-t {confidence:.0%} interval on log2 size over {len(found)} seeds"
    else:
        low, high = min(found), max(found)
        how = "range over the seeds that cross"
    return Crossing(
        len(curves),
        len(found),
        2**mean,
        2**low,
        2**high,
        f"per-seed crossing by linear interpolation in log2 size; {how}",
    )


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down family-wise correction of p-values tested together."""
    from statsmodels.stats.multitest import multipletests  # statsmodels loads pandas: lazy

    if not p_values:
        return []
    return [float(p) for p in multipletests(list(p_values), method="holm")[1]]
