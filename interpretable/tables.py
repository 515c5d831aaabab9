"""Tables of per-image results and their statistics (METHODS.md section 5): the summaries of
one :func:`interpretable.metrics.evaluate` table (means with Student-t intervals per method
and metric, the paper's layout, a plain-text table), the paired comparison of two, and how a
comparison reads against what another training seed alone does (:func:`beyond_seed`, pandas).

Every table takes the metrics, their paper names and which direction is better from
:data:`interpretable.metrics.METRICS`, and every interval is
:func:`interpretable.stats.mean_interval`. Inputs are DataFrames or lists of row dicts;
outputs are DataFrames when the input is one (and pandas is installed), else plain Python.
No torch is imported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .metrics.definitions import METRICS, metric
from .stats import mean_interval

__all__ = [
    "pandas_or_none",
    "rows_of",
    "summarize",
    "paper_table",
    "summary_lines",
    "lower_is_better",
    "paired_comparison",
    "paired_grid",
    "paired_images",
    "beyond_seed",
    "seed_summary",
    "verdict_counts",
]


def pandas_or_none():
    """The pandas module, or None when it is not installed (it comes with the book extra)."""
    try:
        import pandas
    except ImportError:
        return None
    return pandas


def rows_of(table) -> list[dict]:
    """Row dicts of a DataFrame or of a list of dicts."""
    if hasattr(table, "to_dict") and hasattr(table, "columns"):
        return table.to_dict("records")
    if isinstance(table, list):
        return table
    raise TypeError(f"table must be a DataFrame or a list of row dicts, got {type(table).__name__}")


def _as_frame_like(out: list[dict], *inputs):
    """A DataFrame of ``out`` when any input is one and pandas is there, else ``out``."""
    pd = pandas_or_none()
    if pd is not None and any(hasattr(t, "columns") for t in inputs):
        return pd.DataFrame(out)
    return out


def _by_method(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["method"], []).append(r)
    return out


# --------------------------------------------------------------------------------------------
# One table
# --------------------------------------------------------------------------------------------


def summarize(table, confidence: float = 0.95):
    """Mean, standard error and confidence interval per method and metric.

    Args:
        table: the output of :func:`~interpretable.metrics.evaluate` (DataFrame or list of
            row dicts).
        confidence: two-sided level of the interval (Student t with n - 1 degrees of freedom,
            :func:`~interpretable.stats.mean_interval`).

    Returns:
        One row per (method, metric column of :data:`~interpretable.metrics.METRICS`) with
        ``n``, ``mean``, ``sem`` (std with ddof=1 over sqrt(n)), ``ci_low``, ``ci_high``; NaN
        values (metrics not computed) are skipped and a metric with n < 2 gets NaN sem/CI. A
        DataFrame if ``table`` is one, else a list. For ``ai`` (per-image 0 or 100) the
        interval is the normal-approximation (Wald) one.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    rows = rows_of(table)
    if not rows:
        raise ValueError("table is empty: nothing to summarize")
    out = []
    for method, group in _by_method(rows).items():
        for m in METRICS:
            ci = mean_interval((float(r[m.column]) for r in group), confidence)
            out.append({"method": method, "metric": m.column, "n": ci["n"], "mean": ci["mean"],
                        "sem": ci["sem"], "ci_low": ci["low"], "ci_high": ci["high"]})
    return _as_frame_like(out, table)


def paper_table(table, ci: bool = False, digits: int = 2):
    """The paper's layout: rows = methods, columns the metrics' paper names (AD, AG, AI, Ins,
    Del), percent.

    Args:
        table: the output of :func:`~interpretable.metrics.evaluate` (DataFrame or list of
            row dicts).
        ci: if True, cells are strings ``"mean ± half-width"`` of the 95% CI.
        digits: decimals in those strings.

    Returns:
        A DataFrame indexed by method (when ``table`` is a DataFrame and pandas is there), else
        ``{method: {"AD": ..., "AG": ..., "AI": ..., "Ins": ..., "Del": ...}}``. Which
        direction is better: :data:`~interpretable.metrics.METRICS` (lower for AD and Del).
    """
    cells: dict[str, dict] = {}
    for s in rows_of(summarize(rows_of(table))):
        value = s["mean"]
        if ci:
            half = (s["ci_high"] - s["ci_low"]) / 2
            value = f"{s['mean']:.{digits}f} ± {half:.{digits}f}"
        cells.setdefault(s["method"], {})[metric(s["metric"]).name] = value
    pd = pandas_or_none()
    if pd is not None and hasattr(table, "columns"):
        frame = pd.DataFrame.from_dict(cells, orient="index")[[m.name for m in METRICS]]
        frame.index.name = "method"
        return frame
    return cells


