"""The verdict engine: finished runs (cells) in, one verdict per declared claim out.

Input is a table of `CellRecord`s, one per finished run; a single `cnnvit compare` run is the
one-cell case of a study, judged by the same code. Cells are grouped by (pair, pretrained) and
every claim is judged in every group by the evidence function it names (`measures.EVIDENCE`:
t over seeds in a study; McNemar and Newcombe's interval, or no test, for one run). The Holm
family is every p-value judged in one call, across claims and groups, and each interval is
widened to the level that agrees with its adjusted p-value (`family_level`), so an interval
never excludes no effect beside a verdict that says "not significant". A verdict (verdict.py)
holds numbers and, when not tested, the reason; `wording.explain` writes its sentence when a
report renders it, so every report shares one wording and the engine imports none of it.

Decision rule. Orient the effect e so that positive is the claimed direction (log scale for
ratios) and let T be the claim's threshold. An exact quantity (FLOPs) is supported when e >= T
and contradicted otherwise: it has no noise, so its size alone decides. Otherwise the p-values
of all claims judged together are Holm-adjusted, and a claim is **supported** when its adjusted
p < 0.05, e > 0 and the point estimate reaches T (significant and practically meaningful; asking
the whole interval to clear T would need more seeds than a study can afford); **contradicted**
when it is significant the other way (adjusted p < 0.05, e < 0), or when the upper end of its
95% interval lies below T, so a meaningful advantage in the claimed direction is ruled out (an
equivalence / non-superiority reading of the interval, which covers "no difference, tightly
measured" and "a real but negligible difference"); **inconclusive** otherwise, always with the
direction the estimate leans. A claim whose metric is missing, whose scope does not hold, or that
needs more sizes or seeds than the cells have, is **not tested**, with the reason. Both rules use
the family-level interval, so the ruled-out reading holds family-wise too.

Pretraining and adaptation (claims.py). Before any evidence, a transfer claim on a pair trained
from scratch, a claim that times training on a probe run (frozen features: no training to
time), and a transfer claim outside equal parameters are **not tested**, with the reason. An
architecture or transfer claim (`weights_matter`) whose cells pair models of differing or
unknown pretraining is **confounded**: its effect and 95% interval are shown, with the reason,
but it is not judged, and its p-value stays out of the Holm family so that it neither spends
nor is spent on the family's error rate.

What it would take. An inconclusive claim marked `power_estimate` (accuracy, convergence) gets
a power estimate: the seeds a two-sided paired test at the verdict's family level would need to
detect an effect of the threshold's size with 80% power, by the normal approximation from the
SD over the seeds measured (`stats.seeds_to_resolve`); with one seed, from the SD an earlier study
of the same pair and data measured for the claim (`prior`), else the spread is unknown.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

from ..errors import CnnvitError
from ..pretraining import SCRATCH, UNKNOWN, pretraining_difference, pretraining_scope
from . import stats
from .budgets import budget_not_tested, budget_note, budget_text
from .cells import CellRecord
from .claims import CLAIMS, Claim
from .measures import EVIDENCE, NotTested, params_mismatch
from .stats import Evidence
from .verdict import PriorSpread, Verdict

ALPHA = 0.05


# ---------------------------------------------------------------- the decision


def _oriented(claim: Claim, evidence: Evidence) -> tuple[float, float, float, float]:
    """(e, low, high, T) on an additive scale where positive is the claimed direction."""

    def log(x: float) -> float:
        return math.log(x) if x > 0 else math.nan

    if evidence.scale == "ratio":
        values = [log(evidence.estimate), log(evidence.low), log(evidence.high)]
        threshold = math.log(1 + claim.threshold)
    else:
        values = [evidence.estimate, evidence.low, evidence.high]
        threshold = claim.threshold
    e, low, high = (claim.claimed_sign * v for v in values)
    if claim.claimed_sign < 0:
        low, high = high, low
    return e, low, high, threshold


def direction(claim: Claim, evidence: Evidence) -> str:
    """Which family the estimate favours on the claim's metric: "leans CNN/ViT" or "none"."""
    center = math.log(evidence.estimate) if evidence.scale == "ratio" else evidence.estimate
    vit_side = center * (1 if claim.better == "higher" else -1)
    return "leans ViT" if vit_side > 0 else "leans CNN" if vit_side < 0 else "none"


