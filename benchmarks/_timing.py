"""Timing helpers shared by the benchmark scripts (run as `python benchmarks/<name>.py`)."""

from __future__ import annotations

import statistics
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


def interleaved_rounds(models: list[str], batches: list, step: Callable[[str, object], None],
                       rounds: int, samples_per_round: int, warmup: int = 3) -> dict[str, list[float]]:
    """Samples/s of each model per timed round, the models interleaved (A, B, C, A, B, C, ...) so
    machine noise hits them alike; ``warmup`` batches per model first, untimed."""
    for name in models:
        for b in batches[:warmup]:
            step(name, b)
    per_round: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name in models:
            t0 = time.perf_counter()
            for b in batches:
                step(name, b)
            per_round[name].append(samples_per_round / (time.perf_counter() - t0))
    return per_round


def paired_ratio(per_round: dict[str, list[float]], name: str, base: str = "base") -> float:
    """Median over rounds of the per-round ratio ``name / base`` (pairs rounds run back to back)."""
    return statistics.median(a / b for a, b in zip(per_round[name], per_round[base]))


def print_rounds(per_round: dict[str, list[float]], base: str = "base") -> None:
    """One line per model: median samples/s, ratio to ``base``, paired ratio, every round."""
    sps = {name: statistics.median(v) for name, v in per_round.items()}
    print(f"{'model':14s} {'samples/s':>10s} {'vs base':>8s} {'paired':>7s}  per round")
    for name, rounds in per_round.items():
        rel = "1.000" if name == base else f"{sps[name] / sps[base]:.3f}"
        paired = "" if name == base else f"{paired_ratio(per_round, name, base):.3f}"
        print(f"{name:14s} {sps[name]:10,.0f} {rel:>8s} {paired:>7s}  " + " ".join(f"{v:,.0f}" for v in rounds))