def lower_is_better() -> str:
    """``"AD and Del"``: the paper names of the metrics where lower is better."""
    names = [m.name for m in METRICS if m.better == "lower"]
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def summary_lines(table, digits: int = 2) -> list[str]:
    """A plain-text table: a header, then one line per method with the mean of each metric
    (percent; :func:`paper_table`) and its number of images."""
    rows = rows_of(table)
    cells = paper_table(list(rows))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["method"]] = counts.get(r["method"], 0) + 1
    width = max([len("method")] + [len(m) for m in cells])
    cols = [m.name for m in METRICS]
    lines = [f"{'method':<{width}}  " + "  ".join(f"{c:>7}" for c in cols) + "   images"]
    for method, values in cells.items():
        lines.append(f"{method:<{width}}  " + "  ".join(f"{values[c]:7.{digits}f}" for c in cols)
                     + f"  {counts[method]:7d}")
    return lines


# --------------------------------------------------------------------------------------------
# Two tables, image by image
# --------------------------------------------------------------------------------------------


def _keyed(table, keys: tuple[str, ...], name: str) -> dict[tuple, dict]:
    try:
        rows = rows_of(table)
    except TypeError:
        raise TypeError(f"{name} must be a DataFrame or a list of row dicts (evaluate's table), "
                        f"got {type(table).__name__}") from None
    out: dict[tuple, dict] = {}
    for r in rows:
        try:
            key = tuple(r[k] for k in keys)
        except KeyError as exc:
            raise ValueError(f"{name} has no column {exc.args[0]!r}") from None
        if key in out:
            raise ValueError(f"{name} has more than one row for {dict(zip(keys, key, strict=True))}"
                             " (one table per model: filter concatenated tables first)")
        out[key] = r
    return out


def _name(column: str) -> str:
    try:
        return metric(column).name
    except KeyError:
        return column


def paired_comparison(
    base,
    other,
    better: Mapping[str, int] | None = None,
    confidence: float = 0.95,
    keys: Sequence[str] = ("index", "method"),
):
    """Per method and metric: the mean of ``other - base`` over the images both tables share.

    Image by image (paired), so the spread between images cancels: for each method and each
    metric of ``better``, d_i = other_i - base_i over the shared (``index``, ``method``) rows
    (NaN pairs skipped), its mean, and the Student-t interval mean +- t_{n-1, (1+c)/2} s/sqrt(n)
    (:func:`interpretable.stats.mean_interval`; the interval of ``scipy.stats.ttest_rel``).

    Args:
        base, other: tables of :func:`interpretable.metrics.evaluate` (DataFrames or lists of
            row dicts), e.g. a baseline model and a regularized one on the same images.
        better: ``{metric column: +1 or -1}``, the sign of an improvement and which metrics to
            compare; default every metric of :data:`~interpretable.metrics.METRICS` with its
            :attr:`~interpretable.metrics.Metric.sign`.
        confidence: two-sided level of the interval.
        keys: the columns that pair rows.

    Returns:
        One row per (method, metric), methods in ``base``'s order: ``method``, ``metric``
        (the paper name ``AD``, ``AG``, ``AI``, ``Ins``, ``Del``, or the column name for other
        metrics), ``difference`` (mean of other - base, in the metric's units: percentage
        points), ``ci half-width``, ``ci low``, ``ci high``, ``images`` (pairs used),
        ``verdict``: ``"better"`` / ``"worse"`` (``other`` against ``base``) when the interval
        excludes 0, else ``"no clear difference"`` (also with fewer than two pairs), and
        ``bonferroni verdict``: the same rule with the interval at level 1 - (1 -
        ``confidence``) / m, m the number of rows returned (method x metric cells), so that
        when no cell differs the chance of any "better" or "worse" among the m is at most 1 -
        ``confidence`` (Bonferroni). A DataFrame when either input is one and pandas is
        installed, else a list of dicts.

    Raises:
        ValueError: the tables share no rows, a table has two rows for one key, a metric is
        missing, or ``better`` holds a sign other than +1 / -1.
    """
    better = dict({m.column: m.sign for m in METRICS} if better is None else better)
    if not better:
        raise ValueError("better must name at least one metric")
    for column, sign in better.items():
        if sign not in (1, -1) or isinstance(sign, bool):
            raise ValueError(f"better[{column!r}] must be +1 (higher is better) or -1, got "
                             f"{sign!r}")
    keys = tuple(keys)
    if "method" not in keys:
        raise ValueError(f"keys must contain 'method', got {keys}")
    b, o = _keyed(base, keys, "base"), _keyed(other, keys, "other")
    shared = [k for k in b if k in o]
    if not shared:
        raise ValueError("base and other share no (index, method) rows: compare tables of the "
                         "same images and methods")
    for column in better:
        for name, rows in (("base", b), ("other", o)):
            if column not in rows[shared[0]]:
                raise ValueError(f"{name} has no column {column!r}")
    at = keys.index("method")
    with_pairs = {k[at] for k in shared}
    methods = [m for m in dict.fromkeys(k[at] for k in b) if m in with_pairs]
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    family = 1 - (1 - confidence) / (len(methods) * len(better))  # Bonferroni

    def verdict(ci: dict[str, float], sign: int) -> str:
        if ci["low"] > 0 or ci["high"] < 0:  # False for NaN bounds (fewer than two pairs)
            return "better" if sign * ci["mean"] > 0 else "worse"
        return "no clear difference"

    out = []
    for method in methods:
        pairs = [(b[k], o[k]) for k in shared if k[at] == method]
        for column, sign in better.items():
            d = [float(y[column]) - float(x[column]) for x, y in pairs]
            d = [v for v in d if not math.isnan(v)]
            ci = mean_interval(d, confidence)
            out.append({"method": method, "metric": _name(column),
                        "difference": ci["mean"], "ci half-width": (ci["high"] - ci["low"]) / 2,
                        "ci low": ci["low"], "ci high": ci["high"], "images": ci["n"],
                        "verdict": verdict(ci, sign),
                        "bonferroni verdict": verdict(mean_interval(d, family), sign)})
    return _as_frame_like(out, base, other)


