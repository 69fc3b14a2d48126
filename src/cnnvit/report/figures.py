"""Report figures: learning curves, confusion matrices, per-class F1 and accuracy vs cost.

Each function takes the run's model metrics and returns PNG bytes; nothing here reads or
writes files.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib
import numpy as np

from .facts import ROLE, f1_by_class, lookup, num, show

matplotlib.use("Agg")  # no display: must be chosen before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import EngFormatter, MaxNLocator  # noqa: E402

COLORS = {"cnn": "#2b6cb0", "vit": "#dd6b20"}


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _label(k: str, m: dict[str, Any]) -> str:
    return f"{ROLE[k]} ({m.get('name', k)})"


def learning_curves(models: dict[str, dict]) -> bytes:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for k, m in models.items():
        hist = m.get("history") or []
        epochs = [row.get("epoch", i + 1) for i, row in enumerate(hist)]
        for ax, key, scale in ((axes[0], "loss", 1), (axes[1], "accuracy", 100)):
            for split, style in (("train", "--"), ("val", "-")):  # val last: the star uses it
                vals = [num(row.get(f"{split}_{key}")) for row in hist]
                ys = [np.nan if v is None else scale * v for v in vals]  # gaps, not zeros
                ax.plot(
                    epochs,
                    ys,
                    style,
                    color=COLORS[k],
                    label=f"{_label(k, m)} {split}",
                    alpha=0.6 if split == "train" else 1,
                )
            if (best := m.get("best_epoch")) in epochs:
                ax.plot(
                    best,
                    ys[epochs.index(best)],
                    "*",
                    ms=15,
                    color=COLORS[k],
                    mec="black",
                    zorder=5,
                    label=f"{_label(k, m)} best (epoch {best})",
                )
    for ax, title in zip(axes, ("Loss", "Accuracy (%)"), strict=True):
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    # One legend under both panels: inside, six entries with long model names hide the curves.
    fig.legend(
        *axes[1].get_legend_handles_labels(),
        loc="upper center",
        ncol=2,
        fontsize=9,
        bbox_to_anchor=(0.5, 0.0),
        frameon=False,
    )
    return _png(fig)


def confusions(models: dict[str, dict], class_names: list[str]) -> bytes:
    mats = {
        k: np.asarray(lookup(m, "test.confusion_matrix", [[0]]), float) for k, m in models.items()
    }
    n = max(len(c) for c in mats.values())
    names = class_names if len(class_names) == n else [str(i) for i in range(n)]
    side = min(max(4.5, 0.3 * n + 2.5), 8)
    label_size = min(9, max(4, 0.6 * 0.75 * side * 72 / n))  # names fit their cells
    panels = len(mats)  # a partial run may hold one model
    fig, axes = plt.subplots(1, panels, figsize=(panels * side + 1.5, side), squeeze=False,
                             constrained_layout=True)  # fmt: skip
    axes = list(axes[0])
    for ax, (k, cm) in zip(axes, mats.items(), strict=True):
        rows = cm.sum(1, keepdims=True)
        norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        if n <= 15:  # counts stay legible up to about 15 classes
            for (i, j), count in np.ndenumerate(cm):
                ax.text(
                    j,
                    i,
                    f"{int(count)}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
        ticks = list(range(0, n, max(1, n // 60)))  # past ~60 names only every step-th fits
        ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90 if n > 10 else 0)
        ax.set_yticks(ticks, [names[i] for i in ticks])
        ax.tick_params(labelsize=label_size)
        title = (
            f"{_label(k, models[k])}: accuracy {show(lookup(models[k], 'test.accuracy'), 'pct')}"
        )
        ax.set_title(title, fontsize=12)
        ax.set(xlabel="predicted", ylabel="true")
    fig.colorbar(image, ax=axes, shrink=0.8, label="fraction of the true class")
    return _png(fig)


def per_class_f1(models: dict[str, dict], class_names: list[str]) -> bytes:
    f1 = {k: f1_by_class(m) for k, m in models.items()}
    names = class_names or list(dict.fromkeys([*f1["cnn"], *f1["vit"]]))
    n, x = len(names), np.arange(len(names))
    width = min(max(7, 0.45 * n + 2), 24)
    fig, ax = plt.subplots(figsize=(width, 4.4))
    for i, (k, m) in enumerate(models.items()):
        ax.bar(
            x + (i - 0.5) * 0.4,
            [f1[k].get(c, np.nan) for c in names],
            0.4,
            color=COLORS[k],
            label=_label(k, m),
        )
    long = n > 10 or max(map(len, names), default=0) > 6
    step = max(1, n // 200)  # past ~200 classes only every step-th name fits
    ax.set_xticks(x[::step], names[::step], rotation=90 if long else 0)
    ax.tick_params(axis="x", labelsize=min(10, max(4, 0.6 * 72 * 0.85 * width * step / n)))
    ax.set(ylim=(0, 1.17), yticks=np.linspace(0, 1, 6), ylabel="F1 (test)", title="Per-class F1")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=9, loc="upper center", ncol=2)  # in the band above 1.0, clear of bars
    return _png(fig)


def accuracy_vs_cost(models: dict[str, dict]) -> bytes:
    panels = (
        ("params", "parameters"),
        ("flops_per_image", "FLOPs per image"),
        ("efficiency.latency_ms_batch1", "latency, batch 1 (ms)"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharey=True)
    accs = []
    for ax, (path, xlabel) in zip(axes, panels, strict=True):
        xs = []
        for k, m in models.items():
            x, acc = num(lookup(m, path)), num(lookup(m, "test.accuracy"))
            if x is None or acc is None:
                continue
            xs.append(x)
            accs.append(100 * acc)
            ax.scatter(x, 100 * acc, s=90, color=COLORS[k], edgecolor="black", zorder=3)
            # Role only: full names (in the title) would run into the next panel.
            ax.annotate(ROLE[k], (x, 100 * acc), xytext=(7, 7), textcoords="offset points")
        ax.set_xlim(0, 1.4 * max(xs) if xs else 1)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    if accs:
        axes[0].set_ylim(max(0, min(accs) - 5), min(100, max(accs) + 5))
    axes[0].set_ylabel("test accuracy (%)")
    fig.suptitle("   ".join(_label(k, m) for k, m in models.items()), fontsize=11)
    return _png(fig)
