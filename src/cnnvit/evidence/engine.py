"""The verdict engine: finished runs (cells) in, one verdict per declared claim out.

Input is a table of `CellRecord`s, one per finished run; a single `cnnvit compare` run is the
one-cell case of a study. Cells are grouped by (pair, pretrained) and every claim is judged in
every group by the evidence function it names (`EVIDENCE`, extensible with `register_evidence`).
The replicate is the training seed: a seed's two models share data, order and budget, so ViT -
CNN is paired within a seed and t is taken over seeds. A cell alone falls back to what one run
can say: the exact McNemar test and Newcombe's paired interval on its test images for accuracy;
no test for other noisy measures (one value has no spread); the value itself for exact counts.

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
needs more sizes or seeds than the cells have, is **not tested**, with the reason. The interval
rule uses each claim's own 95% interval; Holm controls the family-wise error of the significance
calls only.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import CnnvitError
from . import stats
from .claims import CLAIMS, PARAMS_MATCH_RATIO, Claim
from .stats import Evidence
from .wording import explain

ALPHA = 0.05
OUTCOMES = ("supported", "contradicted", "inconclusive", "not tested")


@dataclass(frozen=True)
class CellRecord:
    """One finished run: both models' metrics and their paired test outcomes.

    `metrics` maps "cnn"/"vit" to metric name -> value (see `claims` for units); a missing metric
    makes the claims resting on it "not tested". `paired` counts the test images by who got them
    right: {"only_cnn", "only_vit", "both", "neither"}.
    """

    pair: str
    fraction: float  # share of the training split used
    n_train: int  # training images
    seed: int
    pretrained: bool  # whether either model started from pretrained weights
    metrics: Mapping[str, Mapping[str, float]]
    paired: Mapping[str, int] | None = None


@dataclass(frozen=True)
class NotTested:
    """Why a claim cannot be judged from these cells."""

    reason: str


EvidenceFunction = Callable[[Claim, Sequence[CellRecord]], "Evidence | NotTested"]


@dataclass(frozen=True)
class Verdict:
    """What the cells say about one claim, in one group of cells (a pair, from scratch or not)."""

    claim_id: str
    statement: str
    outcome: str  # one of OUTCOMES
    direction: str  # "leans CNN", "leans ViT" or "none"
    evidence: Evidence | None
    p_value: float | None
    p_adjusted: float | None  # Holm over every p-value judged in the same call
    threshold: float
    unit: str
    scope: str
    explanation: str
    rule: str = ""  # which branch of the decision rule fired (see `decide`)
    pair: str = ""
    pretrained: bool = False
    claim: Claim | None = field(default=None, repr=False, compare=False)

    @property
    def effect(self) -> float | None:
        """The estimate (ViT - CNN, or ViT/CNN for ratios), None when not tested."""
        return None if self.evidence is None else self.evidence.estimate

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% interval of the estimate, None when not tested."""
        return None if self.evidence is None else (self.evidence.low, self.evidence.high)


# ---------------------------------------------------------------- evidence functions


def _difference(cell: CellRecord, claim: Claim) -> float | None:
    """ViT - CNN on the claim's metric in the claim's unit, or None when either is missing."""
    try:
        vit, cnn = cell.metrics["vit"][claim.metric], cell.metrics["cnn"][claim.metric]
    except KeyError:
        return None
    if vit is None or cnn is None or not (math.isfinite(vit) and math.isfinite(cnn)):
        return None
    return claim.to_unit * (float(vit) - float(cnn))


def _recorded(claim: Claim, cells: Sequence[CellRecord]) -> list[CellRecord] | NotTested:
    have = [c for c in cells if _difference(c, claim) is not None]
    if have:
        return have
    how = f" (run {claim.requires})" if claim.requires else ""
    return NotTested(f"no run recorded {claim.metric} for both models{how}")


def _by_seed_mean(claim: Claim, cells: Sequence[CellRecord]) -> dict[int, float]:
    values: dict[int, list[float]] = defaultdict(list)
    for cell in cells:
        values[cell.seed].append(_difference(cell, claim))  # type: ignore[arg-type]
    return {seed: float(np.mean(v)) for seed, v in sorted(values.items())}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _size_text(n_train: int, fraction: float) -> str:
    return f"at {n_train:,} training images ({fraction:.0%} of the split)"


