"""The report of a finished run: four figures, `report.md` and a self-contained `report.html`.

`build_report(run_dir)` reads only `metrics.json` and `config.json`, never the training code, so a
report can be rebuilt anywhere from a copied run directory. The text is built once as a list of
plain blocks (headings, paragraphs, lists, tables, figures) and rendered twice, to Markdown and to
HTML, so both always say the same thing. Every sentence of the reflection is generated from the
measured numbers, and each usual CNN-vs-ViT claim gets a verdict from this run alone.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib
import numpy as np

from .errors import CnnvitError
from .runs import write_atomic

matplotlib.use("Agg")  # no display: must be chosen before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import EngFormatter, MaxNLocator  # noqa: E402

SIDES = ("cnn", "vit")
ROLE = {"cnn": "CNN", "vit": "ViT"}
COLORS = {"cnn": "#2b6cb0", "vit": "#dd6b20"}
SMALL_DATA = 10_000  # training images below which a dataset counts as small
CAPTIONS = {
    "learning_curves": "Learning curves: loss (left) and accuracy (right) per epoch; dashed lines "
    "are training, solid lines validation; stars mark each model's best validation epoch.",
    "confusion_matrices": "Test confusion matrices: rows are true classes, columns predictions; "
    "colour is the fraction of each true class (row-normalised).",
    "per_class_f1": "Per-class F1 on the test split.",
    "accuracy_vs_cost": "Test accuracy against parameters, FLOPs per image (forward pass) and "
    "batch-1 latency; the x axes start at zero, so horizontal distances show ratios.",
}
RESULTS = (  # (row label, path in a model's metrics, display format); "" marks text rows
    ("parameters", "params", "si"),
    ("FLOPs / image", "flops_per_image", "si"),
    ("best epoch", "best_epoch", ".0f"),
    ("test accuracy", "test.accuracy", "pct"),
    ("top-5 accuracy", "test.top5_accuracy", "pct"),
    ("macro F1", "test.macro_f1", ".3f"),
    ("test loss", "test.loss", ".3f"),
    ("train seconds", "efficiency.train_seconds", ",.1f"),
    ("train images/s", "efficiency.train_images_per_second", ",.0f"),
    ("inference images/s", "efficiency.inference_images_per_second", ",.0f"),
    ("latency ms (batch 1)", "efficiency.latency_ms_batch1", ".2f"),
    ("peak memory MB", "efficiency.peak_memory_mb", ",.0f"),
    ("precision", "training.precision", ""),
    ("memory format", "training.memory_format", ""),
    ("attention implementation", "training.attention", ""),
)


def build_report(run_dir: str | Path) -> Path:
    """Write figures, report.md and report.html into `run_dir`; returns report.html's path."""
    run_dir = Path(run_dir).expanduser()
    f = _facts(*_load(run_dir))
    pngs = {
        "learning_curves": _learning_curves(f.models),
        "confusion_matrices": _confusions(f.models, f.class_names),
        "per_class_f1": _per_class_f1(f.models, f.class_names),
        "accuracy_vs_cost": _accuracy_vs_cost(f.models),
    }
    blocks = _content(f)
    try:
        (run_dir / "figures").mkdir(exist_ok=True)
        for name, data in pngs.items():
            write_atomic(run_dir / "figures" / f"{name}.png", data)
        write_atomic(run_dir / "report.md", _markdown(blocks).encode("utf-8"))
        write_atomic(run_dir / "report.html", _html(blocks, pngs).encode("utf-8"))
    except OSError as err:
        raise CnnvitError(f"cannot write the report into {run_dir}: {err}") from None
    return run_dir / "report.html"


# --- reading -------------------------------------------------------------------------------


