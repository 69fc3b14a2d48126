"""The study report: verdicts first, then the evidence each one rests on, then what it cost.

`build_study_report(study_dir)` reads the study directory through `load_study` (which reads every
cell through `load_run`), judges every declared claim with the evidence engine over the finished
cells, and renders blocks to report.md and report.html with `render.write_report`, as the run
report does. Every verdict is worded by the engine's wording helpers, so the study report and a
run's reflection say the same thing about the same evidence. `cnnvit report STUDY_DIR` rebuilds
it; a study still running or interrupted gets a report of the cells it has.
"""

from __future__ import annotations

import math
import statistics
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import FAMILIES, FAMILY_NAMES, parse_family_rates
from ..evidence import (
    VERDICT_COLUMNS,
    Verdict,
    crossing,
    explain,
    fraction_table,
    verdict_row,
    verdict_sentence,
)
from ..evidence.stats import paired_accuracy_difference
from ..evidence.wording import format_interval, format_p
from .render import Block, write_report
from .study_facts import Study, load_study
from .study_figures import (
    accuracy_vs_flops,
    cost_ratios,
    data_efficiency,
    difference_trend,
    flop_crossing,
    flop_curves,
    training_dynamics,
)

CAPTIONS = {
    "data_efficiency": "Data efficiency: test accuracy against training images (log scale). "
    "Lines are means over training seeds, bands their 95% Student-t intervals, dots single "
    "seeds (shifted sideways a little so they do not hide each other).",
    "difference": "ViT - CNN test accuracy against training images (log2 scale): dots are "
    "single seeds, black points the mean per size with its 95% interval, the purple line the "
    "trend per doubling of data (per-seed least-squares slopes, t over seeds) and its fan the "
    "slope's 95% interval, pivoting on the mean.",
    "costs": "Costs as ViT/CNN ratios, one dot per cell (log scale, 1 = equal); the bar is the "
    "geometric mean the cost verdicts test.",
    "compute": "Validation accuracy after each epoch against the training FLOPs spent by then "
    "(forward FLOPs x 3 per trained image, log scale), at the largest training size: the "
    "curve the scaling literature draws. Thin lines are single seeds, thick ones the mean over "
    "seeds, and the dashed line marks where the two families' means cross, if they do.",
    "training": "Training dynamics per training size: epochs until validation accuracy reached "
    "95% of the model's best (left) and the final train - validation accuracy gap (right); "
    "means over seeds with 95% t bands.",
}
FIGURE_FOR_METRIC = {
    "accuracy": "data_efficiency",
    "flops_per_image": "costs",
    "latency_ms_batch1": "costs",
    "inference_images_per_second": "costs",
    "train_images_per_second": "costs",
    "train_seconds": "costs",
    "epochs_to_95": "training",
    "overfit_gap": "training",
}
LEGEND = (
    "**supported**: significant after Holm's correction over every p-value judged here, in "
    "the claimed direction, and at least the practically meaningful threshold; "
    "**contradicted**: significant the other way, or the interval rules out an effect as "
    "large as the threshold; **inconclusive**: neither, with the direction the estimate leans; "
    "**confounded**: the pair's pretraining differs or is unknown, so a claim about "
    "architectures is shown with its effect and 95% interval and the reason, but not judged "
    "and kept out of Holm's correction (each verdict's scope names the pretraining); "
    "**not tested**: the cells cannot speak to it (the reason is given below). Effects read in "
    "the claim's direction (above 1x or 0 is what it says); intervals are 95%, or wider where "
    "Holm adjusted the test, at the level that agrees with the adjusted p-value. FLOP counts "
    "are exact, so their size alone decides."
)


def _group(verdict: Verdict) -> str:
    return verdict.pair + (" (pretrained)" if verdict.pretrained else "")


def _figure_for(verdict: Verdict) -> str | None:
    claim = verdict.claim
    if claim is None or verdict.evidence is None:
        return None
    if claim.evidence == "trend_over_log_size":
        return "difference"
    return FIGURE_FOR_METRIC.get(claim.metric)


