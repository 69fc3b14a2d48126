"""The report of a finished run: four figures, `report.md` and a self-contained `report.html`.

`build_report(run_dir)` reads only `metrics.json` and `config.json`, never the training code, so a
report can be rebuilt anywhere from a copied run directory. The text is built once as a list of
plain blocks (headings, paragraphs, lists, tables, figures) and rendered twice, to Markdown and to
HTML, so both always say the same thing. Every sentence of the reflection is generated from the
measured numbers, and each usual CNN-vs-ViT claim gets a verdict from this run alone.

This module assembles and renders; report_facts.py reads the run and formats numbers,
report_figures.py draws the plots, report_reflection.py writes the reflection's sentences.
"""

from __future__ import annotations

import base64
import html
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..errors import CnnvitError
from ..runs import write_atomic
from .facts import ROLE, SIDES, _facts, _get, _load, _num, _ratio, _show, _times
from .figures import _accuracy_vs_cost, _confusions, _learning_curves, _per_class_f1
from .reflection import (
    _accuracy_sentences,
    _caveats,
    _claims,
    _cost_text,
    _overfit_text,
    _speed_text,
)

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
