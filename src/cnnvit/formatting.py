"""How a figure reads: the one formatter of the reports and the model cards.

A leaf module (it imports nothing from cnnvit), so that the model cards (models/card.py) and the
reports (report/*) format accuracies, metrics and costs through the same two functions without
the card importing the report, and the tests check card and report text through them too
instead of re-deriving a format or a rounding of their own.
"""

from __future__ import annotations

import math
from typing import Any

# Decimal places of a metric in a model card's YAML metadata (what the hub indexes): enough for
# one image in a million, few enough that the figure reads as a plain number.
METRIC_DIGITS = 6


def num(x: Any) -> float | None:
    """A finite int or float as a float; anything else (None, bool, text, nan, inf) as None."""
    ok = isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
    return float(x) if ok else None


def show(x: Any, spec: str) -> str:
    """Format a value: "pct" (fraction as %), "si" (k/M/G), a format spec, or "" for text."""
    if spec == "":
        return "—" if x is None else str(x)
    if (x := num(x)) is None:
        return "n/a"
    if spec == "pct":
        return f"{100 * x:.1f}%"
    if spec == "si":
        div, suffix = next(
            (
                (d, s)
                for d, s in ((1e12, " T"), (1e9, " G"), (1e6, " M"), (1e3, " k"))
                if abs(x) >= d
            ),
            (1, ""),
        )
        return f"{x / div:.2f}{suffix}" if suffix else f"{x:g}"
    return format(x, spec)


def metric_value(x: Any) -> float:
    """A metric as a model card's metadata records it: a float rounded to METRIC_DIGITS places."""
    return round(float(x), METRIC_DIGITS)