def _load(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if not run_dir.is_dir():
        raise CnnvitError(f"run directory {run_dir} does not exist")
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise CnnvitError(f"no metrics.json in {run_dir}: is this a finished cnnvit run directory?")
    metrics = _read_json(path)
    models = metrics.get("models")
    if not isinstance(models, dict) or not all(isinstance(models.get(k), dict) for k in SIDES):
        raise CnnvitError(f"{path} has no 'models' section with 'cnn' and 'vit': run incomplete?")
    config_path = run_dir / "config.json"  # optional: the recipe falls back to metrics.json
    return metrics, _read_json(config_path) if config_path.is_file() else {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CnnvitError(f"cannot read {path}: {err}") from None
    if not isinstance(data, dict):
        raise CnnvitError(f"cannot read {path}: expected a JSON object")
    return data


def _get(d: Any, path: str, default: Any = None) -> Any:
    """`d["a"]["b"]` for path "a.b", or `default` where any step is missing or null."""
    for key in path.split("."):
        if not isinstance(d, dict) or d.get(key) is None:
            return default
        d = d[key]
    return d


def _num(x: Any) -> float | None:
    ok = isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
    return float(x) if ok else None


def _ratio(a: Any, b: Any) -> float | None:
    a, b = _num(a), _num(b)
    return a / b if a is not None and b else None


def _epochs_to_95(m: dict) -> tuple[int | None, float | None, float | None]:
    """Epochs to reach 95% of the model's own best val accuracy; that best; the epoch-1 value."""
    rows = [
        (r.get("epoch", i + 1), _num(r.get("val_accuracy")))
        for i, r in enumerate(m.get("history") or [])
    ]
    rows = [(e, v) for e, v in rows if v is not None]
    if not rows:
        return None, None, None
    best = max(v for _, v in rows)
    return next(e for e, v in rows if v >= 0.95 * best), best, rows[0][1]


def _facts(metrics: dict[str, Any], config: dict[str, Any]) -> SimpleNamespace:
    """Everything the text needs, computed once from the two files."""
    models = {k: metrics["models"][k] for k in SIDES}
    comp = metrics.get("comparison") or {}
    acc = {k: _num(_get(models[k], "test.accuracy")) for k in SIDES}
    diff = _num(comp.get("accuracy_difference_points"))  # ViT minus CNN, in points
    if diff is None and None not in acc.values():
        diff = 100 * (acc["vit"] - acc["cnn"])
    paths = {
        "params": "params",
        "flops": "flops_per_image",
        "latency": "efficiency.latency_ms_batch1",
        "train_tp": "efficiency.train_images_per_second",
        "infer_tp": "efficiency.inference_images_per_second",
    }
    ds = metrics.get("dataset") or {}
    return SimpleNamespace(
        models=models,
        config=config,
        ds=ds,
        comp=comp,
        env=metrics.get("environment") or {},
        name=ds.get("name") or _get(config, "data.dataset", "an unnamed dataset"),
        class_names=[str(c) for c in ds.get("class_names") or []],
        who={k: f"the {ROLE[k]} ({models[k].get('name', k)})" for k in SIDES},
        acc=acc,
        diff=diff,
        p=_num(comp.get("mcnemar_p_value")),
        ratio={k: _ratio(_get(models["vit"], p), _get(models["cnn"], p)) for k, p in paths.items()},
        e95={k: _epochs_to_95(models[k]) for k in SIDES},
        n_train=_num(_get(ds, "splits.train")),
    )


# --- formatting ----------------------------------------------------------------------------


def _show(x: Any, spec: str) -> str:
    """Format a value: "pct" (fraction as %), "si" (k/M/G), a format spec, or "" for text."""
    if spec == "":
        return "—" if x is None else str(x)
    if (x := _num(x)) is None:
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


def _times(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}×"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


# --- figures -------------------------------------------------------------------------------


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _label(k: str, m: dict[str, Any]) -> str:
    return f"{ROLE[k]} ({m.get('name', k)})"


def _learning_curves(models: dict[str, dict]) -> bytes:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for k, m in models.items():
        hist = m.get("history") or []
        epochs = [row.get("epoch", i + 1) for i, row in enumerate(hist)]
        for ax, key, scale in ((axes[0], "loss", 1), (axes[1], "accuracy", 100)):
            for split, style in (("train", "--"), ("val", "-")):  # val last: the star uses it
                vals = [_num(row.get(f"{split}_{key}")) for row in hist]
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


def _confusions(models: dict[str, dict], class_names: list[str]) -> bytes:
    mats = {
        k: np.asarray(_get(m, "test.confusion_matrix", [[0]]), float) for k, m in models.items()
    }
    n = max(len(c) for c in mats.values())
    names = class_names if len(class_names) == n else [str(i) for i in range(n)]
    side = min(max(4.5, 0.3 * n + 2.5), 8)
    label_size = min(9, max(4, 0.6 * 0.75 * side * 72 / n))  # names fit their cells
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1.5, side), constrained_layout=True)
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
        title = f"{_label(k, models[k])}: accuracy {_show(_get(models[k], 'test.accuracy'), 'pct')}"
        ax.set_title(title, fontsize=12)
        ax.set(xlabel="predicted", ylabel="true")
    fig.colorbar(image, ax=axes, shrink=0.8, label="fraction of the true class")
    return _png(fig)