def _pngs(study: Study, verdicts: list[Verdict]) -> dict[str, bytes]:
    cells = study.records
    pngs: dict[str, bytes] = {}
    if not cells:
        return pngs
    accuracy = fraction_table(cells, "accuracy")
    if accuracy:
        pngs["data_efficiency"] = data_efficiency(accuracy, cells)
        if len({r.n_train for r in accuracy}) >= 2:
            trends = {_group(v): v for v in verdicts if _figure_for(v) == "difference"}
            pngs["difference"] = difference_trend(accuracy, cells, trends)
    pngs["costs"] = cost_ratios(cells)
    compute = accuracy_vs_flops(cells)
    if compute is not None:
        pngs["compute"] = compute
    epochs = fraction_table(cells, "epochs_to_95", 1.0)
    gaps = fraction_table(cells, "overfit_gap", 1.0)
    if epochs or gaps:
        pngs["training"] = training_dynamics(epochs, gaps)
    return pngs


def _method_short(verdict: Verdict) -> str:
    """The method in a few words for the table (the full sentence is under each claim)."""
    ev = verdict.evidence
    if ev is None:
        return ""
    if ev.exact:
        return "exact count"
    text = ev.method
    if "McNemar" in text:
        return "exact McNemar, Newcombe interval"
    if "same difference" in text:
        return f"sign test over {ev.n} (no spread)"
    if "slope" in text:
        return "slope t-test, one seed" if text.startswith("one seed") else (
            f"per-seed slopes, t over {ev.n} seeds")  # fmt: skip
    if "ratio" in text:
        return f"t on log ratios, {ev.n} runs"
    if "Student-t" in text:
        return f"t over {ev.n} {'seeds' if 'seed' in text else 'replicates'}"
    return text


def _scope_parts(verdict: Verdict) -> tuple[str, str]:
    """(the claim's own scope, the part every verdict of its group shares)."""
    own = verdict.claim.scope if verdict.claim is not None else ""
    if own and verdict.scope.startswith(own + "; "):
        return own, verdict.scope[len(own) + 2 :]
    return verdict.scope, ""


def _verdict_table(verdicts: list[Verdict], several: bool) -> list[Block]:
    # The engine's columns, with the method beside the interval it produced and the scope last.
    first = list(VERDICT_COLUMNS[: VERDICT_COLUMNS.index("interval") + 1])
    rest = [c for c in VERDICT_COLUMNS if c not in first]
    header = (["pair"] if several else []) + [*first, "method", *rest, "scope"]
    rows = []
    for verdict in verdicts:
        row = verdict_row(verdict)
        own, _ = _scope_parts(verdict)
        detail = verdict.evidence.detail if verdict.evidence is not None else ""
        rows.append([*([_group(verdict)] if several else []), *(row[c] for c in first),
                     _method_short(verdict), *(row[c] for c in rest),
                     own + (f" ({detail})" if detail else "")])  # fmt: skip
    align = ("l" if several else "") + "lll" + "r" * (len(first) - 3) + "l" + "r" * len(rest) + "l"
    shared = sorted({_scope_parts(v)[1] for v in verdicts if _scope_parts(v)[1]})
    blocks: list[Block] = []
    if shared:
        blocks.append(("p", "Every verdict below holds for: " + "; ".join(shared) + "."))
    return [*blocks, ("table", header, rows, align)]


def _claim_sections(verdicts: list[Verdict], pngs: dict[str, bytes], several: bool) -> list[Block]:
    blocks: list[Block] = []
    shown: set[str] = set()
    for verdict in verdicts:
        if verdict.outcome == "not tested":
            continue
        title = verdict.statement + (f" ({_group(verdict)})" if several else "")
        blocks += [("h3", title), ("p", verdict_sentence(verdict))]
        items = []
        if verdict.evidence is not None:
            items.append(f"Method: {verdict.evidence.method}.")
        items.append(f"Scope: {verdict.scope}.")
        blocks.append(("ul", items))
        figure = _figure_for(verdict)
        if figure in pngs and figure not in shown:
            blocks.append(("figure", figure, CAPTIONS[figure]))
            shown.add(figure)
        elif figure in pngs:
            blocks.append(("p", f"*See the figure above: {CAPTIONS[figure].split(':')[0]}.*"))
    untested = [v for v in verdicts if v.outcome == "not tested"]
    if untested:
        blocks += [("h3", "Not tested by this study"),
                   ("ul", [f"{v.statement}" + (f" ({_group(v)})" if several else "")
                           + f": {explain(v)}" for v in untested])]  # fmt: skip
    return blocks


