"""Whether a trained model converged, by one stated rule, and how much longer it would need.

The rule (`converged`): a model has converged when, over its last k epochs, its validation
accuracy never rose above the best of the epochs before them by more than one standard error,
the binomial SE sqrt(p (1 - p) / n) of that best accuracy p on the n validation images (so a
gain within what resampling the validation images would move is no gain); k = max(3, 20% of
the epochs, rounded up). A run of k epochs or fewer cannot be judged and counts as not
converged. The plateau epoch is the first epoch after which no epoch beat the best so far by
more than one SE. For a model that has not converged, `more_epochs` fits a saturating curve
acc(t) = a - b exp(-t / tau) to the validation accuracies and estimates the epochs after which
k further epochs would gain less than one SE; where the fit has no curvature (tau at the edge
of its grid), too few points or no rise, it says it cannot estimate. The same rule can stop a
run early (issue 23) and serve as a convergence criterion for a recipe (issue 26).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

MIN_WINDOW = 3
WINDOW_SHARE = 0.2
_TAUS = np.geomspace(0.3, 200.0, 80)  # epochs; a best fit at the top edge is a straight line


def window(epochs: int) -> int:
    """k: the epochs the rule looks back over, max(3, ceil(20% of `epochs`))."""
    return max(MIN_WINDOW, math.ceil(WINDOW_SHARE * epochs))


def standard_error(accuracy: float, n_val: int) -> float:
    """The binomial SE of an accuracy measured on `n_val` images."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / max(1, n_val))


def rule_text(k: int) -> str:
    """The rule in words, as run.json and the report state it."""
    return (
        f"converged when validation accuracy over the last {k} epochs (k = max({MIN_WINDOW}, "
        f"{WINDOW_SHARE:.0%} of the epochs)) rose by no more than one binomial standard error "
        "above the best before them"
    )


def plateau_epoch(accuracies: Sequence[float], n_val: int) -> int:
    """The first epoch (1-based) after which no epoch beat the best so far by more than one SE."""
    plateau, best = 1, accuracies[0]
    for epoch, value in enumerate(accuracies[1:], start=2):
        if value > best + standard_error(best, n_val):
            plateau = epoch
        best = max(best, value)
    return plateau


def converged(accuracies: Sequence[float], n_val: int, k: int | None = None) -> bool:
    """The rule (module docstring) on a validation accuracy curve, one value per epoch."""
    k = window(len(accuracies)) if k is None else k
    if len(accuracies) <= k:
        return False
    before = max(accuracies[:-k])
    return max(accuracies[-k:]) <= before + standard_error(before, n_val)


def more_epochs(accuracies: Sequence[float], n_val: int, k: int) -> float | None:
    """Estimated further epochs until the rule would hold, from a fit of a - b exp(-t / tau);
    None when the curve does not allow an estimate."""
    y = np.asarray(accuracies, dtype=float)
    if len(y) < 4 or y[-1] <= y[0]:
        return None
    t = np.arange(1, len(y) + 1, dtype=float)
    best: tuple[float, float, float, float] | None = None
    for tau in _TAUS:
        design = np.stack([np.ones_like(t), -np.exp(-t / tau)], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
        error = float(np.sum((design @ np.array([a, b]) - y) ** 2))
        if best is None or error < best[0]:
            best = (error, float(a), float(b), float(tau))
    assert best is not None
    _, a, b, tau = best
    if b <= 0 or tau >= _TAUS[-1] or a > 1.0 + 1e-9:
        return None
    se = standard_error(min(max(a, 0.0), 1.0), n_val)
    gain = b * (1 - math.exp(-k / tau))  # what k epochs from epoch 0 would add
    if se <= 0:
        return None
    # k epochs from epoch s add gain x exp(-s / tau); the rule holds k epochs after it is < SE
    start = tau * math.log(gain / se) if gain > se else 0.0
    return max(1.0, start + k - len(y))  # it has not converged: one more epoch at least


def convergence_record(
    history: Sequence[dict[str, Any]], n_val: int, cool_down_from: int = 0
) -> dict[str, Any]:
    """run.json's `convergence` block of one model: the rule, its verdict, the plateau epoch and,
    if it did not converge, the estimated further epochs (None: cannot estimate). Under
    --until-converged (`cool_down_from`: the last epoch at the peak rate) the rule is judged on
    the epochs at the peak rate, before the cool-down's falling rate lifted the curve."""
    stable = history[:cool_down_from] if cool_down_from else history
    accuracies = [float(row["val_accuracy"]) for row in stable]
    k = window(len(accuracies))
    done = converged(accuracies, n_val, k) if accuracies else False
    extra = None if done or not accuracies else more_epochs(accuracies, n_val, k)
    return {
        "rule": rule_text(k),
        "window": k,
        "validation_images": n_val,
        "converged": done,
        "plateau_epoch": plateau_epoch(accuracies, n_val) if done else None,
        "epochs": len(accuracies),
        "more_epochs": None if extra is None else round(extra, 1),
        **(
            {"cool_down_from": cool_down_from, "cool_down_epochs": len(history) - cool_down_from}
            if cool_down_from
            else {}
        ),
    }
