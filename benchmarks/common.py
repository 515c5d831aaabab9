"""Shared benchmark helpers: the package's timer, performance targets (PASS/MISS lines), a
table printer, and the adapter that feeds given maps to torchcam's metrics."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch

# the timer and the roofline helpers are the package's (the book uses them too)
from interpretable.timing import (
    Timing,
    count_flops,
    matmul_gflops,
    measure,
    measure_interleaved,
)

__all__ = ["Timing", "Target", "measure", "measure_interleaved", "print_table",
           "matmul_gflops", "count_flops", "FixedMaps"]


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
