"""`cnnvit study --executor ray`: the cells as Ray tasks give the local executor's results.

A local Ray instance with 2 CPUs is started here; one tiny study (nano pair, 16 px, 200 digits,
1 seed x 2 fractions, fixed learning rate) runs once with the Ray executor and once with the
local one into two directories. Both must complete the same cells with bit-identical test
logits: each cell is the same `compare` call, one torch thread on both sides (Ray gives a
1-CPU task OMP_NUM_THREADS=1; this process is set to match). A cell that fails on a Ray worker
must come back as its own one-line error. Skipped when Ray is not installed (the `ray` extra).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import STUDY

from cnnvit import pipeline
from cnnvit.errors import CnnvitError
from cnnvit.runs import load_run
from cnnvit.study import study
from cnnvit.study.executors import CellJob, RayExecutor, run_cell

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out

ray = pytest.importorskip("ray")

SMALL = {**STUDY, "max_train_samples": 200, "seeds": [0]}
IDS = ["nano-f50-s0", "nano-f100-s0"]


@pytest.fixture(scope="module")
def local_ray() -> Any:
    """A Ray instance on this machine with 2 CPUs, for this module only."""
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # the workers inherit it: one torch thread per cell
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
    if before is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = before


@pytest.fixture(scope="module")
def studies(local_ray: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same study through each executor; how many cells trained in this process."""
    root = tmp_path_factory.mktemp("executors")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the Ray workers run (OMP_NUM_THREADS=1)
    seen: dict[str, Any] = {}
    real = pipeline.compare
    try:
        for name in ("ray", "local"):
            calls: list[str] = []

            def counted(*args: Any, _calls: list[str] = calls, **kwargs: Any) -> Path:
                _calls.append(Path(kwargs["output"]).name)
                return real(*args, **kwargs)

            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(pipeline, "compare", counted)
                seen[name] = study(output=str(root / name), executor=name, **SMALL)
            seen[f"{name}_calls_here"] = calls
    finally:
        torch.set_num_threads(threads)
    return seen


def test_ray_cells_run_in_workers_and_complete_like_local(studies: dict[str, Any]) -> None:
    # The Ray cells trained in worker processes, never here; the local ones here, in order.
    assert studies["ray_calls_here"] == []
    assert studies["local_calls_here"] == IDS
    for name in ("ray", "local"):
        record = json.loads((studies[name] / "study.json").read_text())
        assert record["status"] == "complete"
        assert record["config"]["executor"] == name
        assert {k: v["status"] for k, v in record["cells"].items()} == dict.fromkeys(
            IDS, "complete"
        )
        assert all(v["attempts"] == 1 and v["wall_seconds"] > 0 for v in record["cells"].values())
        assert (studies[name] / "report.html").is_file()
        for cell in IDS:  # each cell's compare output went to its own log, in either executor
            assert "epoch" in (studies[name] / "logs" / f"{cell}.log").read_text().lower()


def test_ray_and_local_cells_have_identical_predictions(studies: dict[str, Any]) -> None:
    for cell in IDS:
        ray_run = load_run(studies["ray"] / "cells" / cell)
        local_run = load_run(studies["local"] / "cells" / cell)
        assert ray_run.dataset["splits"] == local_run.dataset["splits"]
        for family in ("cnn", "vit"):
            a = ray_run.models[family].predictions()
            b = local_run.models[family].predictions()
            assert np.array_equal(a.ids, b.ids) and np.array_equal(a.labels, b.labels)
            assert np.array_equal(a.logits, b.logits), (cell, family, np.abs(a.logits - b.logits))
            accuracy = [run.models[family].test["accuracy"] for run in (ray_run, local_run)]
            assert accuracy[0] == accuracy[1]


def test_a_failing_ray_cell_reports_its_own_one_line_error(local_ray: Any, tmp_path: Path) -> None:
    job = CellJob(
        cell_id="bad", recipe={"dataset": str(tmp_path / "no-such-folder")}, settings={},
        output=str(tmp_path / "run"), log_path=str(tmp_path / "bad.log"), workdir=str(tmp_path),
    )  # fmt: skip
    events: list[tuple[str, Any]] = []
    with pytest.raises(CnnvitError) as caught:
        RayExecutor().run(
            [job], run_cell, lambda cell_id: events.append(("started", cell_id)),
            lambda cell_id, run_dir, seconds, error: events.append((cell_id, run_dir, error)),
        )  # fmt: skip
    assert events[0] == ("started", "bad")
    assert events[1][:2] == ("bad", None) and events[1][2] is caught.value
    assert "no-such-folder" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()  # nothing was created for the failed cell
    assert (tmp_path / "bad.log").read_text().startswith("=== ")


def test_each_ray_cell_gets_the_cpus_asked_and_an_impossible_gpu_is_refused(
    local_ray: Any, tmp_path: Path
) -> None:
    def assigned(job: CellJob) -> str:  # defined here: Ray pickles it by value
        import ray as ray_module

        resources = ray_module.get_runtime_context().get_assigned_resources()
        Path(job.output).write_text(json.dumps({"resources": resources}))
        return job.output

    job = CellJob(
        cell_id="two-cpus", recipe={}, settings={}, output=str(tmp_path / "assigned.json"),
        log_path=str(tmp_path / "cell.log"), workdir=str(tmp_path),
    )  # fmt: skip
    done: list[Any] = []
    RayExecutor(num_cpus=2).run([job], assigned, lambda cell_id: None,
                                lambda *event: done.append(event))  # fmt: skip
    assert done[0][3] is None
    assert json.loads((tmp_path / "assigned.json").read_text())["resources"] == {"CPU": 2.0}
    # This Ray instance has no GPU: a GPU cell would wait forever, so it is refused up front.
    with pytest.raises(CnnvitError, match="asks Ray for 1 GPU.*the cluster has 0"):
        RayExecutor(num_gpus=1).run([job], assigned, lambda cell_id: None, lambda *e: None)
    with pytest.raises(CnnvitError, match="--cell-cpus must be above 0"):
        RayExecutor(num_cpus=0)
