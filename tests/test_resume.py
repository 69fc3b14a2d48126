"""Resume after kill -9: a real training subprocess is killed mid-epoch, resumed, and ends with
the same predictions and metrics as a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MINI

from cnnvit import pipeline
from cnnvit.errors import CnnvitError
from cnnvit.runs import load_run

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out

SETTINGS = {**MINI, "epochs": 5, "max_train_samples": 300}


def _flags(settings: dict) -> list[str]:
    return [part for k, v in settings.items() for part in (f"--{k.replace('_', '-')}", str(v))]


def _history_length(run_dir: Path, family: str) -> int:
    try:
        record = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return 0
    return len(record["models"][family].get("history") or [])


def test_killed_mid_epoch_then_resumed_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    reference = load_run(pipeline.compare(dataset="digits", output=str(tmp_path / "ref"),
                                          **SETTINGS))  # fmt: skip
    killed = tmp_path / "killed"
    command = [sys.executable, "-c", "import sys; from cnnvit.cli import main; "
               "sys.exit(main(sys.argv[1:]))", "compare", "--dataset", "digits",
               "--output-dir", str(killed), *_flags(SETTINGS)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while _history_length(killed, "cnn") < 2:  # two epochs of the CNN are on record
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        epoch_seconds = json.loads((killed / "run.json").read_text())["models"]["cnn"]["history"]
        time.sleep(epoch_seconds[-1]["seconds"] / 2)  # into the middle of the next epoch
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    partial = json.loads((killed / "run.json").read_text())
    assert partial["status"] == "running"  # killed: nothing had the chance to say otherwise
    assert partial["models"]["cnn"]["status"] == "training"
    assert (killed / ".checkpoints" / "cnn").is_dir()

    resumed = load_run(pipeline.compare(resume=killed))
    assert resumed.status == "complete"
    assert not (killed / ".checkpoints" / "cnn").exists()  # removed once the model is saved
    for family in ("cnn", "vit"):
        a, b = reference.models[family], resumed.models[family]
        assert np.array_equal(a.predictions().ids, b.predictions().ids)
        np.testing.assert_array_equal(a.predictions().logits, b.predictions().logits)
        assert a.test == b.test
        assert a.results["best_epoch"] == b.results["best_epoch"]
        strip = [{k: v for k, v in row.items() if k != "seconds"} for row in a.history]
        assert [{k: v for k, v in row.items() if k != "seconds"} for row in b.history] == strip
    assert resumed.comparison == reference.comparison


def test_resume_refuses_a_complete_run_and_other_settings(tiny_run: Path) -> None:
    with pytest.raises(CnnvitError, match="nothing to resume"):
        pipeline.compare(resume=tiny_run)
    with pytest.raises(CnnvitError, match="its own settings"):
        pipeline.compare(resume=tiny_run, epochs=3)
