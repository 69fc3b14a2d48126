"""Report stage: a report built from a run directory alone (facts, figures, reflection, render).

`build_report(path)` builds a run's report, or a study's when `path` holds a study.json.
"""

from pathlib import Path

from .assemble import build_report as build_run_report


def build_report(path: str | Path) -> Path:
    """Rebuild the report of a run directory, or of a study directory (one with study.json)."""
    if (Path(path).expanduser() / "study.json").is_file():
        from .study_report import build_study_report

        return build_study_report(path)
    return build_run_report(path)


__all__ = ["build_report", "build_run_report"]
