"""--adapt probe,full: both modes in one compare, recorded per model, and the transfer claim
"a linear probe on ViT features is closer to full fine-tuning than on CNN features"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_adapt import _folder

from cnnvit.config import build_config
from cnnvit.errors import CnnvitError
from cnnvit.evidence import CellRecord, cell_from_run, judge_claims
from cnnvit.evidence.adaptation import (
    PROBE_CLOSER,
    bootstrap_gap_difference,
    gap_difference_counts,
    probe_gap_difference,
)
from cnnvit.evidence.measures import NotTested
from cnnvit.models.adaptation import DEFAULT_RULE, MODE_TEXT, adaptation_sentence
from cnnvit.pipeline import compare
from cnnvit.report import build_report
from cnnvit.runs import load_run
from cnnvit.study.runner import study


def test_probe_full_runs_both_modes_and_tests_the_gap_claim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cnn, vit = _folder(tmp_path, "resnet-nano", "cnn"), _folder(tmp_path, "vit-nano", "vit")
    run_dir = compare(report=False, output=str(tmp_path / "run"), dataset="digits",
                      cnn=str(cnn), vit=str(vit), image_size=16, epochs=1,
                      max_train_samples=100, max_eval_samples=40, precision="fp32",
                      adapt="probe,full")  # fmt: skip
    record = json.loads((run_dir / "run.json").read_text())
    run = load_run(run_dir)
    gaps = {}
    for family, dim in (("cnn", 104), ("vit", 96)):
        model = record["models"][family]
        probe = model["adaptation"]["probe"]
        assert model["adaptation"]["mode"] == "probe,full" and model["training"]["adapt"] == "full"
        assert probe["trainable_params"] == 10 * dim + 10  # the classifier alone
        assert model["training"]["trainable_params"] == model["params"]  # then every weight
        probe_correct = run.models[family].probe_predictions().correct
        assert probe["test_accuracy"] == pytest.approx(probe_correct.mean())
        gaps[family] = model["test"]["accuracy"] - probe["test_accuracy"]
    assert not (run_dir / ".checkpoints").exists()  # the probes' logits went with the models
    counts = record["comparison"]["probe_full"]["gap_difference_counts"]
    assert sum(counts.values()) == 40
    mean = sum(int(k) * v for k, v in counts.items()) / 40
    assert mean == pytest.approx(gaps["vit"] - gaps["cnn"])
    cell = cell_from_run(run)
    assert cell.probe_gaps == counts
    verdict = next(v for v in judge_claims([cell]) if v.claim_id == PROBE_CLOSER.id)
    assert verdict.outcome != "not tested"
    assert verdict.evidence.estimate == pytest.approx(100 * (gaps["vit"] - gaps["cnn"]))
    assert "bootstrap" in verdict.evidence.method
    assert "training is estimated at" not in capsys.readouterr().err  # seconds, not hours
    report = (build_report(run_dir).parent / "report.md").read_text()
    assert adaptation_sentence("probe,full").split(", the same")[0] in report
    assert DEFAULT_RULE in report and "| linear probe | full fine-tune |" in report
    card = (run_dir / "vit" / "README.md").read_text()
    assert MODE_TEXT["probe,full"] in card and "The linear probe reached" in card


def test_the_gap_claim_is_not_tested_without_probe_full() -> None:
    cell = CellRecord(pair="a+b", fraction=1.0, n_train=100, seed=0, pretrained=True,
                      metrics={"cnn": {"accuracy": 0.9}, "vit": {"accuracy": 0.8}})  # fmt: skip
    assert isinstance(probe_gap_difference(PROBE_CLOSER, [cell]), NotTested)


def test_gap_counts_and_bootstrap() -> None:
    right, wrong = np.ones(4, bool), np.zeros(4, bool)
    # The CNN's probe gets nothing its fine-tune gets; the ViT's probe everything.
    assert gap_difference_counts(right, wrong, right, right) == {
        "-2": 0, "-1": 4, "0": 0, "1": 0, "2": 0
    }  # fmt: skip
    none = bootstrap_gap_difference({"0": 200})
    assert (none.estimate, none.p_value) == (0.0, 1.0)
    lopsided = bootstrap_gap_difference({"-1": 60, "0": 130, "1": 10})
    assert lopsided.estimate == pytest.approx(100 * -50 / 200)
    assert lopsided.high < 0 < 0.01 > lopsided.p_value
    balanced = bootstrap_gap_difference({"-1": 30, "0": 140, "1": 30})
    assert balanced.low < 0 < balanced.high and balanced.p_value > 0.5


def test_probe_full_is_one_combination_and_not_in_study(tmp_path: Path) -> None:
    assert build_config({"adapt": "probe,full"}).train.adapt == "probe,full"
    with pytest.raises(CnnvitError, match="the one combination a run compares is probe,full"):
        build_config({"adapt": "head,full"})
    with pytest.raises(CnnvitError, match="not supported in study yet"):
        study(dataset="digits", adapt="probe,full", output=str(tmp_path / "s"))
    assert not (tmp_path / "s").exists()
