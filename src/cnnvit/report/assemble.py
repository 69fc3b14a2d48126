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

import math
from datetime import datetime, timezone
from pathlib import Path

from ..evidence import VERDICT_COLUMNS, verdict_row, verdict_sentence
from ..models.adaptation import DEFAULT_RULE, adaptation_sentence
from ..runs import load_run
from .budget import budget_blocks
from .facts import ROLE, SIDES, RunFacts, facts_from_run, lookup, num, ratio, show, times
from .figures import accuracy_vs_cost, confusions, learning_curves, per_class_f1
from .probes import probe_blocks
from .reflection import (
    accuracy_sentences,
    caveats,
    cost_text,
    overfit_text,
    pretraining_text,
    speed_text,
)
from .render import Block, write_report

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
    ("inference batch", "efficiency.inference_batch_size", ".0f"),
    ("latency ms (batch 1)", "efficiency.latency_ms_batch1", ".2f"),
    ("peak memory MB", "efficiency.peak_memory_mb", ",.0f"),
    ("precision", "training.precision", ""),
    ("memory format", "training.memory_format", ""),
    ("attention implementation", "training.attention", ""),
)


def build_report(run_dir: str | Path) -> Path:
    """Write figures, report.md and report.html into `run_dir`; returns report.html's path.

    Reads the run through `load_run` only. A partial run (failed or interrupted) gets a report
    of what it holds, headed by what is missing.
    """
    run = load_run(run_dir)
    f = facts_from_run(run)
    pngs: dict[str, bytes] = {}
    if f.models:
        pngs["learning_curves"] = learning_curves(f.models)
        pngs["confusion_matrices"] = confusions(f.models, f.class_names)
        pngs["per_class_f1"] = per_class_f1(f.models, f.class_names)
        pngs["accuracy_vs_cost"] = accuracy_vs_cost(f.models)
    blocks = _content(f, pngs)
    extra, probe_pngs = probe_blocks(f, run.path)
    at = next(i for i, b in enumerate(blocks) if b[:2] == ("h2", "Environment"))
    return write_report(run.path, [*blocks[:at], *extra, *blocks[at:]], {**pngs, **probe_pngs})


ENV_KEYS = ("device", "threads", "torch", "transformers", "cnnvit", "git_commit", "python",
            "platform", "cpu", "cpu_capability", "cpu_bf16", "cpu_bf16_speedup",
            "timestamp")  # fmt: skip


