"""Interleaved wall-clock timing: warm-up, repetitions in round-robin order, medians.

Timing several operations one after another lets machine noise (other processes, clock
changes) hit whichever ran during the disturbance; interleaving them, one call each per
round, spreads the noise over all of them, so the ratios of their medians are fair.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import torch

__all__ = ["Timing", "synchronize", "measure", "measure_interleaved", "matmul_gflops",
           "count_flops"]


@dataclass
class Timing:
    """Seconds per call of one operation: median, min, max over ``repeats`` timed calls."""

    name: str
    median: float
    min: float
    max: float
    repeats: int
    samples: list[float] = field(default_factory=list)
    #: process CPU seconds (all threads) per call: unlike wall time, it does not grow
    #: while a virtual machine's CPUs are taken away by the host (steal time)
    cpu_median: float | None = None
    cpu_samples: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for queued GPU work, so a timer stops when the work is done, not when it is queued.

    ``device=None`` waits for the current CUDA device if CUDA has been used in this process;
    a CPU device does nothing.
    """
    if device is None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        return
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _check(repeats: int, warmup: int) -> None:
    for name, v, low in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name} must be an int >= {low}, got {v!r}")


def measure_interleaved(
    fns: Mapping[str, Callable[[], object]],
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str | None = None,
    rotate: bool = True,
) -> dict[str, Timing]:
    """Time several operations round-robin: ``{name: Timing}`` in the order of ``fns``.

    First ``warmup`` untimed calls of each function (caches, lazy initialization), then
    ``repeats`` rounds with one timed call of every function. With ``rotate`` each round
    starts one function later (round r calls functions r, r+1, ..., wrapping around), so no
    function always runs first or right after the same one. Every timed call is bracketed by
    :func:`synchronize` on ``device`` (see there for None).
    """
    _check(repeats, warmup)
    if not isinstance(fns, Mapping) or not fns:
        raise ValueError("fns must be a non-empty mapping of name -> function without arguments")
    for name, fn in fns.items():
        if not callable(fn):
            raise TypeError(f"fns[{name!r}] must be callable, got {type(fn).__name__}")
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    samples: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        shift = r % len(names) if rotate else 0
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            c0, t0 = time.process_time(), time.perf_counter()
            fns[name]()
            synchronize(device)
            samples[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {k: Timing(k, statistics.median(v), min(v), max(v), repeats, v,
                      statistics.median(cpu[k]), cpu[k])
            for k, v in samples.items()}


def measure(
    name: str,
    fn: Callable[[], object],
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str | None = None,
) -> Timing:
    """Time one operation: ``warmup`` untimed calls, then ``repeats`` timed ones."""
    return measure_interleaved({name: fn}, repeats, warmup, device)[name]


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
