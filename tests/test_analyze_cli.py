"""`cnnvit analyze`: probes on a finished run feed the report's verdicts and its Probes section."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import copy_run

from cnnvit.cli import main
from cnnvit.evidence import Verdict
from cnnvit.report.facts import facts_from_run
from cnnvit.runs import load_run


def _calibration(run_dir: Path) -> Verdict:
    return next(
        v for v in facts_from_run(load_run(run_dir)).verdicts if v.claim_id == "calibration"
    )


def test_analyze_adds_probe_verdicts_to_the_report(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, quick_figures: None
) -> None:
    run_dir = copy_run(tiny_run, tmp_path)
    assert _calibration(run_dir).outcome == "not tested"
    assert main(["analyze", str(run_dir), "--probes", "calibration"]) == 0
    assert "report:" in capsys.readouterr().out
    run = load_run(run_dir)
    assert set(run.analyses) == {"calibration"}
    ece = run.probe_claims["ece_before_scaling"]
    assert 0 <= ece["cnn"] <= 1 and 0 <= ece["vit"] <= 1
    verdict = _calibration(run_dir)  # judged now, on the probe's ECE difference
    assert verdict.outcome != "not tested" and verdict.evidence is not None
    assert verdict.effect == pytest.approx(100 * (ece["vit"] - ece["cnn"]))  # ViT - CNN, points
    after = (run_dir / "report.md").read_text()  # the report was rebuilt with the probe
    assert "## Probes" in after and "### Calibration" in after


def test_analyze_refuses_unknown_probes_in_one_line(
    tiny_run: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["analyze", str(tiny_run), "--probes", "calibration,astrology"]) == 1
    err = capsys.readouterr().err
    assert err.count("cnnvit: error:") == 1 and "astrology" in err and "Traceback" not in err
