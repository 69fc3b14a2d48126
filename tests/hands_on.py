"""The one tiny run the hands-on tests share (demo, browser, trackers, `compare --json --quiet`).

It is made once per pytest session, through the command line exactly as a script would call it,
with TensorBoard tracking on; every test module that needs it calls `hands_on_run`, and the
first call makes it. What the command printed is kept beside it for the CLI tests.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

# nano presets at 16 px on a few hundred digits, 2 epochs: seconds, and both models learn a bit.
FLAGS = [
    "--dataset", "digits", "--cnn", "convnext-nano", "--vit", "vit-nano", "--image-size", "16",
    "--epochs", "2", "--batch-size", "64", "--lr", "1e-3", "--max-train-samples", "240",
    "--max-eval-samples", "60", "--eval-batch-size", "32", "--seed", "0", "--precision", "fp32",
    "--report-to", "tensorboard",
]  # fmt: skip


@dataclass(frozen=True)
class HandsOnRun:
    """The shared run and what `cnnvit compare --json --quiet` printed while making it."""

    path: Path
    exit_status: int
    stdout: str
    stderr: str


def hands_on_run(factory: pytest.TempPathFactory) -> HandsOnRun:
    """Make the shared run on first use (through `cnnvit.cli.main`), then reuse it."""
    from cnnvit.cli import main

    folder = factory.getbasetemp() / "hands-on"
    record = folder / "cli.json"
    if not record.is_file():
        folder.mkdir(exist_ok=True)
        out, err = io.StringIO(), io.StringIO()
        before = os.environ.get("TQDM_DISABLE")
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = main(["compare", *FLAGS, "--output-dir", str(folder / "run"),
                               "--json", "--quiet"])  # fmt: skip
        finally:  # --quiet switches tqdm off process-wide; leave other tests as they were
            if before is None:
                os.environ.pop("TQDM_DISABLE", None)
            else:
                os.environ["TQDM_DISABLE"] = before
        record.write_text(json.dumps({"status": status, "stdout": out.getvalue(),
                                      "stderr": err.getvalue()}))  # fmt: skip
    saved = json.loads(record.read_text())
    if saved["status"] != 0:
        pytest.fail(f"the shared tiny run failed: {saved['stderr'][-2000:]}")
    return HandsOnRun(folder / "run", saved["status"], saved["stdout"], saved["stderr"])
