"""The lambda curve of the training chapter and the introduction: top-1 and cos(g, g~) against
lambda for the fine-tuned sweep of each architecture, read from the committed summaries alone,
with the rule's lambda*, the paper's lambda and the collapsed runs marked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import style
from .training import (  # noqa: F401
    ARCH_NAMES,
    COLLAPSE,
    _figure,
)

__all__ = ['sweep_frame', 'lambda_curve_figure']


def sweep_frame(root: str | Path | None = None,
                archs: Sequence[str] = ("resnet18", "mobilenet_v2")) -> Any:
    """Every finished sweep run of ``archs`` as one pandas table (from ``summary.json``).

    Columns: ``arch``, ``run``, ``variant`` ("control", "logit" or "loss"), ``lam``,
    ``top1``, ``top5``, ``cos`` (mean cos(g, g~) of the logit gradient) with ``cos_low`` /
    ``cos_high`` (95% interval), ``cos_loss`` (of the loss gradient), ``images``, and
    ``within`` (top-1 at least the rule's threshold, control - 1.5 points), ``collapsed``
    (top-1 below :data:`COLLAPSE` times the control's), ``lam_star`` (the run the rule
    picks). Architectures without a finished control are left out.
    """
    import pandas as pd

    from ..study import reference, sweep

    folder = reference.find_root(root)
    frames = []
    for arch in archs:
        rows = sweep.table(folder, arch)
        if not any(r["lam"] == 0 for r in rows):
            continue
        choice = sweep.choose_lambda(sweep.summaries(folder, arch))
        t = pd.DataFrame(rows).rename(columns={"gradient_of": "variant"})
        t.insert(0, "arch", arch)
        control = t.loc[t["variant"] == "control", "top1"].iloc[0]
        t["within"] = t["top1"] >= choice["threshold"]
        t["collapsed"] = t["top1"] < COLLAPSE * control
        t["lam_star"] = (t["lam"] == choice["lam"]) & (t["variant"] == choice["gradient_of"])
        frames.append(t)
    if not frames:
        raise FileNotFoundError(f"no finished sweep with its control in {folder / 'sweep'}")
    return pd.concat(frames, ignore_index=True).drop(columns=["hours"])


_VARIANTS = {"logit": dict(color=style.PALETTE["black"], marker="o", linestyle="-",
                           label="runs, logit gradient"),
             "loss": dict(color=style.PALETTE["sky"], marker="s", linestyle="--",
                          label="runs, loss gradient")}


def _edge_marks(ax, t, key: str, lo: float, hi: float) -> None:
    """Runs outside [lo, hi] on ``key``: drawn at the edge, collapsed ones as grey x,
    the others as a triangle with their value."""
    span = hi - lo
    for _, r in t[(t[key] < lo) | (t[key] > hi)].iterrows():
        y = hi if r[key] > hi else lo
        if r["collapsed"]:
            ax.plot(r["lam"], y, "x", color=style.PALETTE["grey"], markersize=8,
                    markeredgewidth=2, clip_on=False, zorder=5)
        else:
            up = r[key] > hi
            ax.plot(r["lam"], y, "^" if up else "v", clip_on=False, zorder=5,
                    color=_VARIANTS.get(r["variant"], _VARIANTS["logit"])["color"])
            text = f"{r[key]:.1f}%" if key == "top1" else f"{r[key]:.2f}"
            ax.annotate(text, (r["lam"], y - (0.06 if up else -0.06) * span),
                        ha="center", va="top" if up else "bottom", fontsize=8)


#: lambda ticks of the sweep figure (log axis)
_TICKS = (0.01, 0.1, 0.3, 0.5, 1.0, 2.0, 5.0)


def _window(values: Sequence[float], pad: float) -> tuple[float, float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    margin = pad * (hi - lo) if hi > lo else 1.0
    return lo - margin, hi + margin


def lambda_curve_figure(root: str | Path | None = None,
                        archs: Sequence[str] = ("resnet18", "mobilenet_v2"),
                        extra: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> Any:
    """The lambda sweep: cos(g, g~) (top row) and test top-1 (bottom row) against lambda,
    one column per architecture, from the committed ``summary.json`` files alone (fast).

    ``root``: the reference folder (default :func:`interpretable.study.reference.find_root`).
    Marked: the control (lambda 0, horizontal line; its 95% interval as a band), the rule's
    threshold (control - 1.5 points), the rule's lambda* (red dashed) and the paper's lambda
    = 7.5e-3 (orange dotted). The y-ranges follow the runs that stay within the rule's
    accuracy window (control - 1.5 points): a run outside the range is marked at the edge,
    by a grey x when it collapsed (top-1 below :data:`COLLAPSE` times the control's), else
    by a triangle with its value; the lines run on to it (clipped).

    ``extra``: optional further points, ``{arch: [{"lam", "top1", "cos", "label"}, ...]}``
    (e.g. the from-scratch runs of :mod:`interpretable.study.scratch`), drawn as green
    diamonds and named in the legend by their ``label`` (the first of each label).
    Returns a ``matplotlib.figure.Figure`` (2 x number of architectures panels).
    """
    from matplotlib.lines import Line2D

    from ..study import sweep
    from ..training.presets import PRESETS

    t_all = sweep_frame(root, archs)
    shown = [a for a in archs if a in set(t_all["arch"])]
    fig = _figure(10.0, 6.4)
    axes = fig.subplots(2, len(shown), squeeze=False, sharex="col")
    paper = PRESETS["paper"]["lam"]
    for j, arch in enumerate(shown):
        t = t_all[t_all["arch"] == arch]
        control = t[t["variant"] == "control"].iloc[0]
        ax_cos, ax_acc = axes[0, j], axes[1, j]
        runs = t[t["variant"] != "control"]
        inside = runs[runs["within"]]
        threshold = control["top1"] - sweep.TOLERANCE
        cos_lo, cos_hi = _window(list(inside["cos_low"]) + list(inside["cos_high"])
                                 + [control["cos_low"], control["cos_high"]], 0.15)
        acc_lo, acc_hi = _window(list(inside["top1"]) + [threshold, control["top1"]], 0.3)
        for variant, g in runs.groupby("variant"):
            g = g.sort_values("lam")
            kw = _VARIANTS.get(variant, _VARIANTS["logit"])
            ax_cos.errorbar(g["lam"], g["cos"], capsize=3, **kw,
                            yerr=[g["cos"] - g["cos_low"], g["cos_high"] - g["cos"]])
            ax_acc.plot(g["lam"], g["top1"], **kw)
            _edge_marks(ax_cos, g, "cos", cos_lo, cos_hi)
            _edge_marks(ax_acc, g, "top1", acc_lo, acc_hi)
        blue = style.color("control")
        ax_cos.axhline(control["cos"], color=blue, linewidth=1.2)
        ax_cos.axhspan(control["cos_low"], control["cos_high"], color=blue, alpha=0.15)
        ax_acc.axhline(control["top1"], color=blue, linewidth=1.2)
        ax_acc.axhline(threshold, color=style.PALETTE["grey"], linestyle=":")
        star = t[t["lam_star"]]
        for ax in (ax_cos, ax_acc):
            ax.axvline(paper, color=style.color("paper"), linestyle=":", linewidth=1.5)
            if len(star):
                ax.axvline(star["lam"].iloc[0], color=style.color("lambda*"), linestyle="--",
                           linewidth=1.2)
            ax.grid(alpha=0.3)
        for point in (extra or {}).get(arch, ()):
            for ax, key in ((ax_cos, "cos"), (ax_acc, "top1")):
                ax.plot(point["lam"], point[key], "D", color=style.color("scratch"),
                        label=point.get("label", "extra"))
        ax_cos.set_ylim(cos_lo, cos_hi)
        ax_acc.set_ylim(acc_lo, acc_hi)
        ax_acc.set_xscale("log")
        ax_acc.set_xticks(_TICKS, [f"{v:g}" for v in _TICKS])
        ax_acc.minorticks_off()
        ax_acc.set_xlabel(r"$\lambda$ (log scale)")
        ax_cos.set_title(f"{ARCH_NAMES.get(arch, arch)}: fine-tuned 2 epochs")
        if j == 0:
            ax_cos.set_ylabel("cos(g, guided g)\n(logit gradient, test images)")
            ax_acc.set_ylabel("test top-1 (%)")
    star_lams = sorted(set(t_all.loc[t_all["lam_star"], "lam"]))
    handles = [Line2D([], [], **_VARIANTS[v]) for v in _VARIANTS
               if v in set(t_all["variant"])]
    handles += [
        Line2D([], [], color=style.color("control"),
               label=r"control ($\lambda$ = 0), its 95% band"),
        Line2D([], [], color=style.PALETTE["grey"], linestyle=":",
               label=f"rule's threshold: control - {sweep.TOLERANCE:g} points"),
        Line2D([], [], color=style.color("lambda*"), linestyle="--",
               label=r"$\lambda^*$ by the rule = " + ", ".join(f"{v:g}" for v in star_lams)),
        Line2D([], [], color=style.color("paper"), linestyle=":", linewidth=1.5,
               label=f"paper's $\\lambda$ = {paper:g}"),
        Line2D([], [], color=style.PALETTE["grey"], marker="x", linestyle="",
               markeredgewidth=2, label=f"collapsed (top-1 < {COLLAPSE:g} x control), "
                                        "at the edge"),
        Line2D([], [], color=style.PALETTE["black"], marker="^", linestyle="",
               label="outside the range, value written")]
    seen = set()
    for points in (extra or {}).values():
        for p in points:
            name = p.get("label", "extra")
            if name not in seen:
                seen.add(name)
                handles.append(Line2D([], [], color=style.color("scratch"), marker="D",
                                      linestyle="", label=name))
    fig.legend(handles=handles, loc="outside lower center", ncol=3)
    return fig
