"""Where a study's cells train: here, one after another, or as Ray tasks on a cluster.

An executor takes the pending cells as `CellJob`s (plain, picklable values: the study's compare
recipe as a dict, the cell's settings, its output and log paths) and a function that trains one
job and returns its run directory (`run_cell`). It reports each cell through two callbacks:
`started(cell_id)` when the cell is handed out and `finished(cell_id, run_dir, seconds, error)`
when it ends (`run_dir` None and `error` set when it failed); the runner keeps study.json from
those. `LocalExecutor` trains the cells in this process and stops at the first failure, as a
study always has. `RayExecutor` wraps the function in `ray.remote(num_cpus=...)`, submits every
pending cell at once and records each as it completes (`ray.wait`); a failed cell does not stop
the others, since they are independent and cluster time is dear; the study then ends failed with
the first error. Every Ray worker must see the same filesystem at the same paths as this process
(the cells are written straight into the study directory) and have cnnvit installed; the cells'
results are the same as the local executor's, because each cell is the same `compare` call.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..config import STUDY_EXECUTORS
from ..errors import CnnvitError, first_line


@dataclass(frozen=True)
class CellJob:
    """One pending cell as plain values, so it can be pickled to a Ray worker."""

    cell_id: str
    recipe: dict[str, Any]  # the study's CompareConfig.to_dict(), shared by every cell
    settings: dict[str, Any]  # what this cell changes (Cell.settings(): pair, seed, fraction)
    output: str  # the cell's run directory (absolute: workers may start in another folder)
    log_path: str  # where the cell's compare output goes (absolute)
    workdir: str  # this process's working directory: relative dataset paths resolve from it


CellFunction = Callable[[CellJob], str]
Started = Callable[[str], None]
Finished = Callable[[str, "str | None", float, "BaseException | None"], None]


@contextlib.contextmanager
def _inside(folder: str) -> Iterator[None]:
    """Run in `folder` when this machine has it (a shared filesystem), then change back."""
    before = os.getcwd()
    moved = os.path.isdir(folder) and os.path.realpath(folder) != os.path.realpath(before)
    if moved:
        os.chdir(folder)
    try:
        yield
    finally:
        if moved:
            os.chdir(before)


def run_cell(job: CellJob) -> str:
    """Train one cell with the ordinary `compare` into `job.output`; returns its run directory.

    Its stderr (compare's epoch lines and warnings) is appended to `job.log_path`.
    """
    from .. import pipeline
    from ..config import build_config

    with _inside(job.workdir), open(job.log_path, "a", encoding="utf-8") as log:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        log.write(f"=== {stamp} cell {job.cell_id}: {job.settings}\n")
        log.flush()
        with contextlib.redirect_stderr(log):
            run_dir = pipeline.compare(
                build_config(job.recipe), output=job.output, report=False, **job.settings
            )
    return str(run_dir)


def _timed(function: CellFunction, job: CellJob) -> tuple[str, float]:
    """`function(job)` and its wall time in seconds, measured where it runs (not in a queue)."""
    started = time.perf_counter()
    run_dir = function(job)
    return run_dir, time.perf_counter() - started


class LocalExecutor:
    """The cells one after another in this process; the first failure stops the study."""

    name = "local"

    def run(
        self, jobs: Sequence[CellJob], function: CellFunction, started: Started,
        finished: Finished,
    ) -> None:  # fmt: skip
        """Train every job in order, reporting each through `started` and `finished`."""
        for job in jobs:
            started(job.cell_id)
            began = time.perf_counter()
            try:
                run_dir = function(job)
            except Exception as err:  # a KeyboardInterrupt passes through: the runner says so
                finished(job.cell_id, None, time.perf_counter() - began, err)
                raise
            finished(job.cell_id, run_dir, time.perf_counter() - began, None)


class RayExecutor:
    """Every cell as one Ray task (`num_cpus` and `num_gpus` each), on the cluster at `address`.

    `address` None means the `RAY_ADDRESS` environment variable, else a new local Ray instance;
    a Ray already initialised in this process (ray.init) is used as it is and left running.
    Ray gives a task OMP_NUM_THREADS = its CPUs (torch's threads; unless the driver set it) and
    CUDA_VISIBLE_DEVICES = its GPUs, so a cell's `--device auto` trains on the GPU it was given.
    """

    name = "ray"

    def __init__(
        self, num_cpus: float = 1, address: str | None = None, num_gpus: float = 0
    ) -> None:
        if not num_cpus > 0 or not num_gpus >= 0:
            raise CnnvitError(
                f"--cell-cpus must be above 0 and --cell-gpus at least 0, not {num_cpus} and "
                f"{num_gpus}"
            )
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.address = address

    def run(
        self, jobs: Sequence[CellJob], function: CellFunction, started: Started,
        finished: Finished,
    ) -> None:  # fmt: skip
        """Submit every job, then report each as it completes; raise the first failure last."""
        try:
            import ray
        except ImportError:
            raise CnnvitError(
                "--executor ray needs Ray: pip install 'cnnvit[ray]' (or pip install ray)"
            ) from None
        owned = not ray.is_initialized()
        if owned:
            address = self.address or os.environ.get("RAY_ADDRESS") or None
            try:
                ray.init(address=address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as err:
                first = first_line(err)
                raise CnnvitError(
                    f"cannot start or reach Ray at {address or 'a new local instance'} ({first}):"
                    " check RAY_ADDRESS (e.g. ray://HEAD:10001 or auto)"
                ) from None
        try:
            self._check_resources(ray.cluster_resources())
        except CnnvitError:
            if owned:
                ray.shutdown()
            raise
        # No retries: a cell that fails fails the same way again, and a retried cell would find
        # its own half-written run directory (compare never overwrites a run).
        task = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0)(_timed)
        pending: dict[Any, CellJob] = {}
        try:
            for job in jobs:
                pending[task.remote(function, job)] = job
                started(job.cell_id)
            first_error: BaseException | None = None
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ref)
                try:
                    run_dir, seconds = ray.get(ref)
                except ray.exceptions.RayTaskError as err:
                    # The cell's own exception (a CnnvitError keeps its one line), not Ray's
                    # wrapper whose first line names the task and worker.
                    cause = err.cause if isinstance(err.cause, BaseException) else err
                    finished(job.cell_id, None, 0.0, cause)
                    first_error = first_error or cause
                    continue
                finished(job.cell_id, run_dir, seconds, None)
            if first_error is not None:
                raise first_error
        finally:
            for ref in pending:  # interrupted: stop the cells still queued or training
                ray.cancel(ref)
            if owned:
                ray.shutdown()

    def _check_resources(self, cluster: dict[str, float]) -> None:
        """Refuse a cell size no node of the cluster has: Ray would queue it forever."""
        for kind, wanted, flag in (("CPU", self.num_cpus, "--cell-cpus"),
                                   ("GPU", self.num_gpus, "--cell-gpus")):  # fmt: skip
            have = cluster.get(kind, 0.0)
            if wanted > have:
                raise CnnvitError(
                    f"each cell asks Ray for {wanted:g} {kind}(s) but the cluster has {have:g}: "
                    f"lower {flag} or add {kind} nodes"
                )


def make_executor(name: str, cpus: float = 1, gpus: float = 0) -> LocalExecutor | RayExecutor:
    """The executor called `name` ("local" or "ray"; a Ray cell reserves `cpus` and `gpus`)."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(num_cpus=cpus, num_gpus=gpus)
    raise CnnvitError(f"--executor must be one of {', '.join(STUDY_EXECUTORS)}, not '{name}'")
