"""The words of a verdict, written once for every report.

The one-run reflection, the study report and the demo all print verdicts through these helpers,
so the same evidence always reads the same way: `explain` writes the one-sentence explanation
with its numbers from the verdict's fields when a report renders it (the engine stores only the
fields, a reason included), `verdict_sentence` gives the full line, and `verdict_row` /
`verdict_table_markdown` the table form (`VERDICT_COLUMNS` in order). A verdict's effect and
interval read in the claim's own direction (`Verdict.oriented`): "CNNs have higher inference
throughput" shows the CNN's throughput over the ViT's, "CNNs are more data-efficient" CNN - ViT
accuracy, so a figure above 1x (or 0) is what the claim says, on the threshold's scale. The
interval is at the level that agrees with the Holm-adjusted test (engine.family_level).
A confounded verdict (the pair's pretraining differs or is unknown) states its reason in the
table's verdict cell and its sentence, with the effect and its plain 95% interval, never a
test. `format_effect` and `format_interval` still write raw ViT - CNN evidence for the study
tables.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..config import FAMILY_NAMES

if TYPE_CHECKING:  # only for annotations
    from .stats import Evidence
    from .verdict import Verdict

VERDICT_COLUMNS = ("claim", "verdict", "leans", "effect", "interval", "Holm p", "threshold")

_FAMILY = FAMILY_NAMES


def format_p(p: float | None) -> str:
    """p-value for a sentence: "p = 0.012", "p < 0.001", or "n/a"."""
    if p is None or math.isnan(p):
        return "n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _digits(unit: str) -> int:
    return 2 if "per" in unit else 1


def _signed(value: float, digits: int) -> str:
    if round(value, digits) == 0:
        value = 0.0  # no "-0.0"
    return f"{value:+.{digits}f}"


def _number(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    return f"{_signed(value, _digits(unit))} {unit}"


def format_effect(evidence: Evidence) -> str:
    """The estimate with its unit: "-5.0 points", "2.03x"."""
    return _number(evidence.estimate, evidence.unit)


def format_interval(evidence: Evidence) -> str:
    """The interval as "-6.2 to -2.4 points" / "1.18x to 1.27x", or why there is none."""
    if evidence.exact:
        return "exact"
    if math.isnan(evidence.low) or math.isnan(evidence.high):
        return "none: one run"
    if evidence.low == evidence.high:  # zero spread: the range, not a 95% interval
        return f"none: all {evidence.n} replicates equal"
    if evidence.unit == "x":
        return f"{evidence.low:.2f}x to {evidence.high:.2f}x"
    digits = _digits(evidence.unit)
    return f"{_signed(evidence.low, digits)} to {_signed(evidence.high, digits)} {evidence.unit}"


def format_threshold(verdict: Verdict) -> str:
    """The practically meaningful effect: "1 point", "0.5 points per doubling", "1.10x"."""
    if verdict.unit == "x":
        return f"{1 + verdict.threshold:.2f}x"
    unit = verdict.unit
    if verdict.threshold == 1:  # "1 point", "1 epoch"
        first, _, rest = unit.partition(" ")
        unit = (first.removesuffix("s") + " " + rest).strip()
    return f"{verdict.threshold:g} {unit}"


def _oriented_number(value: float, verdict: Verdict) -> str:
    return f"{value:.2f}x" if verdict.unit == "x" else _number(value, verdict.unit)


def claim_effect(verdict: Verdict) -> str:
    """The effect in the claim's direction with what it is: "9.12x (CNN/ViT)",
    "+5.0 points (CNN - ViT)"; "" when not tested."""
    oriented = verdict.oriented
    if oriented is None:
        return ""
    return f"{_oriented_number(oriented.estimate, verdict)} ({oriented.label})"


def _has_interval(evidence: Evidence) -> bool:
    return not (evidence.exact or math.isnan(evidence.low) or math.isnan(evidence.high)
                or evidence.low == evidence.high)  # fmt: skip


def claim_interval(verdict: Verdict) -> str:
    """The interval in the claim's direction, its level named where Holm widened it."""
    evidence, oriented = verdict.evidence, verdict.oriented
    if evidence is None or oriented is None:
        return ""
    if not _has_interval(evidence):
        return format_interval(evidence)
    low, high = (_oriented_number(v, verdict) for v in (oriented.low, oriented.high))
    if verdict.unit != "x":
        low = low.removesuffix(f" {verdict.unit}")
    level = "" if math.isclose(evidence.confidence, 0.95) else f" ({_level(evidence)})"
    return f"{low} to {high}{level}"


def _level(evidence: Evidence) -> str:
    if math.isclose(evidence.confidence, 0.95):
        return "95%"
    return f"Holm-adjusted {100 * evidence.confidence:.1f}%"


def _effect_clause(verdict: Verdict) -> str:
    evidence, claim, oriented = verdict.evidence, verdict.claim, verdict.oriented
    assert evidence is not None and claim is not None and oriented is not None
    where = f" {evidence.detail}" if evidence.detail else ""
    number = _oriented_number(oriented.estimate, verdict)
    if evidence.scale == "ratio":
        first, second = oriented.first, oriented.second
        return f"the {first}'s {claim.metric_label} was {number} the {second}'s{where}"
    if "per doubling" in evidence.unit:
        label = claim.metric_label.replace("ViT - CNN", oriented.label)
        return f"{label} changed by {number} of training images{where}"
    return f"{oriented.label} {claim.metric_label}{where} was {number}"