def _band(values: tuple[float, float, float]) -> str:
    mean, low, high = values
    if not (math.isfinite(low) and math.isfinite(high)) or math.isclose(low, high):
        return f"{mean:.1f}"
    return f"{mean:.1f} ({low:.1f} to {high:.1f})"


def _size_tables(study: Study, several: bool) -> list[Block]:
    cells = study.records
    accuracy = fraction_table(cells, "accuracy")
    if not accuracy:
        return []
    f1 = {(r.pair, r.pretrained, r.fraction): r for r in fraction_table(cells, "macro_f1")}
    header = [*(["pair"] if several else []), "training images", "seeds", "CNN accuracy %",
              "ViT accuracy %", "ViT - CNN (95% CI)", "ViT - CNN macro-F1 (95% CI)"]  # fmt: skip
    rows = []
    for r in accuracy:
        f = f1.get((r.pair, r.pretrained, r.fraction))
        rows.append([
            *([r.pair] if several else []), f"{r.n_train:,} ({r.fraction:.0%})", str(r.seeds),
            _band(r.cnn), _band(r.vit),
            f"{r.difference.estimate:+.1f} ({format_interval(r.difference)})",
            "" if f is None else f"{f.difference.estimate:+.1f} ({format_interval(f.difference)})",
        ])  # fmt: skip
    methods = sorted({r.difference.method for r in accuracy})
    text = [
        "Means over training seeds; in brackets the 95% Student-t interval over seeds for each "
        "model, and for the difference the interval of its method: " + "; ".join(methods) + ". "
        "Macro-F1 differences are in points of F1 x 100."
    ]
    for (pair, pretrained), cross in crossing(cells).items():
        where = pair + (" (pretrained)" if pretrained else "")
        if cross.n_train is None:
            text.append(
                f"{where}: the curves do not cross within the sizes measured "
                f"({cross.seeds} seed curve(s))."
            )
        else:
            text.append(
                f"{where}: the curves cross near {cross.n_train:,.0f} training images "
                f"({cross.low:,.0f} to {cross.high:,.0f}; {cross.seeds_crossing} of "
                f"{cross.seeds} seeds cross; {cross.method})."
            )
    return [("table", header, rows, ("l" if several else "") + "lrrrrr"),
            ("p", " ".join(text))]  # fmt: skip


def _cell_table(study: Study) -> list[Block]:
    header = ["cell", "training images", "epochs", "CNN accuracy", "ViT accuracy",
              "ViT - CNN (95% CI, Newcombe)", "exact McNemar", "wall time"]  # fmt: skip
    rows = []
    for cell in study.cells:
        wall = "" if cell.wall_seconds is None else f"{cell.wall_seconds:,.0f} s"
        if not cell.complete:
            why = cell.status + (f": {cell.problem}" if cell.problem else "")
            rows.append([cell.id, f"{cell.n_train:,}", str(cell.epochs), why, "", "", "", wall])
            continue
        run = cell.run
        comparison = run.comparison or {}
        acc = {f: run.models[f].test.get("accuracy", math.nan) for f in FAMILIES}
        if comparison.get("only_cnn_correct") is not None:
            evidence = paired_accuracy_difference({
                "only_cnn": comparison["only_cnn_correct"],
                "only_vit": comparison["only_vit_correct"],
                "both": comparison["both_correct"], "neither": comparison["both_wrong"],
            })  # fmt: skip
            diff = f"{evidence.estimate:+.1f} ({format_interval(evidence)})"
            p = format_p(evidence.p_value)
        else:
            diff, p = "", "n/a"
        rows.append([cell.id, f"{run.dataset['splits']['train']:,}", str(cell.epochs),
                     f"{acc['cnn']:.1%}", f"{acc['vit']:.1%}", diff, p, wall])  # fmt: skip
    note = (
        "Each cell is one ordinary run directory (cells/<id>/, with its own report). The "
        "McNemar p-values describe one cell each and are not corrected for multiplicity; the "
        "verdicts above use the seeds as replicates and Holm's correction."
    )
    return [("table", header, rows, "lrrrrrrr"), ("p", note)]