def paired_images(comparison) -> str:
    """How many images a :func:`paired_comparison` table pairs: ``"2000"``, or
    ``"1996-2000"`` when its cells differ (NaN pairs or methods on other subsets)."""
    lo, hi = comparison["images"].min(), comparison["images"].max()
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def paired_grid(comparison):
    """Method x metric text grid of a :func:`paired_comparison` DataFrame: ``"-2.50 ± 0.83
    better*"`` (difference, 95% half-width, the verdict unless it is "no clear difference",
    ``*`` when the Bonferroni verdict agrees); methods in their order of appearance, metrics
    in the order of :data:`~interpretable.metrics.METRICS`."""
    c = comparison
    text = [f"{d:+.2f} ± {h:.2f}" + ("" if v == "no clear difference" else f" {v}")
            + ("" if bv == "no clear difference" else "*")  # the wider interval, same mean
            for d, h, v, bv in zip(c["difference"], c["ci half-width"], c["verdict"],
                                   c["bonferroni verdict"], strict=True)]
    return (c.assign(cell=text).pivot(index="method", columns="metric", values="cell")
            .reindex(index=list(dict.fromkeys(c["method"])), columns=[m.name for m in METRICS]))


def beyond_seed(effect, alone, digits: int = 2):
    """A run trained once against its baseline, beside what another seed alone does.

    ``effect``: :func:`paired_comparison` (DataFrame) of the baseline and the run; ``alone``:
    of the baseline and the baseline trained with another seed, on the same images. The
    reading of the sweep's replicates for one seed: an effect **counts** when its verdict is
    clear (better or worse) and it is larger in size than the seed's own difference in that
    cell. Returns a DataFrame indexed by (method, metric): ``effect``,
    ``verdict``, ``seed alone`` (points), ``seed verdict`` and ``counts``.
    """
    import pandas as pd

    e, a = (t.set_index(["method", "metric"]) for t in (effect, alone))
    a = a.reindex(e.index)
    counts = (e["verdict"] != "no clear difference") & (e["difference"].abs()
                                                         > a["difference"].abs())
    return pd.DataFrame({"effect": e["difference"].round(digits), "verdict": e["verdict"],
                         "seed alone": a["difference"].round(digits),
                         "seed verdict": a["verdict"], "counts": counts})


def seed_summary(readings):
    """One line per comparison of ``readings`` (``{name: beyond_seed(...)}``): ``cells``
    (with a seed yardstick), ``clear verdicts``, ``count`` (clear and larger than the seed's
    own difference) and ``which`` (those cells, "method metric verdict", comma-separated)."""
    import pandas as pd

    rows = {}
    for name, r in readings.items():
        r = r[r["seed verdict"].notna()]
        counted = r[r["counts"]]
        rows[name] = {"cells": len(r),
                      "clear verdicts": int((r["verdict"] != "no clear difference").sum()),
                      "count": len(counted),
                      "which": ", ".join(f"{m} {k} {v}" for (m, k), v
                                         in counted["verdict"].items())}
    return pd.DataFrame(rows).T


def verdict_counts(comparisons: Mapping[str, object]):
    """Per comparison (``{label: paired_comparison table}``): how many method x metric cells
    are better, worse or without a clear difference, and how many verdicts hold after the
    Bonferroni correction (column ``Bonferroni``). A DataFrame indexed by label."""
    import pandas as pd

    rows = {}
    for label, c in comparisons.items():
        v = c["verdict"].value_counts()
        rows[label] = {"cells": len(c), "better": int(v.get("better", 0)),
                       "worse": int(v.get("worse", 0)),
                       "no clear difference": int(v.get("no clear difference", 0)),
                       "Bonferroni": int((c["bonferroni verdict"]
                                          != "no clear difference").sum())}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "comparison"
    return out
