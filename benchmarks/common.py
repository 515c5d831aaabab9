"""Shared timing helpers: warm-up, repetitions, medians, ratios and PASS/MISS lines."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch


@dataclass
class Timing:
    """Seconds per call of one operation: median, min, max over ``repeats`` runs."""

    name: str
    median: float
    min: float
    max: float
    repeats: int
    samples: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    name: str,
    fn: Callable[[], object],
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | None = None,
) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones."""
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - t0)
    return Timing(name, statistics.median(samples), min(samples), max(samples), repeats, samples)


def measure_interleaved(
    fns: dict[str, Callable[[], object]],
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | None = None,
) -> dict[str, Timing]:
    """Time several operations round-robin, so machine noise hits them all alike.

    Ratios between the returned medians are what the benchmarks report.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            samples[name].append(time.perf_counter() - t0)
    return {
        k: Timing(k, statistics.median(v), min(v), max(v), repeats, v) for k, v in samples.items()
    }


@dataclass
class Target:
    """A performance goal from an issue: ``ratio <= limit`` (or ``>=`` when ``at_least``)."""

    name: str
    ratio: float
    limit: float
    at_least: bool = False

    @property
    def passed(self) -> bool:
        return self.ratio >= self.limit if self.at_least else self.ratio <= self.limit

    def line(self) -> str:
        op = ">=" if self.at_least else "<="
        verdict = "PASS" if self.passed else "MISS"
        return f"{verdict}  {self.name}: {self.ratio:.3f} (target {op} {self.limit:g})"

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def print_table(timings: dict[str, Timing], reference: str | None = None) -> None:
    """Print medians (ms) with min-max, and the ratio to ``reference`` if given."""
    ref = timings[reference].median if reference else None
    width = max(len(k) for k in timings)
    for k, t in timings.items():
        extra = f"  x{t.median / ref:6.2f}" if ref else ""
        spread = f"[{t.min * 1e3:.2f}-{t.max * 1e3:.2f}]"
        print(f"  {k:<{width}}  {t.median * 1e3:9.2f} ms  {spread}{extra}")
