"""The paired comparisons of the metric tables chapter as pictures: one heat map per comparison
(method x metric, the signed improvement, the Bonferroni verdicts), the count of verdicts, and
the directions the paper reports beside ours.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..metrics.definitions import METRICS, metric
from ..tables import verdict_counts  # noqa: F401  (served here for the book)
from . import style
from .metrics import (  # noqa: F401
    _GREY_TEXT,
    ARCH_NAMES,
    _arrow,
    _figure,
    _split,
    method_order,
)

__all__ = ['paired_heatmap', 'verdict_counts', 'paper_directions']


def _grid(comparison) -> dict[str, Any]:
    """Method x metric arrays of a :func:`~interpretable.tables.paired_comparison` table."""
    c = comparison
    methods = method_order(c["method"])
    names = [m.name for m in METRICS]
    shape = (len(methods), len(names))
    out = {k: np.full(shape, np.nan) for k in ("difference", "half", "improvement")}
    out.update(verdict=np.zeros(shape, bool), bonferroni=np.zeros(shape, bool))
    for row in c.to_dict("records"):
        if row["metric"] not in names:
            continue
        i, j = methods.index(row["method"]), names.index(row["metric"])
        d = float(row["difference"])
        out["difference"][i, j] = d
        out["half"][i, j] = float(row["ci half-width"])
        out["improvement"][i, j] = metric(row["metric"]).sign * d
        out["verdict"][i, j] = row["verdict"] != "no clear difference"
        out["bonferroni"][i, j] = row["bonferroni verdict"] != "no clear difference"
    out["methods"] = methods
    return out


def paired_heatmap(comparisons: Mapping[str, Any], ncols: int | None = None,
                   vmax: float | None = None, title: str | None = None):
    """Paired comparisons as heat maps: one panel per comparison, methods x metrics.

    Args:
        comparisons: ``{label: paired_comparison(base, other)}`` (DataFrames of
            :func:`interpretable.tables.paired_comparison`).
        ncols: panels per row (default: all in one row, at most 3).
        vmax: the colour scale's end, in points of improvement (default: the largest
            |improvement| of all panels, so the panels share one scale).
        title: the figure's title.

    Each cell's colour is the improvement, ``sign * (other - base)`` (blue = ``other`` better,
    :data:`style.DIVERGING_CMAP`); its text the change of the metric itself (other - base,
    points) over the half-width of its 95% interval. Bold text: the interval excludes 0 (a
    verdict); faded colour and grey text: it includes 0 (no verdict); ``*``: the verdict
    holds after the Bonferroni correction over the panel's cells. Returns a Figure with one
    panel per comparison and one colourbar.
    """
    import matplotlib as mpl

    items = [(label, _grid(c), c) for label, c in comparisons.items()]
    if not items:
        raise ValueError("comparisons is empty: nothing to draw")
    n = len(items)
    ncols = ncols or min(n, 3)
    nrows = math.ceil(n / ncols)
    if vmax is None:
        vals = np.concatenate([np.abs(g["improvement"]).ravel() for _, g, _ in items])
        vmax = float(np.nanmax(vals)) if np.isfinite(vals).any() else 1.0
    vmax = vmax if vmax > 0 else 1.0
    norm = mpl.colors.Normalize(-vmax, vmax)
    cmap = mpl.colormaps[style.DIVERGING_CMAP]
    rows = max(len(g["methods"]) for _, g, _ in items)
    fig = _figure(min(10.0, 4.3 * ncols + 1.0) if ncols < 3 else 10.0,
                  nrows * (0.55 * rows + 1.2) + 0.3 * bool(title))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, (ax, (label, g, c)) in enumerate(zip(axes.flat, items, strict=False)):
        rgba = cmap(norm(np.nan_to_num(g["improvement"])))
        faded = ~g["verdict"][..., None]  # no verdict: the colour mixed with white
        rgba[..., :3] = np.where(faded, 0.35 * rgba[..., :3] + 0.65, rgba[..., :3])
        ax.imshow(rgba, aspect="auto")
        ax.set_xticks(range(len(METRICS)), [f"{m.name}{_arrow(m)}" for m in METRICS])
        ax.set_yticks(range(len(g["methods"])), g["methods"])
        first = axes.flat[(k // ncols) * ncols]  # the row's first panel
        if k % ncols and list(first.get_yticklabels()) and \
                [t.get_text() for t in first.get_yticklabels()] == g["methods"]:
            ax.tick_params(labelleft=False)
        ax.tick_params(length=0)
        ax.spines[:].set_visible(False)
        for i in range(len(g["methods"])):
            for j in range(len(METRICS)):
                d, h = g["difference"][i, j], g["half"][i, j]
                if math.isnan(d):
                    ax.text(j, i, "n/a", ha="center", va="center", color=_GREY_TEXT)
                    continue
                star = "*" if g["bonferroni"][i, j] else ""
                dark = g["verdict"][i, j] and abs(g["improvement"][i, j]) > 0.6 * vmax
                color = "white" if dark else ("black" if g["verdict"][i, j] else _GREY_TEXT)
                digits = 1 if abs(d) >= 10 else 2
                ax.text(j, i, f"{d:+.{digits}f}{star}\n\u00b1{h:.{digits}f}", ha="center",
                        va="center", fontsize=8, color=color, linespacing=1.1,
                        fontweight="bold" if g["verdict"][i, j] else "normal")
        lo, hi = c["images"].min(), c["images"].max()
        ax.set_title(f"{label}\n({lo if lo == hi else f'{lo}-{hi}'} paired images)")
    used = list(axes.flat)[:n]
    for ax in list(axes.flat)[n:]:
        ax.remove()
    mappable = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(mappable, ax=used,
                 label="improvement (points)\nblue = better, red = worse", shrink=0.9)
    if title:
        fig.suptitle(title)
    return fig


def paper_directions(paper: Mapping[str, Mapping[str, float]], tables: Mapping[str, Any],
                     comparisons: Mapping[str, Any], method: str = "Grad-CAM",
                     digits: int = 2):
    """The paper's reported values beside ours, baseline and regularized, per architecture
    and metric.

    Args:
        paper: ``{run: {metric name: value}}`` for ``<arch>_baseline`` and
            ``<arch>_regularized`` (the reported numbers).
        tables: ``{run: per-image result table}`` (ours).
        comparisons: ``{arch: paired_comparison(baseline, regularized)}``.
        method: the method the paper reports.

    Returns:
        A DataFrame indexed by (architecture, metric) with two column groups: ``paper``
        (baseline, regularized, change) and ``ours`` (baseline, regularized, change, its 95%
        half-width, verdict); ours are NaN where a table or comparison is missing.
    """
    import pandas as pd

    from ..tables import paper_table

    rows = {}
    archs = list(dict.fromkeys(_split(run)[0] for run in paper))
    for arch in archs:
        b, r = paper.get(f"{arch}_baseline", {}), paper.get(f"{arch}_regularized", {})
        ours = {k: paper_table(tables[f"{arch}_{k}"]).loc[method]
                for k in ("baseline", "regularized") if f"{arch}_{k}" in tables}
        c = comparisons.get(arch)
        cell = (c[c["method"] == method].set_index("metric") if c is not None else None)
        for name in b:
            row = {("paper", "baseline"): b[name], ("paper", "regularized"): r.get(name),
                   ("paper", "change"): r.get(name, math.nan) - b[name]}
            for k in ("baseline", "regularized"):
                row["ours", k] = ours[k][name] if k in ours else math.nan
            if cell is not None and name in cell.index:
                row["ours", "change"] = cell.loc[name, "difference"]
                row["ours", "\u00b1"] = cell.loc[name, "ci half-width"]
                row["ours", "verdict"] = cell.loc[name, "verdict"]
            rows[ARCH_NAMES.get(arch, arch), name] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    out.index.names = ["network", "metric"]
    return out.round(digits)
