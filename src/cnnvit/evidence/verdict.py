"""A verdict on one claim, as plain data: the outcome, the direction the estimate leans, the
evidence with its raw and Holm-adjusted p-values, the scope of the cells, the branch of the
decision rule that fired and, for a claim not tested, the reason. The engine (engine.py) builds
verdicts and the wording (wording.py) says them, `wording.explain` writing the one-sentence
explanation from these fields when a report renders it, so both import this module and neither
imports the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .claims import Claim
from .stats import Evidence

# "confounded": the pair's pretraining differs or is unknown, so a claim about architectures is
# shown with its numbers and the reason but not judged (engine.confounded_by).
OUTCOMES = ("supported", "contradicted", "inconclusive", "confounded", "not tested")


@dataclass(frozen=True)
class Oriented:
    """An effect turned to the claim's direction: above 0 (a difference) or 1 (a ratio) is
    what the claim says. `label` names it: "CNN - ViT", "CNN/ViT"."""

    estimate: float
    low: float
    high: float
    label: str
    first: str  # the family whose value comes first in `label`
    second: str


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
    reason: str = ""  # why it was not tested or is confounded ("" otherwise); `explain` says it
    rule: str = ""  # which branch of the decision rule fired (see `engine.decide`)
    pair: str = ""
    pretrained: bool = False
    # A power estimate, for an inconclusive accuracy or convergence claim (Claim.power_estimate):
    # about how many seeds a two-sided paired test at the interval's (family) level would need
    # to detect an effect of the threshold's size with 80% power, from the SD over seeds
    # (`spread`); None when not estimated, or with one seed and no earlier study of the pair and
    # data, where the spread is unknown. `spread_source` names that earlier study when the SD
    # is its (`spread_seeds` seeds), "" when it is the seeds' own.
    seeds_needed: int | None = None
    spread: float | None = None
    spread_source: str = ""
    spread_seeds: int | None = None
    # For an accuracy claim: the budget it holds at and whether both models converged there
    # (budgets.budget_note); "" for other claims.
    budget_note: str = ""
    claim: Claim | None = field(default=None, repr=False, compare=False)

    @property
    def effect(self) -> float | None:
        """The estimate (ViT - CNN, or ViT/CNN for ratios), None when not tested."""
        return None if self.evidence is None else self.evidence.estimate

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% interval of the estimate, None when not tested."""
        return None if self.evidence is None else (self.evidence.low, self.evidence.high)

    @property
    def oriented(self) -> Oriented | None:
        """The effect and interval in the claim's direction (None when not tested)."""
        evidence, claim = self.evidence, self.claim
        if evidence is None or claim is None:
            return None
        sign = claim.claimed_sign
        first, second = ("ViT", "CNN") if sign > 0 else ("CNN", "ViT")
        raw = (evidence.estimate, evidence.low, evidence.high)
        if evidence.scale == "ratio":
            values = [v**sign if v > 0 else math.nan for v in raw]
            label = f"{first}/{second}"
        else:
            values = [sign * v for v in raw]
            label = f"{first} - {second}"
        estimate, low, high = values
        if sign < 0:
            low, high = high, low
        return Oriented(estimate, low, high, label, first, second)


@dataclass(frozen=True)
class PriorSpread:
    """The SD over seeds an earlier study measured for one claim: a one-run power estimate's
    stand-in for the spread that one run cannot show."""

    spread: float
    seeds: int
    source: str  # e.g. "the study studies/20261207-101500-digits"