def _content(f: RunFacts, pngs: dict[str, bytes]) -> list[Block]:
    env = [
        f"{'date' if k == 'timestamp' else k.replace('_', ' '):<15} "
        f"{lookup(f.environment, k, 'n/a')}"
        for k in ENV_KEYS
    ]
    env.append(f"{'report built':<15} {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    sides = [k for k in SIDES if k in f.models]
    results = [
        [label, *(show(lookup(f.models[k], path), spec) for k in sides)]
        + (
            [times(ratio(lookup(f.models["vit"], path), lookup(f.models["cnn"], path)))
             if spec else "—"]
            if f.both else []
        )
        for label, path, spec in RESULTS
    ]  # fmt: skip
    header = ["", *(f"{ROLE[k]}: {f.models[k].get('name', k)}" for k in sides)]
    header += ["ratio (ViT/CNN)"] if f.both else []
    figures = [("figure", k, c) for k, c in CAPTIONS.items() if k in pngs]
    environment = [("h2", "Environment"), ("pre", "\n".join(env))]
    if not f.both:
        held = ", ".join(f.who[k] for k in sides) or "no finished model"
        return [
            ("h1", f"CNN vs ViT on {f.name} (incomplete run)"),
            (
                "p",
                f"This run is **{f.status}**. It holds {held}. Missing: "
                f"{'; '.join(f.missing)}. The comparison and the reflection need both models: "
                "run `cnnvit compare` again with the same settings.",
            ),  # fmt: skip
            *_setup(f),
            *(
                [("h2", "Results"), ("table", header, results, "l" + "r" * len(sides))]
                if sides
                else []
            ),  # fmt: skip
            *([("h2", "Figures"), *figures] if figures else []),
            *environment,
        ]
    acc = accuracy_sentences(f)
    r = f.ratio
    cost = (
        f"Relative to the CNN, the ViT has {times(r['params'])} the parameters, "
        f"{times(r['flops'])} the FLOPs per image and {times(r['latency'])} the batch-1 "
        "latency."
    )
    return [
        ("h1", f"CNN vs ViT on {f.name}"),
        ("p", " ".join([acc[0], acc[2], cost])),
        *_setup(f),
        ("h2", "Results"),
        ("table", header, results, "lrrr"),
        ("h2", "Figures"),
        *figures,
        ("h2", "Reflection"),
        ("h3", "Accuracy"),
        ("p", " ".join(s for s in acc if s)),
        ("h3", "Cost"),
        ("p", cost_text(f)),
        ("h3", "Learning speed"),
        ("p", speed_text(f)),
        ("h3", "Overfitting"),
        ("p", overfit_text(f)),
        ("h3", "The usual claims"),
        (
            "p",
            "Each claim is judged by cnnvit's evidence engine, the same one the study "
            "uses: from one run it can only settle what one seed and one data size can show. "
            "Run `cnnvit study` for seeds and data sizes.",
        ),  # fmt: skip
        ("p", pretraining_text(f)),
        (
            "table",
            list(VERDICT_COLUMNS),
            [[verdict_row(v)[c] for c in VERDICT_COLUMNS] for v in f.verdicts],
            "l" * len(VERDICT_COLUMNS),
        ),  # fmt: skip
        ("ul", [verdict_sentence(v) for v in f.verdicts]),
        ("h3", "Caveats"),
        ("ul", caveats(f)),
        *environment,
    ]


def _per_model(f: RunFacts, path: str, spec: str, configured: object) -> str:
    """A resolved recipe value from the model records: one value, or one per model."""
    values = {k: show(lookup(m, path), spec) for k, m in f.models.items() if lookup(m, path)
              is not None}  # fmt: skip
    if not values:
        return str(configured)  # a run from before the recipe was recorded per model
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return ", ".join(f"{v} ({ROLE[k]})" for k, v in values.items())


def _regularised_from(f: RunFacts) -> str:
    """When each model trained with label smoothing and augmentation, as its epochs' rows
    recorded it (each row holds its share of the recipe's strengths)."""
    said = {}
    for family, m in f.models.items():
        rows = m.get("history") or []
        shares = [float(r.get("regularisation", 1)) if r.get("regularised") else 0.0 for r in rows]
        on = [epoch for epoch, share in enumerate(shares, start=1) if share > 0]
        amounts = [lookup(m, f"training.{k}") for k in ("label_smoothing", "augment_strength")]
        if not on or all(a is not None and float(a) == 0 for a in amounts):
            said[family] = "none"
        elif len(set(shares)) == 1:
            said[family] = "every epoch, at full strength"
        else:
            said[family] = (f"from epoch {on[0]} ({shares[on[0] - 1]:.0%} of full strength) to "
                            f"epoch {len(shares)} ({shares[-1]:.0%})")  # fmt: skip
    if len(set(said.values())) == 1:
        return next(iter(said.values()), "n/a")
    return "; ".join(f"{ROLE[k]}: {v}" for k, v in said.items())


def _adaptation(f: RunFacts) -> list[Block]:
    """The --adapt mode, each model's trainable parameters and the default's rule; under
    probe,full, the probe beside the full fine-tune for each model."""
    mode = str(f.config.train.adapt)
    trainable = {ROLE[k]: lookup(m, "training.trainable_params") for k, m in f.models.items()}
    blocks: list[Block] = [("p", f"{adaptation_sentence(mode, trainable)} {DEFAULT_RULE}")]
    rows = []
    for k, m in f.models.items():
        probe = lookup(m, "adaptation.probe") or {}
        full, linear = num(lookup(m, "test.accuracy")), num(probe.get("test_accuracy"))
        if full is None or linear is None:
            continue
        rows.append([ROLE[k], m.get("name", "n/a"), show(linear, ".2%"), show(full, ".2%"),
                     show(100 * (full - linear), "+.1f"), show(probe.get("seconds"), ".1f"),
                     show(lookup(m, "efficiency.train_seconds"), ".1f")])  # fmt: skip
    if rows:
        blocks.append(
            ("table", ["", "model", "linear probe", "full fine-tune", "gap (points)",
                       "probe time (s)", "full training (s)"], rows, "llrrrrr")
        )  # fmt: skip
    return blocks


def _tuning(f: RunFacts) -> list[Block]:
    """How each model's learning rate was chosen: every trial, the choice and its reason."""
    said, rows, spent = [], [], {}
    for k, m in f.models.items():
        tuning = m.get("tuning") or {}
        if num(tuning.get("chosen_lr")) is None:
            continue  # a run from before tuning was recorded
        trials = tuning.get("trials") or []
        said.append(f"{ROLE[k]} ({m.get('name', k)}): {tuning['chosen_lr']:g}, because "
                    f"{tuning.get('reason', 'n/a')}.")  # fmt: skip
        last = max((t["round"] for t in trials), default=0)
        for t in trials:
            chosen = t["round"] == last and math.isclose(t["lr"], tuning["chosen_lr"])
            rows.append([ROLE[k], str(t["round"]), f"{t['lr']:g}", f"{t['images_trained']:,}",
                         show(t["val_accuracy"], "pct"), show(t["val_loss"], ".4f"),
                         "chosen" if chosen else ""])  # fmt: skip
        if trials:
            spent[k] = int(tuning.get("images_used") or 0)
    if not said:
        return []
    blocks: list[Block] = [("p", "How each learning rate was chosen:"), ("ul", said)]
    if rows:
        budget = (
            f"Both models spent the same tuning budget: {next(iter(spent.values())):,} training "
            "images each."
            if len(spent) == 2 and len(set(spent.values())) == 1
            else "Tuning budgets (training images): "
            + ", ".join(f"{ROLE[k]} {v:,}" for k, v in spent.items())
            + "."
        )
        blocks += [
            ("p", "Each tuned model tried its family's four rates on the validation split "
                  "(never the test split) by successive halving: every rate trained a short run "
                  "from the model's initial weights, and the family's usual rate and the most "
                  "accurate of the others trained again for twice as long. Ranking: a rate not "
                  "significantly below the best accuracy (two-sided z-test, 5% family-wise over "
                  "the three alternatives to the usual rate) counts as tied with it, and of tied "
                  "rates the one nearest the family's usual rate (CNN 2e-3, ViT 5e-4; a tenth "
                  "for pretrained models) ranks first. " + budget),
            ("table", ["model", "round", "lr", "images", "val accuracy", "val loss", ""],
             rows, "lrrrrrl"),
        ]  # fmt: skip
    return blocks


def _setup(f: RunFacts) -> list[Block]:
    t = f.config.train
    names = f.class_names
    shown = ", ".join(names[:20]) + (f", … ({len(names) - 20} more)" if len(names) > 20 else "")
    splits = {
        k: show(lookup(f.dataset, f"splits.{k}"), ",.0f") for k in ("train", "validation", "test")
    }
    lrs = {k: num(lookup(m, "training.lr")) for k, m in f.models.items()}
    known = [v for v in lrs.values() if v is not None]
    if f.both and len(known) == 2 and not math.isclose(known[0], known[1]):
        same = (
            f"The two models used per-family learning rates: {lrs['cnn']:g} for the CNN and "
            f"{lrs['vit']:g} for the ViT; the rest of the recipe was the same."
        )
    else:
        lr = known[0] if known else t.lr
        same = f"Both models used the same learning rate ({show(lr, 'g')}) and the same recipe."
    precision = {str(lookup(m, "training.precision", "n/a")) for m in f.models.values()}
    pair = f.extra.get("pairing") or {}
    pairing = ""
    if num(pair.get("params_ratio")) is not None and num(pair.get("flops_ratio")) is not None:
        names = {"params": "parameter count", "flops": "FLOPs per image"}
        asked = pair.get("match") or {}
        ratios = (
            f"the ViT has {times(pair['params_ratio'])} the CNN's parameters and "
            f"{times(pair['flops_ratio'])} its FLOPs per image"
        )
        if asked and not asked.get("met"):
            on = names.get(asked.get("on"), str(asked.get("on")))
            pairing = (
                f"The pair is unmatched on {on} (--match {asked.get('on')}): the ViT has "
                f"{times(asked.get('ratio'))} the CNN's, outside the "
                f"{float(asked.get('tolerance', 0)):.0%} tolerance; {ratios}."
            )
        else:
            matched = pair.get("matched_on")
            within = f", within {float(asked['tolerance']):.0%}" if asked else ""
            pairing = (
                f"The pair was matched on {names.get(matched, str(matched))} (--match "
                f"{matched}{within}): {ratios}."
            )
    augment = ("random affine" if t.augment else "none") + (
        " + horizontal flips" if t.hflip else ""
    )
    strength = _per_model(f, "training.augment_strength", ".2f", t.augment_strength)
    recipe = [
        ("epochs", t.epochs),
        ("batch size", t.batch_size),
        ("weight decay (AdamW)", _per_model(f, "training.weight_decay", "g", t.weight_decay)),
        (
            "warmup",
            f"{_per_model(f, 'training.warmup_fraction', 'pct', t.warmup_fraction)} of steps",
        ),
        ("label smoothing", _per_model(f, "training.label_smoothing", "g", t.label_smoothing)),
        ("augmentation", augment if not t.augment else f"{augment}, strength {strength}"),
        ("label smoothing and augmentation used", _regularised_from(f)),
        ("precision", " / ".join(sorted(precision)) or "n/a"),
        ("device", lookup(f.extra, "resolved.device", "n/a")),
        ("split seed / training seed", f"{f.config.data.split_seed} / {t.seed}"),
        ("torch.compile", "on" if t.compile else "off"),
    ]
    models = [
        [ROLE[k], m.get("name", "n/a"), m.get("source", "n/a"),
         lookup(m, "pretraining.data") or ("unknown" if m.get("pretrained") else "none"),
         show(m.get("params"), "si"),
         show(m.get("flops_per_image"), "si")]
        for k, m in f.models.items()
    ]  # fmt: skip
    return [
        ("h2", "Setup"),
        (
            "p",
            f"Dataset {f.name}: {f.dataset.get('num_classes', len(names))} classes ({shown}); "
            f"{splits['train']} training, {splits['validation']} validation and "
            f"{splits['test']} test images.",
        ),
        ("p", same),
        *_adaptation(f),
        *([("p", pairing)] if pairing else []),
        *_tuning(f),
        *budget_blocks(f),
        ("table", ["setting", "value"], [[k, str(v)] for k, v in recipe], "ll"),
        ("table", ["", "model", "source", "pretraining", "parameters", "FLOPs / image"], models,
         "llllrr"),
    ]  # fmt: skip
