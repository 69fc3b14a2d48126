"""Peak memory through psutil: a block that holds a known allocation reports about that much."""

from __future__ import annotations

import time

import numpy as np
import psutil
import torch

from cnnvit.measure import PeakMemory


def test_cpu_peak_memory_sees_an_allocation_of_known_size():
    size_mb = 256
    with PeakMemory(torch.device("cpu")) as peak:
        block = np.ones(size_mb * 2**20, dtype=np.uint8)  # touched, so resident
        time.sleep(0.1)  # the sampler reads every 20 ms
        del block
    assert 0.8 * size_mb < peak.peak_mb < 1.5 * size_mb


def test_cpu_peak_memory_is_relative_to_the_start():
    ballast = np.ones(128 * 2**20, dtype=np.uint8)  # in use before the block: not counted
    with PeakMemory(torch.device("cpu")) as peak:
        time.sleep(0.05)
    assert peak.peak_mb < 32
    assert psutil.Process().memory_info().rss > ballast.nbytes