def smallest_size_difference(claim: Claim, cells: Sequence[CellRecord]) -> Evidence | NotTested:
    """ViT - CNN at the smallest training fraction: t over seeds, or McNemar for one run."""
    have = _recorded(claim, cells)
    if isinstance(have, NotTested):
        return have
    fraction = min(c.fraction for c in have)
    at = [c for c in have if c.fraction == fraction]
    n_train = min(c.n_train for c in at)
    if claim.max_train_images is not None and n_train >= claim.max_train_images:
        return NotTested(
            f"the smallest training size is {n_train:,} images, not small data (below "
            f"{claim.max_train_images:,})"
        )
    per_seed = _by_seed_mean(claim, at)
    single = at[0]
    if len(per_seed) == 1 and claim.metric == "accuracy" and single.paired:
        evidence = stats.paired_accuracy_difference(single.paired)
    else:
        evidence = stats.mean_difference(list(per_seed.values()), claim.unit, "seed")
    return _with_detail(evidence, _size_text(n_train, fraction))


def trend_over_log_size(claim: Claim, cells: Sequence[CellRecord]) -> Evidence | NotTested:
    """Slope of ViT - CNN against log2(training images), per doubling, over seeds."""
    have = _recorded(claim, cells)
    if isinstance(have, NotTested):
        return have
    sizes = sorted({c.n_train for c in have})
    by_seed: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for cell in have:
        by_seed[cell.seed].append((cell.n_train, _difference(cell, claim)))  # type: ignore[arg-type]
    spanning = [s for s, p in by_seed.items() if len({n for n, _ in p}) >= 2]
    if len(spanning) < 2 and not (len(spanning) == 1 and len(sizes) >= 3):
        return NotTested(
            "a trend needs two or more seeds over two or more training sizes, or one seed over "
            f"three; these runs have {_count(len(by_seed), 'seed')} and "
            f"{_count(len(sizes), 'size')}"
        )
    evidence = stats.slope_per_doubling(by_seed, claim.unit)
    return _with_detail(evidence, f"from {sizes[0]:,} to {sizes[-1]:,} training images")


def per_seed_mean_difference(claim: Claim, cells: Sequence[CellRecord]) -> Evidence | NotTested:
    """ViT - CNN averaged over each seed's sizes, then t over seeds (over cells for one seed)."""
    have = _recorded(claim, cells)
    if isinstance(have, NotTested):
        return have
    per_seed = _by_seed_mean(claim, have)
    sizes = sorted({c.n_train for c in have})
    if len(per_seed) >= 2 or len(have) == 1:
        evidence = stats.mean_difference(list(per_seed.values()), claim.unit, "seed")
    else:  # one seed, several sizes: the sizes are the replicates
        values = [_difference(c, claim) for c in have]
        evidence = stats.mean_difference(values, claim.unit, "cell of one seed")  # type: ignore[arg-type]
    where = (
        _size_text(have[0].n_train, have[0].fraction)
        if len(sizes) == 1
        else (f"averaged over {len(sizes)} training sizes ({sizes[0]:,} to {sizes[-1]:,} images)")
    )
    return _with_detail(evidence, where)


def _params_mismatch(cells: Sequence[CellRecord]) -> NotTested | None:
    ratios = []
    for cell in cells:
        try:
            ratios.append(cell.metrics["vit"]["params"] / cell.metrics["cnn"]["params"])
        except (KeyError, TypeError, ZeroDivisionError):
            continue
    if not ratios:
        return NotTested("parameter counts were not recorded, so 'at equal parameters' is unknown")
    far = max(ratios, key=lambda r: abs(math.log(r)))
    if not 1 / PARAMS_MATCH_RATIO <= far <= PARAMS_MATCH_RATIO:
        return NotTested(
            f"the ViT has {far:.2f}x the CNN's parameters, not equal parameters (within "
            f"{PARAMS_MATCH_RATIO - 1:.0%})"
        )
    return None


def _ratios(claim: Claim, cells: Sequence[CellRecord]) -> tuple[list[float], list[float]]:
    vit, cnn = [], []
    for cell in cells:
        v, c = (
            cell.metrics.get("vit", {}).get(claim.metric),
            cell.metrics.get("cnn", {}).get(claim.metric),
        )
        if v is not None and c is not None and v > 0 and c > 0:
            vit.append(float(v))
            cnn.append(float(c))
    return vit, cnn


