"""Figures and tables of the chapters on input gradients: Gradients
(``book/02_gradients.ipynb``) and Beyond the papers (``book/08_beyond.ipynb``).

- Pictures of signed gradients (:func:`signed_figure`) and of their magnitude
  (:func:`magnitude_figure`), SmoothGrad at several noise levels
  (:func:`noise_level_figure`).
- Per-image statistics of maps (:data:`STATS`, :func:`map_statistics`,
  :func:`statistics_table`, :func:`statistics_figure`).
- The randomization cascade of Adebayo et al. measured with several similarities at once
  (:data:`MEASURES`, :func:`cascade_similarity`, :func:`cascade_figure`): the signed cosine
  and the rank correlation of magnitudes answer different questions, and both chapters draw
  them from this one function.
- cos(gradient, guided gradient) per model (:func:`cosine_histogram`), the lambda sweep
  epoch by epoch (:func:`sweep_epochs`, :func:`sweep_epochs_figure`) and the live
  fine-tuning table (:func:`live_table`).

Every figure is a ``matplotlib.figure.Figure`` built without pyplot (nothing is shown or kept
open; in a notebook it renders as the cell's value).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import mapstats
from ..attribution import gradient, guided_backprop, smoothgrad
from ..viz import HEAT_CMAP, magnitude, show_grid, signed_rgb
from . import style

__all__ = ["STATS", "MEASURES", "map_statistics", "statistics_table", "statistics_figure",
           "signed_figure", "magnitude_figure", "noise_level_figure", "cosine_histogram",
           "sweep_epochs", "sweep_epochs_figure", "live_table", "method_color"]

#: per-image statistics of a signed map g (B, 3, H, W) of the images x (B, 3, H, W): the
#: correlation of its magnitude (max over channels) with the image's Sobel edges (a flat map
#: counts as 0), its roughness and the share of its total |g| that is negative
STATS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "edge alignment": lambda g, x: mapstats.correlation(
        g.abs().amax(1), mapstats.edge_strength(x), flat=0.0),
    "roughness": lambda g, x: mapstats.roughness(g),
    "negative share": lambda g, x: mapstats.negative_share(g),
}

#: the gradient methods with a sign: key of METHODS -> function (model, x, target) -> map
_SIGNED: dict[str, Callable[..., Tensor]] = {"gradient": gradient, "guided": guided_backprop}


def _ssim(a: Tensor, b: Tensor) -> Tensor:
    return mapstats.ssim(a, b, data_range=1.0)


def _abs_cosine(a: Tensor, b: Tensor) -> Tensor:
    return mapstats.cosine(a, b).abs()


#: similarities of the randomization cascade: name -> (which maps it compares, function).
#: "signed": the raw signed gradients (B, 3, H, W); "magnitude": |g| summed over colour
#: channels and scaled to [0, 1] per image (B, H, W), the maps of
#: :func:`interpretable.sanity.explain`. Each function gives one value per image.
#: "|cosine|" is the cosine up to a flip of the whole map's sign (a map that only changed
#: sign keeps 1); "Spearman of |map|" ignores the sign of every pixel.
MEASURES: dict[str, tuple[str, Callable[[Tensor, Tensor], Tensor]]] = {
    "cosine": ("signed", mapstats.cosine),
    "|cosine|": ("signed", _abs_cosine),
    "Spearman": ("signed", mapstats.spearman),
    "Spearman of |map|": ("magnitude", mapstats.spearman),
    "SSIM of |map|": ("magnitude", _ssim),
}


def method_color(name: str) -> str:
    """The book's colour of a method by display name; "SmoothGrad (guided)" is drawn in the
    colour of guided backpropagation, "white noise" in light grey."""
    if name == "white noise":
        return "#BBBBBB"
    if name.startswith("SmoothGrad (guided"):
        return style.color("guided backprop")
    if name.startswith("SmoothGrad"):
        return style.color("SmoothGrad")
    if name == "guided":
        return style.color("guided backprop")
    return style.color(name)


# --------------------------------------------------------------------------------------------
# Per-image statistics
# --------------------------------------------------------------------------------------------


def map_statistics(model: nn.Module, x: Tensor, y: Tensor,
                   methods: Mapping[str, Callable[..., Tensor]], batch: int = 100
                   ) -> dict[str, dict[str, Tensor]]:
    """The :data:`STATS` of each method's maps: ``{method: {statistic: (N,) tensor}}``.

    ``x`` (N, 3, H, W) model inputs, ``y`` (N,) targets; ``methods``: ``{name: fn}`` with
    ``fn(model, x, y) -> (B, 3, H, W)`` signed maps, run in batches of ``batch`` images.
    """
    out: dict[str, dict[str, list[Tensor]]] = {m: {s: [] for s in STATS} for m in methods}
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        for name, fn in methods.items():
            g = fn(model, xb, yb)
            for s, stat in STATS.items():
                out[name][s].append(stat(g, xb).detach().float().cpu())
    return {m: {s: torch.cat(v) for s, v in d.items()} for m, d in out.items()}


def statistics_table(res: Mapping[str, Mapping[str, Tensor]]) -> Any:
    """Mean of each statistic per method (a pandas DataFrame, one row per method) and the
    number of images each mean is over."""
    import pandas as pd

    table = pd.DataFrame({m: {s: float(v.mean()) for s, v in d.items()}
                          for m, d in res.items()}).T
    table["images"] = [len(next(iter(d.values()))) for d in res.values()]
    return table


def statistics_figure(res: Mapping[str, Mapping[str, Tensor]], title: str | None = None):
    """Box plots of the per-image statistics: one panel per statistic, one box per method
    (whiskers at 1.5 IQR, no outliers), in the method's colour. ``res`` as returned by
    :func:`map_statistics`."""
    from matplotlib.figure import Figure

    methods = list(res)
    stats = list(next(iter(res.values())))
    fig = Figure(figsize=(9.5, 3.2), layout="constrained")
    axes = fig.subplots(1, len(stats), squeeze=False)[0]
    for ax, s in zip(axes, stats, strict=True):
        data = [res[m][s].cpu().numpy() for m in methods]
        box = ax.boxplot(data, showfliers=False, patch_artist=True, widths=0.6,
                         medianprops={"color": "black"})
        for patch, m in zip(box["boxes"], methods, strict=True):
            patch.set_facecolor(method_color(m))
            patch.set_alpha(0.75)
            if m.startswith("SmoothGrad ("):  # guided's colour, hatched
                patch.set_hatch("///")
                patch.set_edgecolor("white")
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=35, ha="right")
        ax.set_title(s)
        if s == "edge alignment":
            ax.axhline(0, color="grey", lw=0.8)
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------------------------
# Pictures of gradients
# --------------------------------------------------------------------------------------------


def _no_frames(fig, axes: Sequence | None = None) -> None:
    """Hide the frames of picture axes (the book style keeps left and bottom spines)."""
    for ax in axes if axes is not None else fig.axes:
        for spine in ax.spines.values():
            spine.set_visible(False)


def _map_axes(fig) -> list:
    """The axes of a :func:`interpretable.viz.show_grid` figure except the image column."""
    grid = [ax for ax in fig.axes if ax.get_subplotspec() is not None]
    cols = grid[0].get_subplotspec().get_gridspec().ncols
    return [ax for i, ax in enumerate(grid) if i % cols]


def signed_figure(images: Tensor, maps: Mapping[str, Tensor],
                  row_labels: Sequence[str] | None = None, cell: float = 1.35):
    """Signed gradients as colour pictures: one row per image (B, 3, H, W), one column per
    entry of ``maps`` ({title: (B, 3, H, W)}), drawn by :func:`interpretable.viz.signed_rgb`
    (grey is 0; each colour channel brighter where positive, darker where negative, scaled to
    the 99th percentile of |g| of each map). A grey colourbar gives that scale."""
    fig = show_grid(images, {k: signed_rgb(v) for k, v in maps.items()},
                    row_labels=row_labels, cell=cell, colorbar=False)
    _no_frames(fig)
    style.colorbar(fig, _map_axes(fig), cmap="gray", vmin=-1, vmax=1, shrink=0.6,
                   label="value per colour channel\n(/ 99th percentile of |g|)")
    return fig


def magnitude_figure(images: Tensor, maps: Mapping[str, Tensor],
                     row_labels: Sequence[str] | None = None, cell: float = 1.35):
    """Magnitude of gradients as heat maps: one row per image (B, 3, H, W), one column per
    entry of ``maps`` ({title: (B, C, H, W)}); per pixel the largest |g| over the channels
    divided by the map's 99th percentile (:func:`interpretable.viz.magnitude`), in the book's
    heat colormap with its colourbar."""
    fig = show_grid(images, {k: magnitude(v) for k, v in maps.items()},
                    row_labels=row_labels, cell=cell, overlay_maps=False, colorbar=False)
    _no_frames(fig)
    style.colorbar(fig, _map_axes(fig), shrink=0.6, label="|g| / 99th percentile")
    return fig


def noise_level_figure(model: nn.Module, x: Tensor, y: Tensor, levels: Sequence[float],
                       n: int = 25, seed: int = 0, title: str | None = None):
    """SmoothGrad of the gradient and of guided backpropagation for ONE image ``x``
    (1, 3, H, W) with target ``y`` (1,) at each noise level (``noise_level`` of
    :func:`interpretable.attribution.smoothgrad`, n copies, seeded): a row per method, a
    column per level, magnitude heat maps with one colourbar."""
    from matplotlib.figure import Figure

    rows = {"SmoothGrad\n(gradient)": gradient, "SmoothGrad\n(guided)": guided_backprop}
    fig = Figure(figsize=(1.5 * len(levels) + 1.2, 3.4), layout="constrained")
    axes = fig.subplots(len(rows), len(levels), squeeze=False)
    for i, (label, fn) in enumerate(rows.items()):
        for j, lev in enumerate(levels):
            gen = torch.Generator(device=x.device).manual_seed(seed)
            m = smoothgrad(fn, model, x, y, n=n, noise_level=float(lev), generator=gen)
            im = axes[i, j].imshow(magnitude(m)[0].cpu().numpy(), cmap=HEAT_CMAP, vmin=0,
                                   vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            axes[0, j].set_title(f"noise {lev:g}")
        axes[i, 0].set_ylabel(label)
    _no_frames(fig, list(axes.flat))
    style.colorbar(fig, im, label="|g| / 99th percentile", ax=axes, shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------------------------
# The randomization cascade
# --------------------------------------------------------------------------------------------




# --------------------------------------------------------------------------------------------
# Alignment of gradient and guided gradient
# --------------------------------------------------------------------------------------------


def cosine_histogram(cosines: Mapping[str, Tensor], bins: int = 40):
    """Histograms of per-image cos(gradient, guided gradient), one per model
    (``{model name: (N,) tensor}``), in each model's colour (a name containing baseline,
    regularized, aligned, random, ...), on shared bins."""
    from matplotlib.figure import Figure

    every = torch.cat([c.detach().float().cpu() for c in cosines.values()])
    lo, hi = float(every.min()), float(every.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-3, bins + 1)
    fig = Figure(figsize=(6.5, 3.0), layout="constrained")
    ax = fig.subplots()
    for name, c in cosines.items():
        ax.hist(c.detach().float().cpu().numpy(), bins=edges, alpha=0.6,
                color=style.color(name), label=name)
    ax.set_xlabel("cos(gradient, guided gradient) of an image")
    ax.set_ylabel("images")
    fig.legend(loc="outside right center")
    return fig


# --------------------------------------------------------------------------------------------
# The lambda sweep, epoch by epoch, and the live fine-tuning
# --------------------------------------------------------------------------------------------


def sweep_epochs(root: str | Path, arch: str) -> Any:
    """Every epoch of every finished sweep run of ``arch`` under ``root/sweep/arch`` (read
    from its ``log.jsonl``): a pandas DataFrame with ``variant`` (control, logit, loss),
    ``lambda``, ``epoch``, ``test cos`` (1 - test L_R: the cosine of the gradient the run
    regularizes, on the sweep's test images) and ``test top-1`` (%)."""
    import pandas as pd

    from ..study import sweep

    rows = []
    for r in sweep.table(Path(root), arch):
        path = Path(root) / "sweep" / arch / r["run"] / "log.jsonl"
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                rows.append({"variant": r["gradient_of"], "lambda": float(r["lam"]),
                             "epoch": int(rec["epoch"]), "test cos": 1 - rec["test_align"],
                             "test top-1": rec["test_acc"]})
    return pd.DataFrame(rows, columns=["variant", "lambda", "epoch", "test cos",
                                       "test top-1"])


_VARIANT_COLORS = {"logit": style.PALETTE["orange"], "loss": style.PALETTE["purple"],
                   "control": style.PALETTE["blue"]}


def sweep_epochs_figure(epochs: Any, start: Mapping[str, float] | None = None):
    """Test cos and test top-1 of the sweep after each epoch against lambda (symlog axis):
    a line per variant and epoch (epoch 1 dashed with open markers, the last epoch solid),
    the control (lambda 0) at the left. ``start``: optional ``{"test cos": .., "test top-1":
    ..}`` of the network the runs start from, drawn as a grey line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 3.3), layout="constrained")
    axes = fig.subplots(1, 2)
    control = epochs[epochs["variant"] == "control"]
    last = int(epochs["epoch"].max())
    for ax, col in zip(axes, ("test cos", "test top-1"), strict=True):
        for variant in [v for v in dict.fromkeys(epochs["variant"]) if v != "control"]:
            part = epochs[epochs["variant"] == variant]
            for ep in sorted(part["epoch"].unique()):
                e = _concat(control[control["epoch"] == ep], part[part["epoch"] == ep])
                e = e.sort_values("lambda")
                final = ep == last
                ax.plot(e["lambda"], e[col], "-" if final else "--", marker="o",
                        mfc=None if final else "white", ms=4,
                        color=_VARIANT_COLORS.get(variant, style.PALETTE["grey"]),
                        label=f"{variant}, epoch {ep}")
        if start and col in start:
            ax.axhline(start[col], color=style.PALETTE["grey"], lw=0.8,
                       label="start (baseline)")
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlim(left=-0.002)
        ax.set_xlabel("lambda (0 = control)")
        ax.set_ylabel(col + (" %" if "top-1" in col else ""))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center")
    return fig


def _concat(*frames: Any) -> Any:
    import pandas as pd

    frames = [f for f in frames if len(f)]
    return pd.concat(frames) if frames else pd.DataFrame()


def live_table(start: Mapping[str, Any], runs: Mapping[str, Sequence[Mapping[str, Any]]]
               ) -> Any:
    """A small table of the live fine-tuning: one row for the starting network (``start``:
    a record of :func:`interpretable.training.accuracy_and_alignment`) and one per run and
    epoch (``runs``: {label: the run's history}), with test top-1 %, test cos and its 95%
    interval."""
    import pandas as pd

    def row(r: Mapping[str, Any]) -> dict[str, float]:
        return {"test top-1 %": r["test_acc"], "test cos": 1 - r["test_align"],
                "cos 95% low": 1 - r["test_align_ci"][1],
                "cos 95% high": 1 - r["test_align_ci"][0]}

    rows = {("start", 0): row(start)}
    for label, history in runs.items():
        for rec in history:
            rows[(label, int(rec["epoch"]))] = row(rec)
    out = pd.DataFrame(rows).T
    out.index.names = ["run", "epoch"]
    return out


# the names of _MOVED live in .cascade and are served from here on first use
_MOVED = ('cascade_similarity', 'cascade_figure', 'cascade_maps_figure')


def __getattr__(name: str):
    if name in _MOVED:
        from . import cascade

        return getattr(cascade, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
