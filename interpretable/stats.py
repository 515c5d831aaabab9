"""Means with confidence intervals, for per-image results (plain Python, no tensors).

Student-t intervals: mean +- t_{n-1, (1+c)/2} * s / sqrt(n), s the sample standard deviation
(ddof 1). scipy gives the t quantile when installed; without it the normal quantile is used
(within 1% of t for n > 60, which every per-image summary in the book exceeds).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["t_quantile", "normal_quantile", "mean_interval"]


def normal_quantile(q: float) -> float:
    """Standard normal quantile by bisection on the CDF (erf)."""
    if not 0 < q < 1:
        raise ValueError(f"q must lie in (0, 1), got {q}")
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def t_quantile(q: float, dof: int) -> float:
    """Student-t quantile (scipy when installed; else the normal one)."""
    try:
        from scipy.stats import t
    except ImportError:
        return normal_quantile(q)
    return float(t.ppf(q, dof))


def mean_interval(values: Iterable[float], confidence: float = 0.95) -> dict[str, float]:
    """``{"n", "mean", "sem", "low", "high"}`` of the finite ``values``.

    NaNs are skipped; with fewer than two values ``sem``, ``low`` and ``high`` are NaN.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    vals = [float(v) for v in values if not math.isnan(float(v))]
    n = len(vals)
    mean = math.fsum(vals) / n if n else math.nan
    if n < 2:
        return {"n": n, "mean": mean, "sem": math.nan, "low": math.nan, "high": math.nan}
    var = math.fsum((v - mean) ** 2 for v in vals) / (n - 1)
    sem = math.sqrt(var / n)
    half = t_quantile(0.5 + confidence / 2, n - 1) * sem
    return {"n": n, "mean": mean, "sem": sem, "low": mean - half, "high": mean + half}
