"""The figures and tables of the metric chapter (``book/06_metrics.ipynb``).

Each function takes what the package already computes (per-image result tables of
:func:`interpretable.metrics.evaluate`, comparisons of
:func:`interpretable.tables.paired_comparison`, insertion/deletion curves of
:func:`interpretable.metrics.insertion_deletion`) and returns a ``matplotlib.figure.Figure``
(not registered with pyplot: in a notebook it renders as the cell's value) or a small
DataFrame. Colours come from :mod:`interpretable.book.style`: one per model and per method,
blue = better for signed effects.

Figures: :func:`masking_figure` (one image, its map, the masked image and its curves),
:func:`curves_figure` (mean insertion/deletion curves), :func:`levels_figure` (the mean of
every metric per network and method), :func:`paired_heatmap` (paired comparisons, method x
metric), :func:`sweep_figure` (the sweep's effects against lambda). Tables:
:func:`summaries`, :func:`curve_areas`, :func:`verdict_counts`, :func:`paper_directions`,
:func:`sweep_differences`, :func:`replicate_agreement`, :func:`top1_from_rows`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..attribution import DEFAULT_CAMS, METHODS
from ..metrics.definitions import METRICS, metric
from . import style

__all__ = ["ARCH_NAMES", "KINDS", "method_order", "masking_figure", "curves_figure",
           "curve_areas", "summaries", "levels_figure", "top1_from_rows"]

#: display names of the architectures
ARCH_NAMES = {"resnet18": "ResNet-18", "mobilenet_v2": "MobileNet-V2"}
#: the reference runs of an architecture, in the order the chapter shows them
KINDS = ("baseline", "regularized", "aligned")
_ORDER = [METHODS[k].name for k in DEFAULT_CAMS]  # Grad-CAM, Grad-CAM++, Score-CAM, FastCAM
_GREY_TEXT = "#555555"


def method_order(names: Sequence[str]) -> list[str]:
    """``names`` without duplicates, the study's CAMs first in the book's order (Grad-CAM,
    Grad-CAM++, Score-CAM, FastCAM), any other method after them in its order of appearance."""
    names = list(dict.fromkeys(names))
    return sorted(names, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER),
                                        names.index(n)))


def _arrow(m) -> str:
    return "\u2193" if m.better == "lower" else "\u2191"


def _np(a: Any) -> np.ndarray:
    """A tensor or array as a float numpy array (on the CPU)."""
    if hasattr(a, "detach"):
        a = a.detach().float().cpu().numpy()
    return np.asarray(a, dtype=float)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _split(run: str) -> tuple[str, str]:
    """``"resnet18_baseline"`` -> ``("resnet18", "baseline")``."""
    arch, _, kind = run.rpartition("_")
    return (arch, kind) if arch else (run, "")


# --------------------------------------------------------------------------------------------
# One image, a few images
# --------------------------------------------------------------------------------------------


def masking_figure(image: Any, saliency: Any, masked: Any, y: float, o: float,
                   curves: Any = None, method: str = "Grad-CAM", title: str | None = None):
    """What the confidence metrics and the curves see for one image.

    Args:
        image, masked: pictures (H, W, 3) in [0, 1] (e.g. :func:`interpretable.viz.to_image`
            of x and of the masked x).
        saliency: the map S (H, W) in [0, 1] at the image's size.
        y, o: the true-class probability on the image (Y) and on the masked image (O).
        curves: optional :class:`~interpretable.metrics.Curves` of this image (``fraction``
            (T+1,), ``insertion`` and ``deletion`` (1, T+1) or (T+1,)): drawn in a fourth
            panel.
        method: the map's name, for its title; title: the figure's title.

    Returns:
        A Figure with 3 image panels (image, map with its colourbar, masked image) and, with
        ``curves``, a fourth panel with the insertion and deletion curves.
    """
    panels = 4 if curves is not None else 3
    fig = _figure(min(10.0, 2.3 * panels + 1.0), 2.7)
    axes = fig.subplots(1, panels, width_ratios=[1] * 3 + [1.3] * (panels - 3))
    sal = _np(saliency)
    axes[0].imshow(np.clip(_np(image), 0, 1), interpolation="nearest")
    axes[0].set_title(f"image x\nY = p(true class) = {float(y):.3f}")
    im = axes[1].imshow(sal, cmap=style.HEAT_CMAP, vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title(f"{method} map S\n(upsampled, min-max)")
    style.colorbar(fig, im, label="S", shrink=0.8)
    axes[2].imshow(np.clip(_np(masked), 0, 1), interpolation="nearest")
    axes[2].set_title(f"masked x \u2299 S\nO = {float(o):.3f}")
    for ax in axes[:3]:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.spines[:].set_visible(False)
    if curves is not None:
        ax = axes[3]
        frac = _np(curves.fraction)
        for part, ls in (("insertion", "-"), ("deletion", "--")):
            values = _np(getattr(curves, part)).reshape(-1, frac.size).mean(0)
            area = 100 * (values.sum() - (values[0] + values[-1]) / 2) / (frac.size - 1)
            ax.plot(frac, values, ls, color=style.color(method),
                    label=f"{part}\n(area {area:.1f})")
        ax.set_xlabel("fraction of pixels changed")
        ax.set_ylabel("p(true class)")
        ax.set_ylim(0, 1)
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
        ax.set_title("curves of this image")
    if title:
        fig.suptitle(title)
    return fig


def curves_figure(curves: Mapping[tuple[str, str], Any], title: str | None = None):
    """Mean insertion (top row) and deletion (bottom row) curves, one column per method.

    Args:
        curves: ``{(model, method): c}`` with ``c.fraction`` (T+1,) and ``c.insertion``,
            ``c.deletion`` (N, T+1) (:class:`~interpretable.metrics.Curves`, tensors or
            arrays); a model's colour is :func:`style.color` of its name.
        title: the figure's title.

    Returns:
        A Figure with 2 x (number of methods) panels sharing the y axis, one legend below.
    """
    if not curves:
        raise ValueError("curves is empty: nothing to draw")
    models = list(dict.fromkeys(k[0] for k in curves))
    methods = method_order([k[1] for k in curves])
    fig = _figure(min(10.0, 2.5 * len(methods) + 0.6), 5.0)
    axes = fig.subplots(2, len(methods), squeeze=False, sharex=True, sharey=True)
    for j, method in enumerate(methods):
        for model in models:
            c = curves.get((model, method))
            if c is None:
                continue
            frac = _np(c.fraction)
            for i, part in enumerate(("insertion", "deletion")):
                axes[i, j].plot(frac, _np(getattr(c, part)).mean(0), color=style.color(model),
                                label=model)
        axes[0, j].set_title(method)
        axes[1, j].set_xlabel("fraction of pixels changed")
    axes[0, 0].set_ylabel("p(true class)\ninsertion")
    axes[1, 0].set_ylabel("p(true class)\ndeletion")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(models))
    if title:
        fig.suptitle(title)
    return fig


def curve_areas(curves: Mapping[tuple[str, str], Any], tables: Mapping[str, Any] | None = None,
                digits: int = 1):
    """The areas (x100) of the curves of :func:`curves_figure` beside the committed means.

    ``curves``: as for :func:`curves_figure` (N images each); ``tables``: ``{model: per-image
    result table}`` (columns ``method``, ``insertion``, ``deletion``). Returns a DataFrame
    indexed by (model, method): ``Y, these N`` (the mean true-class probability of the
    images, where every deletion curve starts and every insertion curve ends), ``Y, all M``
    (over the table's M images), then ``Ins`` and ``Del`` the same way (the committed means);
    the area of a mean curve is the mean of the images' areas (the area is linear in the
    curve).
    """
    import pandas as pd

    rows = {}
    for (model, method), c in curves.items():
        row = {}
        start = _np(c.deletion)[:, 0]  # p_c(x): nothing deleted yet
        row[f"Y, these {start.size}"] = start.mean()
        if tables is not None and model in tables:
            t = tables[model]
            t = t[t["method"] == method]
            row[f"Y, all {t['index'].nunique()}"] = t["Y"].mean()
        for part, name in (("insertion", "Ins"), ("deletion", "Del")):
            v = _np(getattr(c, part))
            n = v.shape[0]
            area = 100 * (v.sum(1) - (v[:, 0] + v[:, -1]) / 2) / (v.shape[1] - 1)
            row[f"{name}, these {n}"] = area.mean()
            if tables is not None and model in tables:
                t = tables[model]
                t = t[t["method"] == method]
                row[f"{name}, all {t['index'].nunique()}"] = t[part].mean()
        rows[model, method] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.names = ["model", "method"]
    order = [c for p in ("Y", "Ins", "Del") for c in out.columns if c.startswith(p)]
    return out[order].round({c: 3 if c.startswith("Y") else digits for c in order})


# --------------------------------------------------------------------------------------------
# The levels: the mean of each metric per network and method
# --------------------------------------------------------------------------------------------


def summaries(tables: Mapping[str, Any], confidence: float = 0.95):
    """Mean and interval of every metric per run and method: a long DataFrame with ``run``,
    ``arch``, ``kind`` (from names like ``resnet18_baseline``), ``method``, ``metric`` (the
    paper name), ``n``, ``mean``, ``low``, ``high`` (:func:`interpretable.tables.summarize`)."""
    import pandas as pd

    from ..tables import summarize

    parts = []
    for run, t in tables.items():
        s = summarize(t, confidence)
        arch, kind = _split(run)
        parts.append(pd.DataFrame({
            "run": run, "arch": arch, "kind": kind, "method": s["method"],
            "metric": [metric(c).name for c in s["metric"]], "n": s["n"], "mean": s["mean"],
            "low": s["ci_low"], "high": s["ci_high"]}))
    if not parts:
        raise ValueError("tables is empty: nothing to summarize")
    return pd.concat(parts, ignore_index=True)


def levels_figure(summary):
    """The mean of each metric (columns) per method (y) and network (colour), one row of
    panels per architecture, with 95% intervals (often narrower than the dots).

    ``summary``: the output of :func:`summaries` (columns ``arch``, ``kind``, ``method``,
    ``metric``, ``mean``, ``low``, ``high``). Returns a Figure with (architectures) x
    (metrics) panels and one legend below.
    """
    archs = list(dict.fromkeys(summary["arch"]))
    kinds = list(dict.fromkeys(summary["kind"]))
    methods = method_order(summary["method"])
    fig = _figure(10.0, 1.0 + 2.0 * len(archs))
    axes = fig.subplots(len(archs), len(METRICS), squeeze=False, sharey=True)
    offset = {k: 0.22 * (i - (len(kinds) - 1) / 2) for i, k in enumerate(kinds)}
    for r, arch in enumerate(archs):
        for j, m in enumerate(METRICS):
            ax = axes[r, j]
            for kind in kinds:
                g = summary[(summary["arch"] == arch) & (summary["kind"] == kind)
                            & (summary["metric"] == m.name)].set_index("method")
                g = g.reindex([x for x in methods if x in g.index])
                if not len(g):
                    continue
                y = np.array([methods.index(x) for x in g.index]) + offset[kind]
                ax.errorbar(g["mean"], y, xerr=[g["mean"] - g["low"], g["high"] - g["mean"]],
                            fmt="o", markersize=4.5, color=style.color(kind), label=kind,
                            elinewidth=1, capsize=0)
            ax.set_yticks(range(len(methods)), methods)
            ax.grid(axis="x", alpha=0.3)
            if r == len(archs) - 1:
                ax.set_xlabel(f"{m.name} {_arrow(m)} (%)")
            if r == 0:
                ax.set_title(m.title)
        axes[r, 0].set_ylabel(ARCH_NAMES.get(arch, arch))
    axes[0, 0].invert_yaxis()
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(kinds))
    return fig


# --------------------------------------------------------------------------------------------
# Paired comparisons
# --------------------------------------------------------------------------------------------




# --------------------------------------------------------------------------------------------
# The sweep and its replicates
# --------------------------------------------------------------------------------------------




def top1_from_rows(table) -> float:
    """Top-1 (percent) of a per-image result table: the share of its images whose
    ``predicted`` class is the ``label`` (one row per image counted)."""
    u = table.drop_duplicates("index")
    if not len(u):
        raise ValueError("table is empty")
    return float(100 * (u["predicted"] == u["label"]).mean())


# these names live in modules beside this one and are served from here on first use
_MOVED = {"sweep_differences": "sweep_metrics", "sweep_figure": "sweep_metrics",
          "replicate_agreement": "sweep_metrics", "beyond_seed": "sweep_metrics",
          "seed_summary": "sweep_metrics",
          "paired_heatmap": "paired",
          "verdict_counts": "paired", "paper_directions": "paired"}


def __getattr__(name: str):
    if name in _MOVED:
        module = importlib.import_module(f"{__package__}.{_MOVED[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