def cost_ratio(claim: Claim, cells: Sequence[CellRecord]) -> Evidence | NotTested:
    """Geometric-mean ViT/CNN ratio of a timing over all cells, each cell one replicate.

    Cells, not seeds, are the replicates: timing noise comes from the machine, not the training
    seed, and every cell times its two models afresh.
    """
    mismatch = _params_mismatch(cells)
    if mismatch:
        return mismatch
    vit, cnn = _ratios(claim, cells)
    if not vit:
        return NotTested(f"no run recorded {claim.metric} for both models")
    return _with_detail(
        stats.mean_log_ratio(vit, cnn, "cell"),
        f"over {len(vit)} runs" if len(vit) > 1 else "in one run",
    )


def exact_cost_ratio(claim: Claim, cells: Sequence[CellRecord]) -> Evidence | NotTested:
    """A deterministic ViT/CNN ratio (FLOPs): the same in every cell, decided by its size."""
    mismatch = _params_mismatch(cells)
    if mismatch:
        return mismatch
    vit, cnn = _ratios(claim, cells)
    if not vit:
        return NotTested(f"no run recorded {claim.metric} for both models")
    ratios = [v / c for v, c in zip(vit, cnn, strict=True)]
    return stats.exact_ratio(float(np.median(ratios)), 1.0)


def _with_detail(evidence: Evidence, detail: str) -> Evidence:
    return replace(evidence, detail=detail)


EVIDENCE: dict[str, EvidenceFunction] = {
    "smallest_size_difference": smallest_size_difference,
    "trend_over_log_size": trend_over_log_size,
    "per_seed_mean_difference": per_seed_mean_difference,
    "cost_ratio": cost_ratio,
    "exact_cost_ratio": exact_cost_ratio,
}


def register_evidence(name: str, function: EvidenceFunction) -> None:
    """Add an evidence function a probe's claim can name; a name already taken is an error."""
    if name in EVIDENCE:
        raise ValueError(f"evidence function {name!r} is already registered")
    EVIDENCE[name] = function


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


def _groups(cells: Sequence[CellRecord]) -> dict[tuple[str, bool], list[CellRecord]]:
    groups: dict[tuple[str, bool], list[CellRecord]] = defaultdict(list)
    for cell in cells:
        groups[(cell.pair, cell.pretrained)].append(cell)
    return dict(groups)


def _scope(claim: Claim, cells: Sequence[CellRecord], pair: str, pretrained: bool) -> str:
    sizes = sorted({c.n_train for c in cells})
    seeds = sorted({c.seed for c in cells})
    size_text = f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,} to {sizes[-1]:,}"
    return (
        f"{claim.scope}; {pair}, {'pretrained' if pretrained else 'from scratch'}, "
        f"{size_text} training images, {len(seeds)} seed{'s' * (len(seeds) != 1)}"
    )


def judge_claims(
    cells: Sequence[CellRecord], claims: Sequence[Claim] | None = None, alpha: float = ALPHA
) -> list[Verdict]:
    """One verdict per claim and group of cells; p-values Holm-adjusted over all of them."""
    if not cells:
        raise CnnvitError("no finished runs to judge: run `cnnvit compare` or `cnnvit study` first")
    claims = list(CLAIMS if claims is None else claims)
    judged: list[tuple[Claim, tuple[str, bool], list[CellRecord], Evidence | NotTested]] = []
    for (pair, pretrained), group in _groups(cells).items():
        for claim in claims:
            if claim.evidence not in EVIDENCE:
                raise ValueError(f"claim {claim.id!r} names unknown evidence {claim.evidence!r}")
            judged.append(
                (claim, (pair, pretrained), group, EVIDENCE[claim.evidence](claim, group))
            )
    tested = [
        i
        for i, (*_, ev) in enumerate(judged)
        if isinstance(ev, Evidence) and ev.p_value is not None
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
        else:
            outcome, rule = decide(claim, ev, adjusted.get(i), alpha)
            lean, evidence, reason = direction(claim, ev), ev, ""
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
            explanation="",
            rule=rule,
            pair=pair,
            pretrained=pretrained,
            claim=claim,
        )
        verdicts.append(replace(verdict, explanation=explain(verdict, reason)))
    return verdicts
