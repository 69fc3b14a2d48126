"""Studies: `compare` repeated over training seeds x nested training fractions x pairs.

Format version 1. A study directory made by `cnnvit study` holds:

    study.json          schema_version (1), kind ("cnnvit-study"), status (running | complete |
                        failed | interrupted), error (one line or null), created/updated (UTC),
                        config (the StudyConfig: seeds, fractions, pairs, budget, max_epochs,
                        quick, output, and "compare", the recipe every cell shares, grouped by
                        stage; loads back with --config or --resume), grid (pairs with their
                        cnn and vit, fractions, seeds, split_seed, budget, train_split_images),
                        cells: {"<pair>-f<percent>-s<seed>": {pair, cnn, vit, fraction, seed,
                        epochs, n_train, path ("cells/<id>"), status (pending | running |
                        complete | failed | interrupted), wall_seconds, error, attempts,
                        set_aside (folders an unfinished attempt was moved to)}}, timings
                        (wall_seconds over all sessions; sessions: started, wall_seconds,
                        cells_trained).
    cells/<id>/         one ordinary run directory per cell, written by `compare` and read only
                        through `cnnvit.runs.load_run`; every cell shares the test split.
    cells/.incomplete-<id>-<time>/   an unfinished attempt, moved aside (never deleted).
    logs/<id>.log       each cell's compare output (epoch lines, warnings).
    figures/, report.md, report.html   the study report; rebuilt by `cnnvit report STUDY_DIR`.

A cell counts as finished when its own run.json says complete; study.json is a summary that a
crash can leave one step behind, never the authority. grid.py lists the cells, runner.py trains
them; the reading side (cnnvit.report.study_facts) sits below, in the report stage.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["build_study_config", "expand_grid", "run_study", "study"]


class _CallableModule(types.ModuleType):
    """`cnnvit.study(...)` runs a study although `cnnvit.study` is also this package: once the
    package is imported, Python binds the name to it, so the package itself must be callable."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .runner import study

        return study(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


def __getattr__(name: str) -> Any:  # lazy: importing the grid need not import the pipeline
    if name in ("study", "run_study"):
        from . import runner

        return getattr(runner, name)
    if name in ("build_study_config", "expand_grid"):
        from . import grid

        return getattr(grid, name)
    raise AttributeError(name)