def _f1_by_class(m: dict[str, Any]) -> dict[str, float]:
    rows = _get(m, "test.per_class", [])
    return {str(r.get("class")): _num(r.get("f1")) for r in rows if _num(r.get("f1")) is not None}


def _per_class_f1(models: dict[str, dict], class_names: list[str]) -> bytes:
    f1 = {k: _f1_by_class(m) for k, m in models.items()}
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


def _accuracy_vs_cost(models: dict[str, dict]) -> bytes:
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
            x, acc = _num(_get(m, path)), _num(_get(m, "test.accuracy"))
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


# --- content -------------------------------------------------------------------------------

Block = tuple[Any, ...]  # ("h1"|"h2"|"h3"|"p"|"pre", text), ("ul", items),
# ("table", header, rows, alignments), ("figure", name, caption)


def _content(f: SimpleNamespace) -> list[Block]:
    acc = _accuracy_sentences(f)
    r = f.ratio
    cost = (
        f"Relative to the CNN, the ViT has {_times(r['params'])} the parameters, "
        f"{_times(r['flops'])} the FLOPs per image and {_times(r['latency'])} the batch-1 "
        "latency."
    )
    env_keys = (
        "device",
        "threads",
        "torch",
        "transformers",
        "cnnvit",
        "git_commit",
        "python",
        "platform",
        "cpu",
        "timestamp",
    )
    env = [
        f"{'date' if k == 'timestamp' else k.replace('_', ' '):<13} {_get(f.env, k, 'n/a')}"
        for k in env_keys
    ]
    env.append(f"{'report built':<13} {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    cnn, vit = f.models["cnn"], f.models["vit"]
    results = [
        [
            label,
            _show(_get(cnn, path), spec),
            _show(_get(vit, path), spec),
            _times(_ratio(_get(vit, path), _get(cnn, path))) if spec else "—",
        ]
        for label, path, spec in RESULTS
    ]
    header = [
        "",
        f"CNN: {cnn.get('name', 'cnn')}",
        f"ViT: {vit.get('name', 'vit')}",
        "ratio (ViT/CNN)",
    ]
    return [
        ("h1", f"CNN vs ViT on {f.name}"),
        ("p", " ".join([acc[0], acc[2], cost])),
        *_setup(f),
        ("h2", "Results"),
        ("table", header, results, "lrrr"),
        ("h2", "Figures"),
        *(("figure", k, c) for k, c in CAPTIONS.items()),
        ("h2", "Reflection"),
        ("h3", "Accuracy"),
        ("p", " ".join(s for s in acc if s)),
        ("h3", "Cost"),
        ("p", _cost_text(f)),
        ("h3", "Learning speed"),
        ("p", _speed_text(f)),
        ("h3", "Overfitting"),
        ("p", _overfit_text(f)),
        ("h3", "The usual claims"),
        ("ul", _claims(f)),
        ("h3", "Caveats"),
        ("ul", _caveats(f)),
        ("h2", "Environment"),
        ("pre", "\n".join(env)),
    ]


def _setup(f: SimpleNamespace) -> list[Block]:
    t, tr = f.config.get("train") or {}, f.models["cnn"].get("training") or {}
    names = f.class_names
    shown = ", ".join(names[:20]) + (f", … ({len(names) - 20} more)" if len(names) > 20 else "")
    splits = {k: _show(_get(f.ds, f"splits.{k}"), ",.0f") for k in ("train", "validation", "test")}
    lrs = {k: _num(_get(f.models[k], "training.lr")) for k in SIDES}
    if None not in lrs.values() and not math.isclose(lrs["cnn"], lrs["vit"]):
        same = (
            f"The two models used per-family learning rates: {lrs['cnn']:g} for the CNN and "
            f"{lrs['vit']:g} for the ViT; the rest of the recipe was the same."
        )
    else:
        lr = lrs["cnn"] or _num(t.get("lr"))
        same = f"Both models used the same learning rate ({_show(lr, 'g')}) and the same recipe."
    warmup, augment = _num(t.get("warmup_fraction")), t.get("augment")
    precision = {str(_get(m, "training.precision", "n/a")) for m in f.models.values()}
    recipe = [
        ("epochs", t.get("epochs", tr.get("epochs", "n/a"))),
        ("batch size", t.get("batch_size", tr.get("batch_size", "n/a"))),
        ("weight decay (AdamW)", t.get("weight_decay", "n/a")),
        ("warmup", "n/a" if warmup is None else f"{_show(warmup, 'pct')} of steps"),
        ("label smoothing", t.get("label_smoothing", "n/a")),
        (
            "augmentation",
            "n/a"
            if augment is None
            else ("random affine" if augment else "none")
            + (" + horizontal flips" if t.get("hflip") else ""),
        ),
        ("precision", " / ".join(sorted(precision))),
        ("device", tr.get("device") or _get(f.config, "resolved.device", "n/a")),
        ("seed", t.get("seed", "n/a")),
        ("torch.compile", "on" if tr.get("compiled", t.get("compile")) else "off"),
    ]
    models = [
        [
            ROLE[k],
            m.get("name", "n/a"),
            m.get("source", "n/a"),
            "yes" if m.get("pretrained") else "no",
            _show(m.get("params"), "si"),
            _show(m.get("flops_per_image"), "si"),
        ]
        for k, m in f.models.items()
    ]
    return [
        ("h2", "Setup"),
        (
            "p",
            f"Dataset {f.name}: {f.ds.get('num_classes', len(names))} classes ({shown}); "
            f"{splits['train']} training, {splits['validation']} validation and "
            f"{splits['test']} test images.",
        ),
        ("p", same),
        ("table", ["setting", "value"], [[k, str(v)] for k, v in recipe], "ll"),
        (
            "table",
            ["", "model", "source", "pretrained", "parameters", "FLOPs / image"],
            models,
            "llllrr",
        ),
    ]


# --- reflection: every sentence carries the measured numbers it rests on --------------------


def _accuracy_sentences(f: SimpleNamespace) -> list[str]:
    """[who won, the paired counts, whether it means anything, the seed caveat]."""
    d, p, c = f.diff, f.p, f.comp
    if d is None:
        won = "Test accuracy was not recorded for both models, so there is no winner."
    elif abs(d) < 0.05:
        won = (
            f"The two models tied on test accuracy ({_show(f.acc['cnn'], 'pct')} for the CNN, "
            f"{_show(f.acc['vit'], 'pct')} for the ViT)."
        )
    else:
        w, lose = ("vit", "cnn") if d > 0 else ("cnn", "vit")
        won = (
            f"{_cap(f.who[w])} won on test accuracy by {abs(d):.1f} points: "
            f"{_show(f.acc[w], 'pct')} against {_show(f.acc[lose], 'pct')} for the "
            f"{ROLE[lose]}."
        )
    counts = (
        ""
        if p is None or "only_cnn_correct" not in c
        else (
            f"Of the {c.get('test_size', 'n/a')} test images both models got "
            f"{c.get('both_correct', 'n/a')} right and {c.get('both_wrong', 'n/a')} wrong; "
            "only the "
            f"CNN was right on {c['only_cnn_correct']} and only the ViT on "
            f"{c.get('only_vit_correct', 'n/a')}. McNemar's exact test on these paired predictions "
            f"gives {_p(p)}."
        )
    )
    if p is None:
        means = "No paired test predictions were recorded, so whether it is meaningful is unknown."
    elif p >= 0.05:
        means = (
            f"With {_p(p)} the difference is too small to mean anything from one run on "
            "this test set."
        )
    else:
        means = f"With {_p(p)} a gap this one-sided is unlikely to be chance on this test set."
    seed = (
        "This is one seed, which does not measure seed-to-seed variation: another "
        "initialisation and data order could move either model by an unknown amount."
    )
    return [won, counts, means, seed]


# Timings closer than this ratio are reported as the same cost, not as a win.
SAME_COST = 1.1


def _cost_text(f: SimpleNamespace) -> str:
    r = f.ratio
    text = (
        f"Relative to the CNN, the ViT has {_times(r['params'])} the parameters and "
        f"{_times(r['flops'])} the FLOPs per image, and its batch-1 latency is "
        f"{_times(r['latency'])} the CNN's. Its throughput is {_times(r['train_tp'])} the "
        f"CNN's in training and {_times(r['infer_tp'])} in inference (images per second)."
    )
    secs = {k: _num(_get(f.models[k], "efficiency.train_seconds")) for k in SIDES}
    if None not in secs.values():
        k = min(SIDES, key=lambda s: secs[s])
        other = "vit" if k == "cnn" else "cnn"
        if secs[other] > SAME_COST * secs[k]:
            text += (
                f" {_cap(f.who[k])} was cheaper to train ({secs[k]:,.1f} s against "
                f"{secs[other]:,.1f} s)."
            )
        else:  # run-to-run timing noise on a shared machine is of this order
            text += (
                f" Both took about as long to train ({secs['cnn']:,.1f} s for the CNN, "
                f"{secs['vit']:,.1f} s for the ViT: within {SAME_COST - 1:.0%})."
            )
    close = [
        r[key] is not None and 1 / SAME_COST <= r[key] <= SAME_COST
        for key in ("latency", "infer_tp")
    ]
    if all(close):
        text += " Both cost about the same to run (latency and throughput within 10%)."
    elif r["latency"] is not None and r["infer_tp"] is not None:
        one = "vit" if r["latency"] < 1 else "cnn"
        bulk = "vit" if r["infer_tp"] > 1 else "cnn"
        text += (
            f" {_cap(f.who[one])} is cheaper to run, both one image at a time and in batches."
            if one == bulk
            else f" Which is cheaper to run depends on batch size: {f.who[one]} has the lower "
            f"batch-1 latency, {f.who[bulk]} the higher batched throughput."
        )
    return text


def _speed_text(f: SimpleNamespace) -> str:
    (ec, bc, fc), (ev, bv, fv) = f.e95["cnn"], f.e95["vit"]
    if ec is None or ev is None:
        return "The validation history is missing, so learning speed cannot be compared."
    text = (
        f"To reach 95% of its own best validation accuracy, the CNN needed {ec} epoch"
        f"{'s' * (ec != 1)} (best {_show(bc, 'pct')}) and the ViT {ev} (best "
        f"{_show(bv, 'pct')}). After epoch 1, validation accuracy was {_show(fc, 'pct')} for "
        f"the CNN and {_show(fv, 'pct')} for the ViT."
    )
    # An epoch or two (under 10% of the run) is within what another seed could change.
    margin = max(1, round(0.1 * len(_get(f.models["cnn"], "history") or [])))
    if abs(ec - ev) > margin:
        faster = "cnn" if ec < ev else "vit"
        return text + f" {_cap(f.who[faster])} learned faster."
    return text + (
        f" Both learned at about the same speed (epoch counts within {margin} of each other)."
    )


def _overfit_text(f: SimpleNamespace) -> str:
    gaps = {}
    for k in SIDES:
        last = (f.models[k].get("history") or [{}])[-1]
        tr, va = _num(last.get("train_accuracy")), _num(last.get("val_accuracy"))
        gaps[k] = None if tr is None or va is None else 100 * (tr - va)
    if None in gaps.values():
        return "The training history is missing, so overfitting cannot be judged."
    text = (
        f"At the final epoch, training accuracy minus validation accuracy was "
        f"{gaps['cnn']:+.1f} points for the CNN and {gaps['vit']:+.1f} for the ViT."
    )
    big = max(SIDES, key=lambda s: gaps[s])
    text += (
        " Neither overfits much (both gaps are under 5 points)."
        if gaps[big] < 5
        else f" {_cap(f.who[big])} overfits more."
    )
    if min(gaps.values()) < 0 and _get(f.config, "train.augment", True):
        text += (
            " A negative gap is expected here: training accuracy is measured on augmented "
            "batches during the epoch, which are harder than the validation images."
        )
    return text


def _claims(f: SimpleNamespace) -> list[str]:
    d, r, vit = f.diff, f.ratio, f.models["vit"]
    cnn_sig = f.p is not None and f.p < 0.05 and d is not None and d < 0
    vit_sig = f.p is not None and f.p < 0.05 and d is not None and d > 0
    size = "an unknown number of" if f.n_train is None else f"{int(f.n_train):,}"
    gap = f"ViT minus CNN: {_show(d, '+.1f')} points"
    # (a) CNNs are strong on small data
    if f.n_train is None or f.n_train >= SMALL_DATA:
        a = (
            f"**not tested by this run**: with {size} training images this is not a small "
            f"dataset (below ~{SMALL_DATA:,} counts as small)."
        )
    elif cnn_sig:
        a = f"**consistent with** this run: with {size} training images the CNN won ({gap})."
    else:
        a = (
            f"**not supported by** this run: with {size} training images the CNN did not beat "
            f"the ViT by a meaningful margin ({gap})."
        )
    # (b) ViTs are data-hungry: behind on accuracy, or clearly slower to learn, at this size
    (ec, _, _), (ev, _, _) = f.e95["cnn"], f.e95["vit"]
    epochs = len(vit.get("history") or [])
    slower = ec is not None and ev is not None and ev >= ec + max(1, round(0.1 * epochs))
    if vit.get("pretrained"):
        b = (
            "**not tested by this run**: the ViT was pretrained, so much of its data came from "
            "outside this dataset."
        )
    elif cnn_sig or (slower and not vit_sig):
        b = (
            f"**consistent with** this run: with {size} training images the ViT "
            + (
                f"trailed the CNN ({gap})"
                if cnn_sig
                else f"needed {ev} epochs to reach 95% of its best, the CNN {ec}"
            )
            + "."
        )
    else:
        b = (
            f"**not supported by** this run: with {size} training images the ViT trained from "
            f"scratch was not behind ({gap}; epochs to 95% of best: CNN {ec or 'n/a'}, "
            f"ViT {ev or 'n/a'})."
        )
    b += (
        " One data size cannot show how the gap changes with data; a --max-train-samples sweep can."
    )
    # (c) ViTs cost more to run, at a similar parameter count
    costs = {
        "FLOPs per image": r["flops"],
        "batch-1 latency": r["latency"],
        "inference throughput": r["infer_tp"] and 1 / r["infer_tp"],
        "training throughput": r["train_tp"] and 1 / r["train_tp"],
    }
    known = {k: v for k, v in costs.items() if v is not None}
    costlier = [k for k, v in known.items() if v > 1]
    if not known:
        c = "**not tested by this run**: no cost measurements were recorded."
    elif r["params"] is None or not 0.5 <= r["params"] <= 2:
        c = (
            f"**not tested by this run**: the ViT has {_times(r['params'])} the CNN's "
            "parameters, not a similar size, so cost differences mix size with architecture."
        )
    else:
        verdict = "consistent with" if len(costlier) > len(known) / 2 else "not supported by"
        c = (
            f"**{verdict}** this run: at {_times(r['params'])} the CNN's parameters, the ViT was "
            f"costlier on {len(costlier)} of {len(known)} measures"
            + (f" ({', '.join(costlier)})" if costlier else "")
            + "."
        )
    # (d) local features vs global context: only per-class F1 hints at where they differ
    f1 = {k: _f1_by_class(f.models[k]) for k in SIDES}
    diffs = sorted(
        ((abs(f1["vit"][n] - f1["cnn"][n]), n) for n in f1["cnn"] if n in f1["vit"]), reverse=True
    )
    top = [n for gap_f1, n in diffs[:3] if gap_f1 >= 0.005]
    e = (
        "**not tested by this run**: it measures accuracy, not what each model looks at; "
        "attention maps, Grad-CAM and robustness sweeps (occlusion, patch shuffling) would."
    )
    e += (
        " Per-class F1 differs most on "
        + "; ".join(f"'{n}' (CNN {f1['cnn'][n]:.2f}, ViT {f1['vit'][n]:.2f})" for n in top)
        + "."
        if top
        else " Per-class F1 is the same for both models to two decimals."
    )
    return [
        f"CNNs are strong on small data: {a}",
        f"ViTs are data-hungry: {b}",
        f"ViTs are more expensive: {c}",
        f"CNNs capture local features, ViTs global context: {e}",
    ]


def _caveats(f: SimpleNamespace) -> list[str]:
    size = "n/a" if f.n_train is None else f"{int(f.n_train):,}"
    pre = [f.who[k] for k in SIDES if f.models[k].get("pretrained")]
    seed = _get(f.config, "train.seed")
    return [
        f"One seed{'' if seed is None else f' ({seed})'}: seed-to-seed variation is not measured.",
        f"One dataset size ({size} training images): how the comparison changes with more or "
        "less data is not measured.",
        f"{_cap(' and '.join(pre))} started from pretrained weights, which bring outside data: "
        "the comparison is then also of the pretraining, not only of the architecture."
        if pre
        else "Both models were trained from scratch on this dataset alone.",
        "Timings come from one device and depend on hardware, batch size, precision and "
        "software versions.",
    ]


# --- rendering -----------------------------------------------------------------------------


def _markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"{'#' * int(kind[1])} {rest[0]}")
        elif kind == "p":
            out.append(rest[0])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in rest[0]))
        elif kind == "table":
            header, rows, align = rest
            rule = ["---:" if a == "r" else "---" for a in align]
            out.append(
                "\n".join(
                    "| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"
                    for row in [header, rule, *rows]
                )
            )
        elif kind == "figure":
            out.append(f"![{rest[1]}](figures/{rest[0]}.png)\n\n*{rest[1]}*")
        elif kind == "pre":
            out.append(f"```text\n{rest[0]}\n```")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Escape text for HTML; `**x**` (the only markup the content uses) becomes bold."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(str(text)))


