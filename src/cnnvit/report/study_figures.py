"""Study figures: data-efficiency curves, the ViT - CNN gap against data, costs, training.

Each function takes the evidence table (`CellRecord`s) and the engine's per-size rows
(`FractionRow`, `Verdict`) and returns PNG bytes; the bands and trend lines are the engine's own
intervals, so a figure never shows an uncertainty the verdict table does not use. Training sizes
are on a log axis: the claims are about multiplying the data, not adding to it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import matplotlib
import numpy as np

from ..config import FAMILIES, FAMILY_NAMES
from ..evidence import CellRecord, FractionRow, Verdict
from .figures import COLORS, _png

matplotlib.use("Agg")  # no display: must be chosen before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullLocator  # noqa: E402

ROLE = FAMILY_NAMES
COST_METRICS = (  # (metric, label): ViT/CNN ratios per cell
    ("flops_per_image", "FLOPs / image"),
    ("latency_ms_batch1", "batch-1 latency"),
    ("inference_images_per_second", "inference images/s"),
    ("train_images_per_second", "training images/s"),
    ("train_seconds", "training time"),
)


def _sizes_axis(ax: plt.Axes, sizes: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(sizes)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.xaxis.set_minor_locator(NullLocator())  # only the measured sizes are labelled
    ax.set_xlabel("training images (log scale)")
    ax.grid(alpha=0.3)


def _groups(rows: Sequence[FractionRow]) -> dict[str, list[FractionRow]]:
    out: dict[str, list[FractionRow]] = defaultdict(list)
    for row in rows:
        out[row.pair + (" (pretrained)" if row.pretrained else "")].append(row)
    return dict(out)


def _jitter(seed: int, seeds: int) -> float:
    """A small multiplicative x offset per seed so that seeds' points do not hide each other."""
    return 2 ** (0.06 * (seed - (seeds - 1) / 2)) if seeds > 1 else 1.0


def data_efficiency(
    rows: Sequence[FractionRow], cells: Sequence[CellRecord], metric: str = "accuracy"
) -> bytes:
    """Accuracy against training images per family: mean over seeds, t band, seed points."""
    groups = _groups(rows)
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.4), squeeze=False)
    for ax, (name, group) in zip(axes[0], groups.items(), strict=True):
        sizes = [r.n_train for r in group]
        for family in FAMILIES:
            mean = np.array([getattr(r, family)[0] for r in group])
            low = np.array([getattr(r, family)[1] for r in group])
            high = np.array([getattr(r, family)[2] for r in group])
            ax.plot(sizes, mean, "-o", color=COLORS[family], label=f"{ROLE[family]} mean")
            ok = np.isfinite(low) & np.isfinite(high)
            if ok.any():
                band = f"{ROLE[family]} 95% t band over seeds"
                ax.fill_between(np.array(sizes)[ok], low[ok], high[ok], color=COLORS[family],
                                alpha=0.18, label=band)  # fmt: skip
            mine = [c for c in cells if c.pair + (" (pretrained)" if c.pretrained else "") == name]
            seeds = sorted({c.seed for c in mine})
            for cell in mine:
                value = cell.metrics.get(family, {}).get(metric)
                if value is not None:
                    x = cell.n_train * _jitter(seeds.index(cell.seed), len(seeds))
                    ax.plot(x, 100 * value, ".", color=COLORS[family], alpha=0.55, ms=7)
        _sizes_axis(ax, sizes)
        low_y, high_y = ax.get_ylim()  # a t band over few seeds can pass 0 or 100%: clip the view
        ax.set_ylim(max(low_y, -2), min(high_y, 102))
        ax.set_ylabel(f"test {metric.replace('_', ' ')} (%)")
        ax.set_title(name)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Data efficiency: dots are single seeds, lines the mean over seeds")
    return _png(fig)