def decide(
    claim: Claim, evidence: Evidence, p_adjusted: float | None, alpha: float = ALPHA
) -> tuple[str, str]:
    """(outcome, rule that fired) under the module's decision rule (see the module docstring)."""
    e, _, high, threshold = _oriented(claim, evidence)
    if evidence.exact:
        return ("supported", "exact_meets") if e >= threshold else ("contradicted", "exact_short")
    if p_adjusted is None:
        return "inconclusive", "no_replicates"  # one value: nothing to test it against
    significant = p_adjusted < alpha
    if significant and e > 0 and e >= threshold:
        return "supported", "significant_meaningful"
    if significant and e < 0:
        return "contradicted", "significant_opposite"
    if high < threshold:
        return "contradicted", "ruled_out"
    return "inconclusive", "significant_small" if significant else "not_significant"


def seeds_needed(
    claim: Claim, evidence: Evidence | None, outcome: str, prior: PriorSpread | None = None
) -> tuple[int | None, float | None, PriorSpread | None]:
    """The power estimate of an inconclusive `power_estimate` claim: (seeds for 80% power at
    the evidence's (family) level against an effect of the threshold's size, the SD it used,
    the earlier study that SD came from or None). The seeds' own SD comes first; with one seed
    `prior`'s; (None, None, None) where it does not apply or no spread is known."""
    if outcome != "inconclusive" or not claim.power_estimate or evidence is None:
        return None, None, None
    if evidence.scale != "difference":
        return None, None, None
    used = prior if evidence.spread is None else None
    spread = evidence.spread if used is None else used.spread
    if spread is None:
        return None, None, None
    return stats.seeds_to_resolve(spread, claim.threshold, evidence.confidence), spread, used


def family_level(p_value: float, p_adjusted: float, alpha: float = ALPHA) -> float:
    """The confidence level whose interval agrees with the Holm-adjusted test: 1 - alpha p / p_adj.

    A test-inverted interval at level 1 - a excludes no effect exactly when p < a; with
    a = alpha p / p_adj that is when p_adj < alpha, so the interval and the verdict agree.
    """
    if p_value <= 0 or p_adjusted <= p_value:
        return 1 - alpha
    return 1 - alpha * p_value / p_adjusted


def _at_family_level(
    claim: Claim,
    cells: Sequence[CellRecord],
    evidence: Evidence,
    p_adjusted: float | None,
    alpha: float,
) -> Evidence:
    """`evidence` again with its interval at `family_level`, where Holm adjusted its p-value."""
    if evidence.p_value is None or p_adjusted is None:
        return evidence
    level = family_level(evidence.p_value, p_adjusted, alpha)
    if math.isclose(level, evidence.confidence):
        return evidence
    again = EVIDENCE[claim.evidence](claim, cells, confidence=level)
    return again if isinstance(again, Evidence) else evidence


def _groups(cells: Sequence[CellRecord]) -> dict[tuple[str, bool], list[CellRecord]]:
    groups: dict[tuple[str, bool], list[CellRecord]] = defaultdict(list)
    for cell in cells:
        groups[(cell.pair, cell.pretrained)].append(cell)
    return dict(groups)


def _scope(claim: Claim, cells: Sequence[CellRecord], pair: str, pretrained: bool) -> str:
    sizes = sorted({c.n_train for c in cells})
    seeds = sorted({c.seed for c in cells})
    datasets = sorted({c.dataset for c in cells if c.dataset})
    epochs = sorted({c.epochs for c in cells if c.epochs})
    parts = [
        ", ".join(datasets),
        pair,
        "; ".join(sorted({pretraining_scope(_pretraining(c)) for c in cells})),
        (f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,} to {sizes[-1]:,}")
        + " training images",
        f"{len(seeds)} seed{'s' * (len(seeds) != 1)}",
        budget_text(cells)
        if any(c.budget_mode != "epochs" for c in cells)
        else "/".join(map(str, epochs)) + " epochs"
        if epochs
        else "",
    ]
    parts += sorted({c.unmatched for c in cells if c.unmatched})  # a pair that is not what
    # its --match asked says so wherever its verdicts are read
    hosts = sorted({c.host for c in cells if c.host})
    if claim.evidence == "cost_ratio" and hosts:  # a timing holds where it was timed
        parts.append("timed on " + "; ".join(hosts))
    return f"{claim.scope}; " + ", ".join(p for p in parts if p)


def _pretraining(cell: CellRecord) -> dict[str, str]:
    """Each model's pretraining data in a cell; a cell that does not record it: from scratch
    when neither model was pretrained, else unknown."""
    default = UNKNOWN if cell.pretrained else SCRATCH
    return {f: str(cell.pretraining.get(f) or default) for f in ("cnn", "vit")}


