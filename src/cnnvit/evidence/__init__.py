"""Evidence: measured runs in, verdicts on the folk CNN-versus-ViT claims out.

The flow inside: `cells` (one `CellRecord` per finished run, `cell_from_run`) -> `measures`
(one evidence function per kind of claim) using `stats` (the named statistical methods) ->
`engine` (the decision rule, `judge_claims`, which returns `verdict.Verdict`s) -> `wording` (the
one way a verdict is said, its sentence written by `explain`).
`claims` declares every claim once. A report builds cells from its run directories, calls
`judge_claims`, and prints with `verdict_sentence` or `verdict_table_markdown`; the study report
adds `fraction_table` and `crossing` for its curves.
"""

from . import adaptation  # noqa: F401  (registers the --adapt probe,full claim)
from .cells import CellRecord, cell_from_run
from .claims import CLAIMS, Claim, claim_by_id, register_claim
from .curves import FractionRow, crossing, fraction_table
from .engine import decide, judge_claims
from .measures import EVIDENCE, NotTested, register_evidence
from .stats import Crossing, Evidence, curve_crossing
from .verdict import OUTCOMES, PriorSpread, Verdict
from .wording import (
    VERDICT_COLUMNS,
    explain,
    verdict_row,
    verdict_sentence,
    verdict_table_markdown,
)

__all__ = [
    "CLAIMS",
    "EVIDENCE",
    "OUTCOMES",
    "VERDICT_COLUMNS",
    "CellRecord",
    "Claim",
    "Crossing",
    "Evidence",
    "FractionRow",
    "NotTested",
    "PriorSpread",
    "Verdict",
    "cell_from_run",
    "claim_by_id",
    "crossing",
    "curve_crossing",
    "decide",
    "explain",
    "fraction_table",
    "judge_claims",
    "register_claim",
    "register_evidence",
    "verdict_row",
    "verdict_sentence",
    "verdict_table_markdown",
]