def difference_trend(
    rows: Sequence[FractionRow], cells: Sequence[CellRecord], trends: dict[str, Verdict]
) -> bytes:
    """ViT - CNN accuracy against log2 training images: seeds, size means with t intervals,
    and the fitted trend (slope per doubling) with its interval as a fan."""
    groups = _groups(rows)
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.4), squeeze=False)
    for ax, (name, group) in zip(axes[0], groups.items(), strict=True):
        mine = [c for c in cells if c.pair + (" (pretrained)" if c.pretrained else "") == name]
        seeds = sorted({c.seed for c in mine})
        xs, ys = [], []
        for cell in mine:
            try:
                gap = 100 * (cell.metrics["vit"]["accuracy"] - cell.metrics["cnn"]["accuracy"])
            except KeyError:
                continue
            xs.append(cell.n_train)
            ys.append(gap)
            ax.plot(cell.n_train * _jitter(seeds.index(cell.seed), len(seeds)), gap, ".",
                    color="#4a5568", alpha=0.6, ms=7)  # fmt: skip
        sizes = [r.n_train for r in group]
        mean = [r.difference.estimate for r in group]
        low = [r.difference.low for r in group]
        high = [r.difference.high for r in group]
        below = [m - lo if math.isfinite(lo) else 0 for m, lo in zip(mean, low, strict=True)]
        above = [hi - m if math.isfinite(hi) else 0 for m, hi in zip(mean, high, strict=True)]
        err = [below, above]
        ax.errorbar(sizes, mean, yerr=err, fmt="o", color="black", capsize=4,
                    label="mean over seeds, 95% interval")  # fmt: skip
        ax.axhline(0, color="#a0aec0", lw=1, ls="--")
        verdict = trends.get(name)
        if verdict is not None and verdict.evidence is not None and xs:
            ev = verdict.evidence
            center_x, center_y = float(np.mean(np.log2(xs))), float(np.mean(ys))
            line = np.linspace(math.log2(min(xs)), math.log2(max(xs)), 50)
            ax.plot(2**line, center_y + ev.estimate * (line - center_x), color="#805ad5",
                    label=f"trend {ev.estimate:+.2f} points per doubling")  # fmt: skip
            if math.isfinite(ev.low) and math.isfinite(ev.high):
                a = center_y + ev.low * (line - center_x)
                b = center_y + ev.high * (line - center_x)
                ax.fill_between(2**line, np.minimum(a, b), np.maximum(a, b), color="#805ad5",
                                alpha=0.15, label=f"slope 95% interval {ev.low:+.2f} to "
                                f"{ev.high:+.2f}")  # fmt: skip
        _sizes_axis(ax, sizes)
        ax.set_ylabel("ViT - CNN test accuracy (points)")
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.suptitle("Gap against data: above zero the ViT is ahead; dots are single seeds")
    return _png(fig)