def _cost_section(study: Study) -> list[Block]:
    done = study.complete_cells
    images = sum(
        len(m.history) * int(c.run.dataset["splits"]["train"])
        for c in done
        for m in c.run.models.values()
    )
    train_seconds = sum(
        float(m.efficiency.get("train_seconds") or 0) for c in done for m in c.run.models.values()
    )
    walls = [c.wall_seconds for c in study.cells if c.wall_seconds]
    sessions = study.timings.get("sessions") or []
    env = study.first_run.environment if study.first_run is not None else {}
    rows = [
        ["cells finished", f"{len(done)} of {len(study.cells)}"],
        ["wall time", f"{study.timings.get('wall_seconds', 0) / 60:,.1f} min over "
                      f"{len(sessions)} session(s)"],
        ["wall time per cell (median)", f"{statistics.median(walls):,.0f} s" if walls else "n/a"],
        ["images trained (both models, all epochs)", f"{images:,}"],
        ["training time (both models)", f"{train_seconds / 60:,.1f} min"],
        ["device / threads", f"{env.get('device', 'n/a')} / {env.get('threads', 'n/a')}"],
    ]  # fmt: skip
    return [("table", ["", "value"], rows, "lr")]


def _compute_section(study: Study, pngs: dict[str, bytes]) -> list[Block]:
    """Accuracy against training FLOPs: the figure and, per group, where the curves cross."""
    if "compute" not in pngs:
        return []
    lines = []
    for name, curves in flop_curves(study.records).items():
        crossing = flop_crossing(curves)
        ahead = {f: c[-1][1] for f, c in curves.items()}
        where = (
            f"the ViT's and the CNN's mean validation curves cross at about {crossing:.3g} "
            "training FLOPs"
            if crossing is not None
            else "the two families' mean validation curves do not cross over the FLOPs both cover"
        )
        if set(ahead) == set(FAMILIES):
            where += (
                f"; at the end of training the CNN reached {ahead['cnn']:.1f}% and the ViT "
                f"{ahead['vit']:.1f}% validation accuracy"
            )
        lines.append(f"{name}: {where}.")
    return [("h2", "Accuracy against training compute"), ("figure", "compute",
            CAPTIONS["compute"]), ("p", " ".join(lines))]  # fmt: skip


def _summary(study: Study) -> str:
    grid = study.grid
    run = study.first_run
    sizes = sorted({c.n_train for c in study.cells})
    pairs = ", ".join(f"{p['cnn']} vs {p['vit']}" for p in grid.get("pairs", []))
    test = run.dataset["splits"]["test"] if run is not None else "n/a"
    budget = {
        "steps": "every cell the same number of optimizer steps",
        "epochs": "every cell the same number of epochs",
    }.get(str(grid.get("budget")), "")
    if str(grid.get("budget", "")).partition(":")[0] in ("flops", "time"):
        kind = "training FLOPs" if str(grid["budget"]).startswith("flops") else "training time"
        budget = f"each model of every cell the same {kind} ({grid['budget']})"
    return (
        f"{len(study.complete_cells)} of {len(study.cells)} cells finished: {pairs}; "
        f"{len(grid.get('seeds', []))} training seeds x {len(grid.get('fractions', []))} "
        f"training sizes ({', '.join(f'{n:,}' for n in sizes)} images, nested), {budget}; "
        f"every cell tested on the same {test} test images (split seed "
        f"{grid.get('split_seed', 'n/a')}). {_learning_rates(study)}"
    )


