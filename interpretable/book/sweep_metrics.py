"""The lambda sweep's CAM metrics for the metric tables chapter: each sweep run paired against its
control, the panels of those differences against lambda, and how the replicates with another
seed agree; the same reading for a run trained once (:func:`beyond_seed`, the from-scratch
study).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..metrics.definitions import METRICS
from ..tables import beyond_seed, seed_summary  # noqa: F401  (served here for the book)
from . import style
from .metrics import (  # noqa: F401
    _arrow,
    _figure,
    method_order,
)

__all__ = ['sweep_differences', 'sweep_figure', 'replicate_agreement', 'beyond_seed',
           'seed_summary']


def sweep_differences(tables: Mapping[str, Any], info: Mapping[str, Mapping[str, Any]],
                      control: str, threshold: float):
    """Every sweep run minus its control, paired, as one long DataFrame.

    Args:
        tables: ``{run: per-image result table}`` of one architecture's sweep.
        info: ``{run: {"lam", "gradient_of", "top1"}}`` (rows of
            :func:`interpretable.study.sweep.table`).
        control: the control's run name (``logit_lam0``).
        threshold: the lowest top-1 inside the accuracy window (the control's minus 1.5).

    Returns:
        The rows of :func:`interpretable.tables.paired_comparison` (control, run) for every
        run with lambda > 0, with ``run``, ``variant`` (``gradient_of``), ``lam``, ``top1``
        and ``inside`` (top-1 >= threshold) added; empty without the control.
    """
    import pandas as pd

    from ..tables import paired_comparison

    parts = []
    if control in tables:
        for run, t in tables.items():
            i = info[run]
            if i["lam"] == 0:
                continue
            c = paired_comparison(tables[control], t)
            parts.append(c.assign(run=run, variant=i["gradient_of"], lam=i["lam"],
                                  top1=i["top1"], inside=i["top1"] >= threshold))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def sweep_figure(diffs, lam_star: float | None = None, paper_lam: float | None = 7.5e-3,
                 title: str | None = None, pad: float = 0.15):
    """The sweep's paired effects against lambda, one panel per metric, up = better.

    Args:
        diffs: the output of :func:`sweep_differences` (columns ``method``, ``metric``,
            ``difference``, ``ci half-width``, ``variant``, ``lam``, ``inside``).
        lam_star: lambda* of the rule (a red dotted line); paper_lam: the paper's lambda
            (an orange dashed line); None: no line.
        title: the figure's title.
        pad: the share of the window's height added above and below it.

    The y axis is fitted to the runs inside the accuracy window (filled markers, with their
    95% intervals) and 0. Runs outside it (collapsed or losing accuracy) are hollow markers;
    those beyond the axis sit on its edge as triangles pointing the way their value lies, so
    they do not set the scale; lines join the runs inside the window. Colour: the method;
    line style: the variant (``logit`` solid, ``loss`` dashed). Returns a Figure with 2 x 3
    panels, the last holding the legend.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator

    if not len(diffs):
        raise ValueError("diffs is empty: nothing to draw")
    methods = method_order(diffs["method"])
    variants = list(dict.fromkeys(diffs["variant"]))
    lams = sorted(diffs["lam"].unique())
    fig = _figure(10.0, 6.2)
    axes = fig.subplots(2, 3, sharex=True)
    groups = [(m, v) for m in methods for v in variants
              if ((diffs["method"] == m) & (diffs["variant"] == v)).any()]
    styles = {v: ("-" if v == "logit" else "--") for v in variants}
    for ax, m in zip(axes.flat, METRICS, strict=False):
        d = diffs[diffs["metric"] == m.name]
        y = m.sign * d["difference"]
        h = d["ci half-width"]
        inside = d["inside"].astype(bool)
        lo = min(0.0, float((y - h)[inside].min())) if inside.any() else -1.0
        hi = max(0.0, float((y + h)[inside].max())) if inside.any() else 1.0
        span = max(hi - lo, 1e-6)
        lo, hi = lo - pad * span, hi + pad * span
        edge = 0.04 * (hi - lo)
        for k, (method, variant) in enumerate(groups):
            g = d[(d["method"] == method) & (d["variant"] == variant)].sort_values("lam")
            if not len(g):
                continue
            color = style.color(method)
            x = g["lam"].to_numpy() * 1.07 ** (k - (len(groups) - 1) / 2)
            gy = m.sign * g["difference"].to_numpy()
            gh = g["ci half-width"].to_numpy()
            ok = g["inside"].to_numpy(bool)
            shown = np.clip(gy, lo + edge, hi - edge)
            ax.plot(x[ok], gy[ok], styles[variant], color=color, linewidth=0.9)
            ax.errorbar(x[ok], gy[ok], yerr=gh[ok], fmt="o", color=color, markersize=4,
                        elinewidth=0.9, capsize=2)
            within = ~ok & (gy >= lo + edge) & (gy <= hi - edge)
            ax.scatter(x[within], gy[within], s=22, facecolors="white", edgecolors=color,
                       zorder=3)
            for cond, marker in ((gy > hi - edge, "^"), (gy < lo + edge, "v")):
                ax.scatter(x[~ok & cond], shown[~ok & cond], marker=marker, s=30,
                           facecolors="white", edgecolors=color, zorder=3, clip_on=False)
        ax.axhline(0, color="grey", linewidth=0.8)
        if lam_star is not None:
            ax.axvline(lam_star, color=style.color("lambda*"), linestyle=":", linewidth=1.2)
        if paper_lam is not None:
            ax.axvline(paper_lam, color=style.color("paper"), linestyle="--", linewidth=1)
        ax.set_ylim(lo, hi)
        ax.set_xscale("log")
        ax.set_xticks(lams, [f"{v:g}" for v in lams], rotation=90)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_title(f"{m.title} ({m.name}{_arrow(m)})")
    for ax in axes[1, :2]:
        ax.set_xlabel(r"$\lambda$ (log scale)")
    axes[0, 2].tick_params(labelbottom=True)
    axes[0, 2].set_xlabel(r"$\lambda$ (log scale)")
    for ax in axes[:, 0]:
        ax.set_ylabel("improvement over control\n(points, up = better)")
    legend_ax = axes[1, 2]
    legend_ax.axis("off")
    handles = [Line2D([], [], color=style.color(mt), marker="o", label=mt) for mt in methods]
    handles += [Line2D([], [], color="black", linestyle=styles[v], label=f"gradient of {v}")
                for v in variants]
    handles += [
        Line2D([], [], color="grey", marker="o", linestyle="", label="inside the window"),
        Line2D([], [], color="grey", marker="o", markerfacecolor="white", linestyle="",
               label="outside (accuracy lost)"),
        Line2D([], [], color="grey", marker="^", markerfacecolor="white", linestyle="",
               label="outside, beyond the axis"),
    ]
    if lam_star is not None:
        handles.append(Line2D([], [], color=style.color("lambda*"), linestyle=":",
                              label=f"$\\lambda^*$ = {lam_star:g}"))
    if paper_lam is not None:
        handles.append(Line2D([], [], color=style.color("paper"), linestyle="--",
                              label=f"paper's $\\lambda$ = {paper_lam:g}"))
    legend_ax.legend(handles=handles, loc="center", frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def replicate_agreement(seed0, seed1, alone, digits: int = 2):
    """Does an effect replicate over seeds, and is it larger than the seed alone?

    ``seed0``, ``seed1``: :func:`~interpretable.tables.paired_comparison` of the control and
    the run of the same lambda, trained with seed 0 and with seed 1; ``alone``: the control
    with seed 1 against the control with seed 0. Returns a DataFrame indexed by (method,
    metric): the three differences (points), ``replicates`` (both seeds give the same
    verdict, better or worse) and ``beyond seed`` (it replicates and both effects are larger
    in size than the seed's own difference in that cell).
    """
    e0, e1, a = (t.set_index(["method", "metric"]) for t in (seed0, seed1, alone))
    e1, a = e1.reindex(e0.index), a.reindex(e0.index)
    replicates = (e0["verdict"] == e1["verdict"]) & (e0["verdict"] != "no clear difference")
    beyond = replicates & (np.minimum(e0["difference"].abs(), e1["difference"].abs())
                           > a["difference"].abs())
    import pandas as pd

    return pd.DataFrame({"seed 0": e0["difference"], "seed 1": e1["difference"],
                         "seed alone": a["difference"], "replicates": replicates,
                         "beyond seed": beyond}).round(digits)