def cost_ratios(cells: Sequence[CellRecord]) -> bytes:
    """ViT/CNN ratio of each cost, one dot per cell (log scale; 1 = equal; above 1 the ViT's
    number is larger, which is worse for time and FLOPs and better for images/s)."""
    fig, ax = plt.subplots(figsize=(9, 4))
    labels = []
    for i, (metric, label) in enumerate(COST_METRICS):
        ratios = [
            c.metrics["vit"][metric] / c.metrics["cnn"][metric]
            for c in cells
            if c.metrics.get("vit", {}).get(metric) and c.metrics.get("cnn", {}).get(metric)
        ]
        labels.append(label)
        if ratios:
            offsets = np.linspace(-0.15, 0.15, len(ratios)) if len(ratios) > 1 else [0.0]
            ax.plot(i + np.asarray(offsets), ratios, "o", color="#4a5568", alpha=0.6)
            geo = float(np.exp(np.mean(np.log(ratios))))
            ax.plot([i - 0.3, i + 0.3], [geo, geo], color="black", lw=2)
    ax.axhline(1, color="#a0aec0", ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("ViT / CNN (log scale)")
    ax.set_title("Costs: one dot per cell, bar = geometric mean")
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def training_dynamics(epochs_rows: Sequence[FractionRow], gap_rows: Sequence[FractionRow]) -> bytes:
    """Epochs to 95% of the best validation accuracy, and the final train - validation gap,
    against training images, per family: means over seeds with t bands."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    panels = (
        (axes[0], epochs_rows, "epochs to 95% of best val accuracy"),
        (axes[1], gap_rows, "final train - val accuracy (points)"),
    )
    for ax, rows, label in panels:
        sizes = []
        for name, group in _groups(rows).items():
            sizes += [r.n_train for r in group]
            for family, style in (("cnn", "-o"), ("vit", "-s")):
                xs = [r.n_train for r in group]
                mean = np.array([getattr(r, family)[0] for r in group])
                low = np.array([getattr(r, family)[1] for r in group])
                high = np.array([getattr(r, family)[2] for r in group])
                ax.plot(xs, mean, style, color=COLORS[family], label=f"{ROLE[family]} ({name})")
                ok = np.isfinite(low) & np.isfinite(high)
                if ok.any():
                    ax.fill_between(np.array(xs)[ok], low[ok], high[ok], color=COLORS[family],
                                    alpha=0.15)  # fmt: skip
        if sizes:
            _sizes_axis(ax, sizes)
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle("Training: means over seeds with 95% t bands")
    return _png(fig)


def flop_curves(cells: Sequence[CellRecord]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per group and family, at the group's largest training size: the mean over seeds of the
    validation accuracy (in %) after each epoch against the training FLOPs spent by then
    (geometric mean over seeds), in increasing FLOPs: the accuracy-against-compute curve."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(dict)
    names = {c.pair + (" (pretrained)" if c.pretrained else "") for c in cells}
    for name in sorted(names):
        mine = [c for c in cells if c.pair + (" (pretrained)" if c.pretrained else "") == name]
        largest = [c for c in mine if c.n_train == max(m.n_train for m in mine)]
        for family in FAMILIES:
            runs = [list(c.compute.get(family, [])) for c in largest]
            length = min((len(r) for r in runs), default=0)
            if length == 0:
                continue
            out[name][family] = [
                (float(np.exp(np.mean([np.log(r[i][0]) for r in runs]))),
                 100 * float(np.mean([r[i][1] for r in runs])))
                for i in range(length)
            ]  # fmt: skip
    return dict(out)


def flop_crossing(curves: dict[str, list[tuple[float, float]]]) -> float | None:
    """Training FLOPs where the two families' mean curves cross (linear in log FLOPs, over
    the range both cover), the last crossing if several; None when they do not cross."""
    if not all(len(curves.get(f, [])) >= 2 for f in FAMILIES):
        return None
    logs = {f: np.log([x for x, _ in curves[f]]) for f in FAMILIES}
    low, high = max(v.min() for v in logs.values()), min(v.max() for v in logs.values())
    if low >= high:
        return None
    grid = np.linspace(low, high, 200)
    gap = np.interp(grid, logs["vit"], [a for _, a in curves["vit"]]) - np.interp(
        grid, logs["cnn"], [a for _, a in curves["cnn"]]
    )
    flips = np.nonzero(np.sign(gap[:-1]) * np.sign(gap[1:]) < 0)[0]
    if not len(flips):
        return None
    i = int(flips[-1])
    x = grid[i] - gap[i] * (grid[i + 1] - grid[i]) / (gap[i + 1] - gap[i])
    return float(np.exp(x))


def accuracy_vs_flops(cells: Sequence[CellRecord]) -> bytes | None:
    """Validation accuracy against training FLOPs spent, per family (log x), at each group's
    largest training size: thin lines single seeds, thick the mean, and the crossing."""
    curves = flop_curves(cells)
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(6.5 * len(curves), 4.4), squeeze=False)
    for ax, (name, by_family) in zip(axes[0], curves.items(), strict=True):
        mine = [c for c in cells if c.pair + (" (pretrained)" if c.pretrained else "") == name]
        largest = max(c.n_train for c in mine)
        for cell in (c for c in mine if c.n_train == largest):
            for family in FAMILIES:
                curve = cell.compute.get(family) or []
                if curve:
                    xs, ys = zip(*curve, strict=True)
                    ax.plot(xs, [100 * y for y in ys], "-", color=COLORS[family], alpha=0.3,
                            lw=1)  # fmt: skip
        for family, curve in by_family.items():
            ax.plot(*zip(*curve, strict=True), "-o", color=COLORS[family], ms=3,
                    label=f"{ROLE[family]} mean over seeds")  # fmt: skip
        crossing = flop_crossing(by_family)
        if crossing is not None:
            ax.axvline(crossing, color="#4a5568", ls="--", lw=1,
                       label=f"curves cross at {crossing:.3g} FLOPs")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("training FLOPs spent (forward x 3 per image, log scale)")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title(f"{name}, {largest:,} training images")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle("Accuracy against training compute, epoch by epoch")
    return _png(fig)
