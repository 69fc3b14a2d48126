"""The budget a verdict holds at: which budget the cells trained under, whether both models
converged there, and which claims a budget settles by construction.

An accuracy claim (test accuracy or macro-F1) is a statement about what each model reached with
the budget it had. `budget_note` says that budget (equal epochs, equal training FLOPs or equal
training time) and, from each run's convergence record (training/convergence.py), whether both
models had converged; where one had not, the claim holds "at this budget" only, and the note
says how much longer that model would have needed when a fit of its validation curve allows an
estimate. Under `--budget time:S` both models train the same seconds by construction, so the
training-time claim is not tested (`budget_not_tested`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from ..config import FAMILIES, FAMILY_NAMES
from .cells import CellRecord
from .claims import Claim
from .measures import NotTested

ACCURACY_METRICS = frozenset({"accuracy", "macro_f1"})


def budget_text(cells: Sequence[CellRecord]) -> str:
    """The cells' budget in words: "equal training FLOPs (3.2e+09 per model)", "6 epochs"."""
    stated = sorted({c.budget for c in cells if c.budget_mode != "epochs" and c.budget})
    if stated:
        return "; ".join(stated)
    epochs = sorted({c.epochs for c in cells if c.epochs})
    if not epochs:
        return "the recorded budget"
    trained = [  # --until-converged: the epochs each model took, up to the cap (`epochs`)
        int(r.get("epochs", 0)) + int(r.get("cool_down_epochs", 0))
        for c in cells
        for r in c.convergence.values()
        if r.get("cool_down_from")
    ]
    if trained:
        caps = "/".join(map(str, epochs))
        return f"convergence ({min(trained)} to {max(trained)} epochs per model, cap {caps})"
    return "/".join(map(str, epochs)) + " epochs per model"


def budget_not_tested(claim: Claim, cells: Sequence[CellRecord]) -> NotTested | None:
    """The training-time claim under a time budget: equal by construction, so not tested."""
    if claim.metric == "train_seconds" and any(c.budget_mode == "time" for c in cells):
        return NotTested(
            "both models trained the same seconds by construction (--budget time), so training "
            "time cannot tell them apart; see training throughput"
        )
    return None


def _longer(cells: Sequence[CellRecord], family: str) -> str:
    """How much longer `family` needed in the cells where it had not converged."""
    records = [c.convergence.get(family) or {} for c in cells]
    records = [r for r in records if r and not r.get("converged")]
    extra = [r.get("more_epochs") for r in records]
    if not records or any(e is None for e in extra):
        return "how much longer it needed cannot be estimated from its validation curve"
    more = statistics.median(float(e) for e in extra)
    trained = statistics.median(float(r.get("epochs") or 0) for r in records)
    times = f", about {(trained + more) / trained:.1f}x this budget" if trained > 0 else ""
    return (
        f"a fit of its validation curve puts its plateau about {more:.0f} more epochs away{times}"
    )


def budget_note(claim: Claim, cells: Sequence[CellRecord]) -> str:
    """The sentence an accuracy verdict carries about its budget and convergence; "" for other
    claims and for cells without convergence records (runs from before the record)."""
    if claim.metric not in ACCURACY_METRICS:
        return ""
    judged = [c for c in cells if all(c.convergence.get(f) for f in FAMILIES)]
    if not judged:
        return ""
    budget = budget_text(cells)
    behind = {f: sum(1 for c in judged if not c.convergence[f].get("converged")) for f in FAMILIES}
    if not any(behind.values()):
        return f"This holds at {budget}, where both models converged in every run."
    runs = len(judged)
    parts = [
        f"the {FAMILY_NAMES[f]} had not converged in {n} of {runs} run{'s' * (runs != 1)}; "
        + _longer(judged, f)
        for f, n in behind.items()
        if n
    ]
    return f"At this budget only ({budget}): " + "; ".join(parts) + "."
