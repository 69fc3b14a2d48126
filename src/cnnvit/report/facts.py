"""Report facts: a finished run's metrics read once, derived figures, numbers as text.

Shared by the figures, the reflection and the report itself; reads files and formats numbers,
and knows nothing of how they are shown.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..errors import CnnvitError

SIDES = ("cnn", "vit")
ROLE = {"cnn": "CNN", "vit": "ViT"}
SMALL_DATA = 10_000  # training images below which a dataset counts as small


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


def _f1_by_class(m: dict[str, Any]) -> dict[str, float]:
    rows = _get(m, "test.per_class", [])
    return {str(r.get("class")): _num(r.get("f1")) for r in rows if _num(r.get("f1")) is not None}