def _before_evidence(claim: Claim, cells: Sequence[CellRecord]) -> NotTested | None:
    """Why `claim` cannot be tested on these cells whatever their metrics, or None."""
    if claim.kind == "transfer" and all(set(_pretraining(c).values()) == {SCRATCH} for c in cells):
        return NotTested(
            "both models were trained from scratch: a transfer claim needs pretrained models "
            "(a curated hub pair: `cnnvit models --hub`)"
        )
    if claim.times_training and any(c.adaptation == "probe" for c in cells):
        return NotTested(
            "a linear probe trains only a classifier on frozen features, computed once and "
            "cached: there is no model training to time (inference costs are still measured)"
        )
    if claim.kind == "transfer" and claim.needs_equal_params:
        return params_mismatch(cells)
    return None


def confounded_by(claim: Claim, cells: Sequence[CellRecord]) -> str:
    """Why the pair's pretraining confounds `claim` in these cells, or "" when it does not."""
    if not claim.weights_matter:
        return ""
    reasons = sorted({pretraining_difference(_pretraining(c)) for c in cells} - {""})
    return "; ".join(reasons)


def judge_claims(
    cells: Sequence[CellRecord],
    claims: Sequence[Claim] | None = None,
    alpha: float = ALPHA,
    prior: Mapping[str, PriorSpread] | None = None,
) -> list[Verdict]:
    """One verdict per claim and group of cells; p-values Holm-adjusted over all of them.
    `prior` maps a claim id to the SD an earlier study measured, for one-seed power estimates."""
    if not cells:
        raise CnnvitError("no finished runs to judge: run `cnnvit compare` or `cnnvit study` first")
    claims = list(CLAIMS if claims is None else claims)
    judged: list[tuple[Claim, tuple[str, bool], list[CellRecord], Evidence | NotTested]] = []
    for (pair, pretrained), group in _groups(cells).items():
        for claim in claims:
            if claim.evidence not in EVIDENCE:
                raise ValueError(f"claim {claim.id!r} names unknown evidence {claim.evidence!r}")
            early = _before_evidence(claim, group) or budget_not_tested(claim, group)
            evidence = early or EVIDENCE[claim.evidence](claim, group)
            judged.append((claim, (pair, pretrained), group, evidence))
    confounded = {
        i: confounded_by(claim, group)
        for i, (claim, _, group, ev) in enumerate(judged)
        if isinstance(ev, Evidence)
    }
    tested = [  # the Holm family: every p-value judged, confounded ones left out
        i
        for i, (*_, ev) in enumerate(judged)
        if isinstance(ev, Evidence) and ev.p_value is not None and not confounded.get(i)
    ]
    adjusted = dict(
        zip(tested, stats.holm_adjust([judged[i][3].p_value for i in tested]), strict=True)
    )
    verdicts = []
    for i, (claim, (pair, pretrained), group, ev) in enumerate(judged):
        if isinstance(ev, NotTested):
            outcome, rule, lean, evidence, reason = (
                "not tested",
                "not_tested",
                "none",
                None,
                ev.reason,
            )
        elif confounded.get(i):  # shown, with the reason, but not judged
            outcome, rule, lean, evidence = "confounded", "confounded", direction(claim, ev), ev
            reason = confounded[i]
        else:
            ev = _at_family_level(claim, group, ev, adjusted.get(i), alpha)
            outcome, rule = decide(claim, ev, adjusted.get(i), alpha)
            lean, evidence, reason = direction(claim, ev), ev, ""
        needed, spread, used = seeds_needed(claim, evidence, outcome, (prior or {}).get(claim.id))
        verdict = Verdict(
            claim_id=claim.id,
            statement=claim.statement,
            outcome=outcome,
            direction=lean,
            evidence=evidence,
            p_value=None if evidence is None else evidence.p_value,
            p_adjusted=adjusted.get(i),
            threshold=claim.threshold,
            unit=claim.unit,
            scope=_scope(claim, group, pair, pretrained),
            reason=reason,
            rule=rule,
            pair=pair,
            pretrained=pretrained,
            seeds_needed=needed,
            spread=spread,
            spread_source=used.source if used else "",
            spread_seeds=used.seeds if used else None,
            budget_note=budget_note(claim, group) if evidence is not None else "",
            claim=claim,
        )
        verdicts.append(verdict)
    return verdicts
