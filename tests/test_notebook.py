"""The workshop notebook runs end to end (nbclient, a fresh kernel) so that it never rots."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out

nbformat = pytest.importorskip("nbformat", reason="needs nbformat (pip install -e .[dev])")
nbclient = pytest.importorskip("nbclient", reason="needs nbclient (pip install -e .[dev])")
pytest.importorskip("ipykernel", reason="needs ipykernel (pip install -e .[dev])")

NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "workshop.ipynb"
BUDGET_SECONDS = 300  # the limit for the whole notebook on 2 cores


def test_notebook_is_committed_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    headings = [c.source.splitlines()[0] for c in notebook.cells if c.cell_type == "markdown"]
    steps = ["1. Prepare data", "2. Pick models", "3. Train with tracking", "4. Evaluate",
             "5. Reflect"]  # fmt: skip
    assert [h for h in headings if h.startswith("## ")] == [f"## {s}" for s in steps]


def test_workshop_notebook_runs_end_to_end(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CNNVIT_WORKSHOP_DIR", str(tmp_path))  # the kernel inherits it
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=BUDGET_SECONDS, kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )  # fmt: skip
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    seconds = time.perf_counter() - started
    assert seconds < BUDGET_SECONDS
    printed = "\n".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.get("output_type") == "stream"
    )
    run_dir = tmp_path / "run"
    assert (run_dir / "run.json").is_file() and (run_dir / "tracking" / "cnnvit").is_dir()
    assert f"report: {run_dir / 'report.html'}" in printed
    assert "cnn: convnext-nano" in printed and "vit: vit-nano" in printed
    images = sum(
        1
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    )
    assert images == 3  # the digits, the tracked curves, the two explanation maps
