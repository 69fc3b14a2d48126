"""The words of a verdict, written once for every report.

The one-run reflection, the study report and the demo all print verdicts through these helpers,
so the same evidence always reads the same way: `explain` writes the one-sentence explanation
with its numbers from the verdict's fields when a report renders it (the engine stores only the
fields, a reason included), `verdict_sentence` gives the full line, and `verdict_row` /
`verdict_table_markdown` the table form (`VERDICT_COLUMNS` in order). Numbers are formatted by
`format_effect` and `format_p`; differences read as ViT - CNN and ratios as ViT/CNN, so a
negative accuracy difference or a latency ratio above 1 both favour the CNN.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..config import FAMILY_NAMES

if TYPE_CHECKING:  # only for annotations
    from .stats import Evidence
    from .verdict import Verdict

VERDICT_COLUMNS = ("claim", "verdict", "leans", "effect", "95% interval", "Holm p", "threshold")

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


def _effect_clause(verdict: Verdict) -> str:
    evidence, claim = verdict.evidence, verdict.claim
    assert evidence is not None and claim is not None
    where = f" {evidence.detail}" if evidence.detail else ""
    if evidence.scale == "ratio":
        return f"the ViT's {claim.metric_label} was {format_effect(evidence)} the CNN's{where}"
    if "per doubling" in evidence.unit:
        return (
            f"{claim.metric_label} changed by {format_effect(evidence)} of training images{where}"
        )
    return f"ViT - CNN {claim.metric_label}{where} was {format_effect(evidence)}"


def explain(verdict: Verdict) -> str:
    """One sentence with the numbers behind the outcome (or the reason it was not tested)."""
    if verdict.outcome == "not tested" or verdict.evidence is None:
        text = verdict.reason or "no evidence was recorded"
        return text[0].upper() + text[1:] + "."
    evidence, claim = verdict.evidence, verdict.claim
    assert claim is not None
    threshold = f"the {format_threshold(verdict)} threshold"
    has_interval = not (
        evidence.exact
        or math.isnan(evidence.low)
        or math.isnan(evidence.high)
        or evidence.low == evidence.high
    )
    interval = f" (95% CI {format_interval(evidence)})" if has_interval else ""
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
        "not_significant": f"not significant ({holm}); the interval still allows an advantage "
        f"for the {credited} as large as {threshold}",
        "no_replicates": "one run has no spread to test it against; repeat over seeds",
    }[verdict.rule]
    sentence = f"{_effect_clause(verdict)}{interval}: {why}."
    return sentence[0].upper() + sentence[1:]


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
    evidence = verdict.evidence
    return {
        "claim": verdict.statement,
        "verdict": verdict.outcome,
        "leans": "" if verdict.direction == "none" else verdict.direction.removeprefix("leans "),
        "effect": "" if evidence is None else format_effect(evidence),
        "95% interval": "" if evidence is None else format_interval(evidence),
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