def _learning_rates(study: Study) -> str:
    """How the cells' learning rates were set: the rule, and the rates where it fixes them."""
    run = study.first_run
    if run is None:
        return ""
    lr = run.config.train.lr
    tuned = study.grid.get("tuning") or {}
    if tuned:  # the study's --lr auto: each pair tuned once, in one cell
        said = "; ".join(
            f"{pair}: "
            + ", ".join(f"{FAMILY_NAMES[f]} {t[f]:g}" for f in FAMILIES if f in t)
            + f" (tuned in {t.get('cell', '?')})"
            for pair, t in tuned.items()
        )
        return (
            "Each family's learning rate was tuned on validation once per pair, in the pair's "
            "cell at the largest training size and first seed, with the same counted budget for "
            f"both models, and reused in the pair's other cells: {said}."
        )
    if lr == "auto":
        return "Each model's learning rate was tuned on validation in every cell."
    if isinstance(lr, str) and lr != "usual":
        rates = parse_family_rates(lr)
        return (
            "Each family trained at the rate given for it: "
            + ", ".join(f"{FAMILY_NAMES[f]} {rates[f]:g}" for f in FAMILIES)
            + "."
        )
    if lr != "usual":
        return f"Both models trained at learning rate {float(lr):g}."
    rates = sorted({(m.family, m.results.get("training", {}).get("lr"))
                    for c in study.complete_cells for m in c.run.models.values()})  # fmt: skip
    said = ", ".join(f"{FAMILY_NAMES.get(f, f)} {r:g}" for f, r in rates if r is not None)
    return (f"Each model trained at its family's usual learning rate, untuned ({said}), "
            "not at one rate shared by both.")  # fmt: skip


def study_content(study: Study, pngs: dict[str, bytes], verdicts: list[Verdict]) -> list[Block]:
    """The report's blocks: verdicts, evidence per claim, sizes, cells, cost, environment."""
    run = study.first_run
    name = run.dataset.get("name", "?") if run is not None else "?"
    several = len({_group(v) for v in verdicts}) > 1
    blocks: list[Block] = [("h1", f"CNN vs ViT study on {name}"), ("p", _summary(study))]
    if study.status != "complete":
        blocks.append(("p", f"This study is **{study.status}**"
                       + (f" ({study.error})" if study.error else "")
                       + ": the verdicts use the finished cells only. Run the study again "
                       "(`cnnvit study --resume DIR`) to train the rest."))  # fmt: skip
    if run is not None and not study.test_ids_agree():
        blocks.append(("p", "**Warning**: the cells were not all tested on the same images "
                       "(did the dataset change between cells?); paired comparisons across "
                       "cells are unreliable."))  # fmt: skip
    if verdicts:
        blocks += [("h2", "Verdicts"), *_verdict_table(verdicts, several), ("p", LEGEND)]
        blocks += [("h2", "Evidence per claim"), *_claim_sections(verdicts, pngs, several)]
    else:
        blocks.append(("p", "No cell has finished yet, so there is nothing to judge."))
    blocks += [("h2", "Accuracy by training size"), *_size_tables(study, several)]
    blocks += _compute_section(study, pngs)
    if "training" in pngs and "training" not in {_figure_for(v) for v in verdicts}:
        blocks.append(("figure", "training", CAPTIONS["training"]))
    blocks += [("h2", "Cells"), *_cell_table(study)]
    blocks += [("h2", "What the study cost"), *_cost_section(study)]
    env = run.environment if run is not None else {}
    lines = [f"{k.replace('_', ' '):<15} {env.get(k, 'n/a')}" for k in ("device", "threads",
             "torch", "transformers", "cnnvit", "git_commit", "platform", "cpu", "cpu_capability",
             "cpu_bf16", "cpu_bf16_speedup")]  # fmt: skip
    lines.append(f"{'report built':<15} {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    blocks += [("h2", "Environment"), ("pre", "\n".join(lines))]
    return blocks


def build_study_report(study_dir: str | Path) -> Path:
    """Write figures, report.md and report.html into the study directory; report.html's path."""
    study = load_study(study_dir)
    verdicts: list[Any] = study.verdicts if study.records else []
    pngs = _pngs(study, verdicts)
    return write_report(study.path, study_content(study, pngs, verdicts), pngs)
