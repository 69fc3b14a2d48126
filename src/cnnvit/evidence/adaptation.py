"""The transfer claim `--adapt probe,full` tests: a linear probe on ViT features is closer to
full fine-tuning than a probe on CNN features.

Each model's probe-to-full gap is its full fine-tune's test accuracy minus its linear probe's
(cells' metric `probe_gap`, a fraction, both trained on the same splits with the same seed). The
effect is the ViT's gap minus the CNN's, in points: negative is what the claim says. One run is
judged on its paired test images: each image scores (ViT full - ViT probe) - (CNN full - CNN
probe), an integer from -2 to 2 (`gap_difference_counts`), and a percentile bootstrap over the
images of their mean gives the interval and the p-value; over two or more seeds, t over seeds.
Runs that were not probe,full leave the claim "not tested".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from . import stats
from .cells import CellRecord
from .claims import Claim, register_claim
from .measures import NotTested, _by_seed_mean, _difference, _with_detail, register_evidence
from .stats import CONFIDENCE, Evidence

RESAMPLES = 10_000
GAP_VALUES = (-2, -1, 0, 1, 2)

PROBE_CLOSER = register_claim(
    Claim(
        id="probe_closer_for_vit",
        statement=(
            "A linear probe on ViT features is closer to full fine-tuning than on CNN features"
        ),
        metric="probe_gap",
        metric_label="full fine-tune - linear probe test accuracy",
        favours="vit",
        better="lower",
        evidence="probe_gap_difference",
        threshold=2.0,
        threshold_why=(
            "a difference of two gaps, each a difference of two noisy accuracies: twice the "
            "1-point accuracy threshold"
        ),
        unit="points",
        to_unit=100.0,
        scope=(
            "each model's own pretraining, on this dataset and budget; probe and fine-tune on "
            "the same splits and seed"
        ),
        requires="--adapt probe,full",
        kind="transfer",  # from pretrained weights: confounded when the pretraining differs
    )
)


def gap_difference_counts(
    cnn_full: np.ndarray, cnn_probe: np.ndarray, vit_full: np.ndarray, vit_probe: np.ndarray
) -> dict[str, int]:
    """Test images by (ViT full - ViT probe) - (CNN full - CNN probe), each argument a boolean
    "right" vector over the same images in the same order; keys "-2" to "2"."""
    d = (vit_full.astype(int) - vit_probe.astype(int)) - (
        cnn_full.astype(int) - cnn_probe.astype(int)
    )
    return {str(v): int((d == v).sum()) for v in GAP_VALUES}


def bootstrap_gap_difference(
    counts: Mapping[str, int], confidence: float = CONFIDENCE, seed: int = 0
) -> Evidence:
    """Mean per-image difference of gaps (points) with a percentile bootstrap interval and
    two-sided bootstrap p-value (twice the smaller share of resampled means on either side
    of 0, with the +1 correction), over `RESAMPLES` resamples of the images (seeded)."""
    values = np.array(GAP_VALUES, dtype=float)
    n_by = np.array([int(counts.get(str(v), 0)) for v in GAP_VALUES])
    n = int(n_by.sum())
    estimate = 100.0 * float(values @ n_by) / n
    rng = np.random.default_rng(seed)
    means = 100.0 * (rng.multinomial(n, n_by / n, size=RESAMPLES) @ values) / n
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    if not n_by[values != 0].any():  # every image scores 0: no difference at all
        p_value = 1.0
    else:
        below, above = int((means <= 0).sum()), int((means >= 0).sum())
        p_value = min(1.0, 2 * (min(below, above) + 1) / (RESAMPLES + 1))
    return Evidence(
        estimate=estimate,
        low=float(low),
        high=float(high),
        p_value=p_value,
        method=(
            f"one run on {n} paired test images: percentile bootstrap of the per-image "
            f"difference of probe-to-full gaps ({RESAMPLES:,} resamples of the images), "
            "two-sided bootstrap p"
        ),
        n=n,
        unit="points",
        confidence=confidence,
    )


def probe_gap_difference(
    claim: Claim, cells: Sequence[CellRecord], confidence: float = CONFIDENCE
) -> Evidence | NotTested:
    """ViT gap - CNN gap: bootstrap on one run's paired images, t over two or more seeds."""
    have = [c for c in cells if _difference(c, claim) is not None]
    if not have:
        return NotTested(
            "no run compared a linear probe with full fine-tuning (run --adapt probe,full)"
        )
    per_seed = _by_seed_mean(claim, have)
    counts = have[0].probe_gaps if len(have) == 1 else None
    if len(per_seed) >= 2:
        evidence = stats.mean_difference(list(per_seed.values()), claim.unit, "seed", confidence)
    elif counts:
        evidence = bootstrap_gap_difference(counts, confidence)
    else:
        values = [_difference(c, claim) for c in have]
        evidence = stats.mean_difference(values, claim.unit, "run of one seed", confidence)  # type: ignore[arg-type]
    return _with_detail(evidence, f"at {min(c.n_train for c in have):,} training images")


register_evidence("probe_gap_difference", probe_gap_difference)
