"""`cnnvit analyze`: probes on a finished run feed the report's verdicts and its Probes section."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import copy_run

from cnnvit.cli import main
from cnnvit.runs import load_run


def test_analyze_adds_probe_verdicts_to_the_report(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = copy_run(tiny_run, tmp_path)
    before = (run_dir / "report.md").read_text()
    assert "ViTs are better calibrated: **not tested**" in before
    assert main(["analyze", str(run_dir), "--probes", "calibration"]) == 0
    assert "report:" in capsys.readouterr().out
    run = load_run(run_dir)
    assert set(run.analyses) == {"calibration"}
    ece = run.probe_claims["ece_before_scaling"]
    assert 0 <= ece["cnn"] <= 1 and 0 <= ece["vit"] <= 1
    after = (run_dir / "report.md").read_text()
    assert "## Probes" in after and "### Calibration" in after
    assert "ViTs are better calibrated: **not tested**" not in after


def test_analyze_refuses_unknown_probes_in_one_line(
    tiny_run: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["analyze", str(tiny_run), "--probes", "calibration,astrology"]) == 1
    err = capsys.readouterr().err
    assert err.count("cnnvit: error:") == 1 and "astrology" in err and "Traceback" not in err