CSS = """
body{font:16px/1.6 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a202c;
 max-width:1000px;margin:0 auto;padding:2rem 1.5rem 4rem;background:#fff}
h1{font-size:2rem;margin:0 0 1rem}h3{margin:1.6rem 0 .4rem;color:#2d3748}
h2{margin-top:2.5rem;border-bottom:2px solid #e2e8f0;padding-bottom:.3rem}
.scroll{overflow-x:auto;margin:1rem 0}table{border-collapse:collapse;font-size:.93rem}
th,td{padding:.4rem .8rem;border-bottom:1px solid #e2e8f0;text-align:left;vertical-align:top}
th{background:#edf2f7;font-weight:600}tr:nth-child(even) td{background:#f7fafc}
td.r,th.r{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:2rem 0}img{max-width:100%;height:auto;border:1px solid #e2e8f0;border-radius:4px}
figcaption{color:#4a5568;font-size:.92rem;margin-top:.4rem}li{margin:.4rem 0}
pre{background:#f7fafc;border:1px solid #e2e8f0;border-radius:4px;padding:1rem;overflow-x:auto}
"""


def _cells(row: list, cls: list[str], tag: str) -> str:
    return "".join(f"<{tag}{c}>{_inline(v)}</{tag}>" for c, v in zip(cls, row, strict=True))


def _html(blocks: list[Block], pngs: dict[str, bytes]) -> str:
    out: list[str] = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "h3", "p"):
            out.append(f"<{kind}>{_inline(rest[0])}</{kind}>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in rest[0]) + "</ul>")
        elif kind == "table":
            header, rows, align = rest
            cls = [' class="r"' if a == "r" else "" for a in align]
            body = "".join(f"<tr>{_cells(row, cls, 'td')}</tr>" for row in rows)
            out.append(
                f'<div class="scroll"><table><thead><tr>{_cells(header, cls, "th")}</tr>'
                f"</thead><tbody>{body}</tbody></table></div>"
            )
        elif kind == "figure":  # embedded, so the page is one file that can be mailed around
            data = base64.b64encode(pngs[rest[0]]).decode("ascii")
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{rest[0]}">'
                f"<figcaption>{_inline(rest[1])}</figcaption></figure>"
            )
        elif kind == "pre":
            out.append(f"<pre>{html.escape(rest[0])}</pre>")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(blocks[0][1])}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(out)
        + "\n</body></html>\n"
    )
