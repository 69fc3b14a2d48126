"""Evidence: measured runs in, verdicts on the folk CNN-versus-ViT claims out.

`stats` holds the named statistical methods, `claims` the one declaration of every claim,
`engine` the evidence functions and the decision rule, `wording` the one way a verdict is said.
A report builds `CellRecord`s from its run directories, calls `judge_claims`, and prints with
`verdict_sentence` or `verdict_table_markdown`.
"""

from .claims import CLAIMS, Claim, claim_by_id, register_claim
from .engine import (
    EVIDENCE,
    CellRecord,
    NotTested,
    Verdict,
    decide,
    judge_claims,
    register_evidence,
)
from .stats import Crossing, Evidence, curve_crossing
from .wording import (
    VERDICT_COLUMNS,
    verdict_row,
    verdict_sentence,
    verdict_table_markdown,
)

__all__ = [
    "CLAIMS",
    "EVIDENCE",
    "VERDICT_COLUMNS",
    "CellRecord",
    "Claim",
    "Crossing",
    "Evidence",
    "NotTested",
    "Verdict",
    "claim_by_id",
    "curve_crossing",
    "decide",
    "judge_claims",
    "register_claim",
    "register_evidence",
    "verdict_row",
    "verdict_sentence",
    "verdict_table_markdown",
]