def explain(verdict: Verdict) -> str:
    """One sentence with the numbers behind the outcome (or the reason it was not tested)."""
    if verdict.outcome == "not tested" or verdict.evidence is None:
        text = verdict.reason or "no evidence was recorded"
        return text[0].upper() + text[1:] + "."
    evidence, claim = verdict.evidence, verdict.claim
    assert claim is not None
    if verdict.outcome == "confounded":
        return confounded_sentence(verdict)
    threshold = f"the {format_threshold(verdict)} threshold"
    interval = ""
    if _has_interval(evidence):
        shown = claim_interval(verdict).removesuffix(f" ({_level(evidence)})")
        interval = f" ({_level(evidence)} CI {shown})"
    holm = f"Holm-adjusted {format_p(verdict.p_adjusted)}"
    credited = _FAMILY[claim.favours]
    why = {
        "exact_meets": f"an exact count, reaching {threshold}",
        "exact_short": f"an exact count, short of {threshold} in the {credited}'s favour",
        "significant_meaningful": f"significant ({holm}) and reaching {threshold}",
        "significant_opposite": f"significant the other way ({holm})",
        "ruled_out": f"the interval rules out an advantage for the {credited} as large as "
        f"{threshold} ({holm})",
        "significant_small": f"significant ({holm}) but short of {threshold}, which the "
        "interval still allows",
        "not_significant": f"not significant ({holm}): the interval holds both no difference "
        f"and an advantage for the {credited} as large as {threshold}",
        "no_replicates": "one run has no spread to test it against; repeat over seeds",
    }[verdict.rule]
    sentence = f"{_effect_clause(verdict)}{interval}: {why}."
    note = f" {verdict.budget_note}" if verdict.budget_note else ""
    return sentence[0].upper() + sentence[1:] + what_it_would_take(verdict) + note


def confounded_sentence(verdict: Verdict) -> str:
    """Why a confounded verdict is not judged, then its numbers (95%, untested)."""
    evidence = verdict.evidence
    assert evidence is not None
    interval = ""
    if _has_interval(evidence):
        interval = f" (95% CI {claim_interval(verdict)})"
    reason = verdict.reason or "the pretraining of the two models is not the same"
    effect = _effect_clause(verdict)
    return (
        f"Not judged, and left out of the Holm correction: {reason}, so a gap between these "
        "models measures their pretraining as much as their architecture. "
        f"{effect[0].upper() + effect[1:]}{interval}."
    )


def what_it_would_take(verdict: Verdict) -> str:
    """For an inconclusive accuracy or convergence claim, the power estimate as a sentence
    (with a leading space): about how many seeds would resolve an effect of the threshold's
    size, or that the spread across seeds is unknown; "" for any other verdict."""
    claim, evidence = verdict.claim, verdict.evidence
    if verdict.outcome != "inconclusive" or claim is None or not claim.power_estimate:
        return ""
    if verdict.seeds_needed is None or verdict.spread is None or evidence is None:
        return (
            " How many seeds would settle it is unknown: the spread across seeds needs two or "
            "more of them (or an earlier study of the same pair and data)."
        )
    if verdict.spread == 0:
        seeds = f"seed of {verdict.spread_source}" if verdict.spread_source else "seed"
        return (
            f" Power estimate: every {seeds} gave the same difference, so the test is the exact "
            f"sign test, which needs at least {verdict.seeds_needed} seeds, all one way, at the "
            f"{_level(evidence)} level."
        )
    spread = f"{verdict.spread:.2f} {verdict.unit}"
    over = (
        f"{verdict.spread_seeds} seeds of {verdict.spread_source}, the same pair and data, "
        "since one run has no spread of its own"
        if verdict.spread_source
        else f"{evidence.n} seeds"
    )
    return (
        f" Power estimate: about {verdict.seeds_needed} seeds would detect an effect of "
        f"{format_threshold(verdict)} with 80% power (two-sided paired test at the "
        f"{_level(evidence)} level, normal approximation, from an SD of {spread} over {over})."
    )


def _p_cell(p: float | None) -> str:
    if p is None or math.isnan(p):
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def verdict_sentence(verdict: Verdict, markdown: bool = True) -> str:
    """The whole verdict as one line: statement, outcome, direction, explanation."""
    outcome = f"**{verdict.outcome}**" if markdown else verdict.outcome
    leaning = "" if verdict.direction == "none" else f" ({verdict.direction})"
    return f"{verdict.statement}: {outcome}{leaning}. {explain(verdict)}"


def verdict_row(verdict: Verdict) -> dict[str, str]:
    """The verdict as table cells, keyed by `VERDICT_COLUMNS`."""
    return {
        "claim": verdict.statement,
        "verdict": verdict.outcome
        + (f" ({verdict.reason})" if verdict.outcome == "confounded" and verdict.reason else ""),
        "leans": "" if verdict.direction == "none" else verdict.direction.removeprefix("leans "),
        "effect": claim_effect(verdict),
        "interval": claim_interval(verdict),
        "Holm p": _p_cell(verdict.p_adjusted),
        "threshold": format_threshold(verdict),
    }


def verdict_table_markdown(verdicts: list[Verdict]) -> str:
    """A Markdown table of verdicts, one row each, columns `VERDICT_COLUMNS`."""
    lines = ["| " + " | ".join(VERDICT_COLUMNS) + " |", "|" + "---|" * len(VERDICT_COLUMNS)]
    for verdict in verdicts:
        row = verdict_row(verdict)
        lines.append("| " + " | ".join(row[c].replace("|", "/") for c in VERDICT_COLUMNS) + " |")
    return "\n".join(lines)
