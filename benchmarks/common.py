"""Shared benchmark helpers: timing (warm-up, repetitions, medians, ratios, PASS/MISS lines)
and the adapter that feeds given maps to torchcam's metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from interpretable import timing as _timing
from interpretable.timing import Timing

__all__ = ["Timing", "Target", "measure", "measure_interleaved", "print_table",
           "matmul_gflops", "count_flops", "FixedMaps"]


def measure(
    name: str,
    fn: Callable[[], object],
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | None = None,
) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones."""
    return _timing.measure(name, fn, repeats=repeats, warmup=warmup, device=device)


def measure_interleaved(
    fns: dict[str, Callable[[], object]],
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | None = None,
) -> dict[str, Timing]:
    """Time several operations round-robin, so machine noise hits them all alike.

    Ratios between the returned medians are what the benchmarks report. The timer is
    :func:`interpretable.timing.measure_interleaved` (the one the book uses too).
    """
    return _timing.measure_interleaved(fns, repeats=repeats, warmup=warmup, device=device)


class FixedMaps:
    """A torchcam CAM-extractor stand-in that returns given maps ``(B, H, W)``.

    torchcam's metrics (``DeletionInsertionMetric``, ``ClassificationMetric``) take an
    extractor and call it; this one hands them our maps, so ours and theirs score the same
    saliency and a comparison (or a timing) measures only the metric. Used by the metrics
    benchmark and by the peer tests in ``tests/test_metrics.py``.
    """

    def __init__(self, model: torch.nn.Module, maps: torch.Tensor):
        self.model, self.maps = model, maps

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    def _hooks_off(self):
        return contextlib.nullcontext()


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


def matmul_gflops(n: int = 2048, repeats: int = 9) -> dict[str, float]:
    """The machine's practical float32 peak: GFLOP/s of an ``n x n`` matmul on the CPU
    (median and best of ``repeats``), with the current torch thread count.

    A roofline for the other numbers: a convolutional network's forward cannot run its
    convolutions faster than the same machine multiplies large dense matrices."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    t = measure("matmul", lambda: a @ b, repeats=repeats, warmup=0)
    flop = 2.0 * n ** 3
    return {"n": n, "median": flop / t.median / 1e9, "best": flop / t.min / 1e9,
            "threads": torch.get_num_threads()}


def count_flops(fn: Callable[[], object]) -> float:
    """FLOPs that ``fn()`` spends in convolutions and matrix products (torch's
    ``FlopCounterMode``: multiply-adds count 2; element-wise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())
