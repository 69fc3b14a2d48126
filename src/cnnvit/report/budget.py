"""The run report's budget section: the budget mode, what each model spent under it (training
FLOPs, seconds, images, steps and the epochs they make) and whether it converged by the stated
rule (run.json's `budget` block and each model's `budget` and `convergence` records)."""

from __future__ import annotations

from typing import Any

from .facts import ROLE, RunFacts, show
from .render import Block


def _converged(record: dict[str, Any]) -> str:
    if not record:
        return "n/a"
    if record.get("converged"):
        return f"yes, plateau at epoch {record.get('plateau_epoch')}"
    more = record.get("more_epochs")
    if more is None:
        return "no (how much longer: cannot estimate)"
    return f"no (about {float(more):.0f} more epochs, by a fit of its validation curve)"


def budget_blocks(f: RunFacts) -> list[Block]:
    """The budget paragraph and table; nothing for a run from before budgets were recorded."""
    budget = f.extra.get("budget") or {}
    spent = {k: m.get("budget") for k, m in f.models.items() if m.get("budget")}
    if not budget or not spent:
        return []
    rule = next((m["convergence"]["rule"] for m in f.models.values() if m.get("convergence")), "")
    rows = [
        [ROLE[k], show(s.get("flops"), "si"), show(s.get("seconds"), ".1f"),
         show(s.get("images"), ",.0f"), show(s.get("steps"), ",.0f"), show(s.get("epochs"), ".2f"),
         _converged(f.models[k].get("convergence") or {})]
        for k, s in spent.items()
    ]  # fmt: skip
    text = (
        f"Budget: {budget.get('describe', budget.get('mode'))} (--budget {budget.get('asked')}); "
        f"schedule: {budget.get('schedule', 'n/a')}. Training FLOPs are counted as "
        f"{budget.get('flops_per_trained_image', 'forward FLOPs x 3')} per trained image. "
        f"Convergence: {rule}."
    )
    header = ["", "training FLOPs", "seconds", "images", "steps", "epochs", "converged"]
    return [("p", text), ("table", header, rows, "lrrrrrl")]
