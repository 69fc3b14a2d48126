"""Report stage: a report built from a run directory alone (facts, figures, reflection, render)."""

from .assemble import build_report

__all__ = ["build_report"]
