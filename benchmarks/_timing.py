"""Timing helpers shared by the benchmark scripts (run as `python benchmarks/<name>.py`)."""

from __future__ import annotations

import time
from typing import Callable


def best_of(fn: Callable[[], object], n: int = 3) -> float:
    """Fastest of ``n`` wall-clock runs: the least disturbed by a noisy machine."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
