"""Honest measurement helpers: clocks that synchronise, medians after warm-up, peak memory,
FLOP/s peaks, and the environment recorded beside every figure.
"""

from __future__ import annotations

import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
import torch

from .runtime import cpu_bf16_speedup, cpu_has_bf16
from .version import __version__


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so a clock read after it measures that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed_seconds(
    fn: Callable[[], Any], device: torch.device, repeats: int = 5, warmup: int = 2
) -> list[float]:
    """Wall time of each of `repeats` calls of `fn()`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def median_seconds(
    fn: Callable[[], Any], device: torch.device, repeats: int = 5, warmup: int = 2
) -> float:
    """Median wall time of `fn()` over `repeats` calls, after `warmup` untimed calls."""
    return statistics.median(timed_seconds(fn, device, repeats, warmup))


_PROCESS = psutil.Process()


def _rss_bytes() -> int:
    """Resident memory of this process now, in bytes (psutil: Linux, macOS and Windows alike)."""
    return _PROCESS.memory_info().rss


class PeakMemory:
    """Peak memory used inside a `with` block, in MB, above what was in use when it began.

    On CUDA this is the allocator's peak; on the CPU, resident memory sampled every 20 ms.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = _rss_bytes()
            self._max = self._base
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self._max = max(self._max, _rss_bytes())

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            peak = max(self._max, _rss_bytes())
        self.peak_mb = max(0.0, (peak - self._base) / 2**20)


def matmul_peak_flops(
    device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 10
) -> float:
    """Measured FLOP/s of a square matrix product: the machine's practical peak for `dtype`."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    seconds = median_seconds(lambda: a @ b, device, repeats=repeats, warmup=3)
    return 2 * size**3 / seconds


def git_commit() -> str | None:
    """The commit of the cnnvit checkout this runs from, if it is one."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()  # fmt: skip
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else what platform reports)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """Device, threads and versions, recorded beside every figure."""
    import transformers

    name = str(device)
    if device.type == "cuda":
        name = f"cuda ({torch.cuda.get_device_name(device)})"
    elif device.type == "cpu":
        name = f"cpu ({cpu_name()})"
    return {
        "device": name,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cnnvit": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        # The CPU kernels torch dispatches to (AVX2, AVX512, ...) and whether oneDNN runs bf16
        # natively: together they say which precision path a figure came from.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16": cpu_has_bf16(),
        # bf16 matrix products / fp32 ones here: auto trains in bf16 only from 1.2x (runtime.py).
        "cpu_bf16_speedup": round(cpu_bf16_speedup(), 2) if cpu_has_bf16() else None,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
