"""Summaries of :func:`evaluate` tables: means, standard errors, 95% CIs, the paper's layout."""

from __future__ import annotations

import math

from ..stats import t_quantile as _t_quantile
from ._results import _pandas, rows_of

__all__ = ["summarize", "paper_table", "PAPER_COLUMNS"]

#: Paper layout: column name -> tidy-table metric (METHODS.md section 5; [P1] Table 1).
PAPER_COLUMNS = {"AD": "ad", "AG": "ag", "AI": "ai", "Ins": "insertion", "Del": "deletion"}
_METRICS = tuple(PAPER_COLUMNS.values())


def _groups(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["method"], []).append(r)
    return out


def summarize(table, confidence: float = 0.95):
    """Mean, standard error and confidence interval per method and metric.

    Args:
        table: the output of :func:`evaluate` (DataFrame or list of row dicts).
        confidence: two-sided level of the interval (Student t with n - 1 degrees of freedom).

    Returns:
        One row per (method, metric) with ``n``, ``mean``, ``sem`` (std with ddof=1 over
        sqrt(n)), ``ci_low``, ``ci_high``; NaN values (metrics not computed) are skipped and
        a metric with n < 2 gets NaN sem/CI. A DataFrame if ``table`` is one, else a list.
        For ``ai`` (per-image 0 or 100) the interval is the normal-approximation (Wald) one.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    rows = rows_of(table)
    if not rows:
        raise ValueError("table is empty: nothing to summarize")
    q = 0.5 + confidence / 2
    out = []
    for method, group in _groups(rows).items():
        for metric in _METRICS:
            vals = [float(r[metric]) for r in group if not math.isnan(float(r[metric]))]
            n = len(vals)
            mean = sum(vals) / n if n else math.nan
            if n >= 2:
                var = sum((v - mean) ** 2 for v in vals) / (n - 1)
                sem = math.sqrt(var / n)
                half = _t_quantile(q, n - 1) * sem
            else:
                sem = half = math.nan
            out.append({"method": method, "metric": metric, "n": n, "mean": mean, "sem": sem,
                        "ci_low": mean - half, "ci_high": mean + half})
    pd = _pandas()
    if pd is not None and not isinstance(table, list):
        return pd.DataFrame(out)
    return out


def paper_table(table, ci: bool = False, digits: int = 2):
    """The paper's layout: rows = methods, columns AD, AG, AI, Ins, Del (percent).

    Args:
        table: the output of :func:`evaluate` (DataFrame or list of row dicts).
        ci: if True, cells are strings ``"mean ± half-width"`` of the 95% CI.
        digits: decimals in those strings.

    Returns:
        A DataFrame indexed by method (when ``table`` is a DataFrame and pandas is there), else
        ``{method: {"AD": ..., "AG": ..., "AI": ..., "Ins": ..., "Del": ...}}``. Lower is
        better for AD and Del, higher for AG, AI and Ins.
    """
    summary = rows_of(summarize(table))
    cells: dict[str, dict] = {}
    back = {v: k for k, v in PAPER_COLUMNS.items()}
    for s in summary:
        value = s["mean"]
        if ci:
            half = (s["ci_high"] - s["ci_low"]) / 2
            value = f"{s['mean']:.{digits}f} ± {half:.{digits}f}"
        cells.setdefault(s["method"], {})[back[s["metric"]]] = value
    pd = _pandas()
    if pd is not None and not isinstance(table, list):
        frame = pd.DataFrame.from_dict(cells, orient="index")[list(PAPER_COLUMNS)]
        frame.index.name = "method"
        return frame
    return cells
