"""The start of a run says when training is estimated at hours, with the estimate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_adapt import _folder

import cnnvit.pipeline
from cnnvit.pipeline import compare
from cnnvit.training.estimate import LONG_RUN_SECONDS, long_run_line, training_seconds


def test_the_estimate_counts_each_mode_s_passes() -> None:
    # 1 GFLOP forward at 10 GFLOP/s: 3 forwards per training image, 1 per validation image.
    assert training_seconds(1e9, 1e10, 1000, 200, 3, "full") == pytest.approx(960.0)
    assert training_seconds(1e9, 1e10, 1000, 200, 3, "probe") == pytest.approx(120.0)
    assert training_seconds(1e9, 1e10, 1000, 200, 3, "probe,full") == pytest.approx(1080.0)
    assert long_run_line({"a": 0.4 * LONG_RUN_SECONDS, "b": 0.5 * LONG_RUN_SECONDS}, {}) is None
    line = long_run_line({"a": 3000.0, "b": 9000.0}, {"a": 60.0, "b": 120.0})
    assert "3.3 h" in line and "a 50 min, b 2.5 h" in line and "--adapt probe" in line
    assert "3 min" in line  # the probe's estimate
    presets = long_run_line({"a": 3000.0, "b": 9000.0}, None)
    assert "--adapt probe" not in presets and "--max-train-samples" in presets


def test_a_run_estimated_at_hours_says_so_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hours = {"full": 5 * 3600.0, "probe": 90.0}
    monkeypatch.setattr(cnnvit.pipeline, "training_seconds",
                        lambda *args: hours[args[-1]])  # fmt: skip
    cnn, vit = _folder(tmp_path, "resnet-nano", "cnn"), _folder(tmp_path, "vit-nano", "vit")
    run = compare(report=False, output=str(tmp_path / "run"), dataset="digits", cnn=str(cnn),
                  vit=str(vit), image_size=16, epochs=1, max_train_samples=50,
                  max_eval_samples=20, precision="fp32")  # fmt: skip
    names = [
        json.loads((run / "run.json").read_text())["models"][f]["name"] for f in ("cnn", "vit")
    ]
    err = capsys.readouterr().err
    expected = long_run_line({n: hours["full"] for n in names}, {n: 90.0 for n in names})
    assert expected in err and "10.0 h" in expected
    assert err.index(expected) < err.index("epoch 1/1")
