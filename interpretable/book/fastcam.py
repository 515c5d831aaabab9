"""Figures and tables of the chapter "FastCAM and LOVI" (book/04_fastcam.ipynb).

Saliency Map Order Equivalence (:func:`statistic_costs`, :func:`order_figure`), the LOVI
picture with its colour key and its reading (:func:`lovi_figure`, :func:`lovi_reading`), the
faithfulness numbers with what Average Drop reads from a map (:func:`faithfulness`,
:func:`ad_against_kept`, :func:`ad_figure`). Every function takes batches and works on tiny
synthetic inputs as well as on the chapter's networks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["STAT_NAMES", "STAT_COLORS", "statistic_costs", "order_figure", "lovi_key",
           "lovi_figure", "lovi_saturation", "lovi_reading", "kept_share", "faithfulness",
           "ad_against_kept", "ad_figure"]

#: display names of the channel statistics of ``interpretable.attribution.smoe.STATISTICS``
STAT_NAMES = {"smoe": "SMOE Scale", "entropy": "trunc.-normal entropy", "std": "channel std",
              "mean": "channel mean", "max": "channel max"}


def _stat_colors() -> dict[str, str]:
    from .style import PALETTE, color

    return {"smoe": color("SMOE saliency"), "entropy": PALETTE["orange"],
            "std": PALETTE["sky"], "mean": PALETTE["grey"], "max": PALETTE["green"]}


#: one colour per statistic (SMOE Scale in the registry colour of "SMOE saliency")
STAT_COLORS = _stat_colors()


# --------------------------------------------------------------------------------------------
# Saliency Map Order Equivalence
# --------------------------------------------------------------------------------------------


def statistic_costs(model: nn.Module, x: Tensor, statistics: Sequence[str],
                    layers: Any = None, repeats: int = 5, warmup: int = 1,
                    clock: str = "cpu", threads: int | None = 1) -> dict[str, float]:
    """Milliseconds per call of each channel statistic on the activations of ``layers``.

    One forward of ``x`` (B, 3, H, W) records the (post-ReLU) outputs of the layers (default
    ``interpretable.models.scale_layers``); then every statistic (keys of
    ``smoe.STATISTICS``) over all of them, and a plain forward pass of ``x`` without
    gradients, are timed round-robin (``interpretable.timing.measure_interleaved``, medians).
    ``clock="cpu"``: process CPU seconds (all threads), which other processes on a busy
    machine disturb far less than wall time; ``"wall"``: wall-clock seconds. ``threads``:
    torch's CPU threads during the timing (restored afterwards; None: as they are). One
    thread keeps CPU time honest on a busy machine: waiting threads of a parallel region
    spin and count as work.

    Returns:
        ``{"forward pass": ms, statistic: ms, ...}``.
    """
    if clock not in ("cpu", "wall"):
        raise ValueError(f"clock must be 'cpu' or 'wall', got {clock!r}")
    from ..attribution.smoe import statistic
    from ..checks import eval_mode
    from ..models import scale_layers
    from ..timing import measure_interleaved

    layers = scale_layers(model) if layers is None else list(layers)
    acts: list[Tensor] = []
    hooks = [m.register_forward_hook(lambda m, i, o: acts.append(o.detach().clamp(min=0)))
             for m in layers]
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()

    def forward() -> None:
        with eval_mode(model), torch.no_grad():
            model(x)

    fns: dict[str, Callable[[], object]] = {"forward pass": forward}
    for s in statistics:
        fn = statistic(s)
        fns[s] = lambda fn=fn: [fn(a) for a in acts]
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        timings = measure_interleaved(fns, repeats=repeats, warmup=warmup, device=x.device)
    finally:
        torch.set_num_threads(before)
    return {k: 1e3 * (t.cpu_median if clock == "cpu" else t.median)
            for k, t in timings.items()}


def order_figure(rho: Any, costs: Mapping[str, float]) -> Any:
    """Two panels: rank agreement with SMOE Scale per layer, and the cost of each statistic.

    Args:
        rho: a pandas DataFrame, index = layers (and e.g. "combined"), columns = statistic
            keys; entries the mean Spearman correlation with SMOE Scale.
        costs: ``{"forward pass": ms, statistic key: ms}`` (:func:`statistic_costs`).

    Returns:
        a matplotlib Figure with two axes (grouped bars; horizontal bars, percent of a
        forward pass).
    """
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 3.4), layout="constrained")
    ax, bx = fig.subplots(1, 2, width_ratios=[1.7, 1])
    cols = list(rho.columns)
    width = 0.8 / max(len(cols), 1)
    pos = np.arange(len(rho.index))
    for j, s in enumerate(cols):
        ax.bar(pos + (j - (len(cols) - 1) / 2) * width, rho[s].to_numpy(), width,
               color=STAT_COLORS.get(s, "#888888"), label=STAT_NAMES.get(s, s))
    ax.set_xticks(pos, [str(i) for i in rho.index])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("Spearman with SMOE Scale")
    ax.set_title("Do they rank the locations alike?")
    ax.legend(ncol=len(cols), loc="upper left", fontsize=8, handlelength=1.2)

    fwd = costs["forward pass"]
    names = [k for k in costs if k != "forward pass"]
    share = [100 * costs[k] / fwd for k in names]
    bx.barh(range(len(names)), share, color=[STAT_COLORS.get(k, "#888888") for k in names])
    bx.set_yticks(range(len(names)), [STAT_NAMES.get(k, k) for k in names])
    bx.invert_yaxis()
    for i, v in enumerate(share):
        bx.text(v, i, f" {v:.0f}%", va="center", fontsize=8)
    bx.set_xlim(0, 1.3 * max(share + [1.0]))
    bx.set_xlabel("cost, % of one forward pass")
    bx.set_title("What does each cost?")
    return fig


# --------------------------------------------------------------------------------------------
# LOVI
# --------------------------------------------------------------------------------------------


def lovi_key(n_layers: int) -> Tensor:
    """The LOVI colour of each layer alone and of all layers alike: (L + 1, 3) RGB,
    computed by ``interpretable.viz.lovi`` from one-hot stacks and an all-ones stack."""
    from ..viz import lovi

    one_hot = torch.eye(n_layers).reshape(n_layers, n_layers, 1, 1)
    stacks = torch.cat([one_hot, torch.ones(1, n_layers, 1, 1)])
    return lovi(stacks)[:, 0, 0]


def lovi_figure(x: Tensor, per_layer: Tensor, layer_names: Sequence[str],
                row_labels: Sequence[str] | None = None, combined: Tensor | None = None,
                cell: float = 1.55) -> Any:
    """Image | LOVI | LOVI on the image | combined saliency (heat map), one row per image,
    and the LOVI colour key below.

    Args:
        x: model inputs (B, 3, H, W).
        per_layer: (B, L, H, W) normalized per-layer maps (``saliency``'s second output).
        layer_names: L names for the colour key.
        row_labels: B labels (e.g. class names).
        combined: optional (B, H, W) combined map, drawn with the heat colormap and a
            colourbar.

    Returns:
        a matplotlib Figure: B x (3 or 4) image axes, one key axis, a colourbar when
        ``combined`` is given.
    """
    from matplotlib.figure import Figure

    from ..viz import HEAT_CMAP, heatmap, lovi, to_image
    from .style import colorbar

    b, n_layers = per_layer.shape[:2]
    if len(layer_names) != n_layers:
        raise ValueError(f"layer_names must have {n_layers} entries, got {len(layer_names)}")
    pics = to_image(x)
    panels = {"LOVI": lovi(per_layer).cpu().numpy(),
              "LOVI on image": lovi(per_layer, image=pics).cpu().numpy()}
    if combined is not None:
        panels["combined SMOE"] = heatmap(combined.detach().cpu()).numpy()
    cols = 1 + len(panels)
    fig = Figure(figsize=(cell * cols + 1.0, cell * b + 0.9), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[cell * b, 0.9])
    axes = top.subplots(b, cols, squeeze=False)
    for r in range(b):
        axes[r, 0].imshow(pics[r], interpolation="nearest")
        for c, panel in enumerate(panels.values(), start=1):
            axes[r, c].imshow(panel[r], interpolation="nearest")
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for c, title in enumerate(["image", *panels]):
        axes[0, c].set_title(title, fontsize=9)
    if combined is not None:
        colorbar(top, axes[:, -1], label="relative saliency", cmap=HEAT_CMAP, shrink=0.6)
    key = lovi_key(n_layers).numpy()
    kx = bottom.subplots()
    kx.imshow(key[None], aspect="auto")
    for i in range(n_layers):  # the white "all alike" cell needs its outline
        kx.axvline(i + 0.5, color="black", lw=0.8)
    kx.spines[:].set_visible(True)
    kx.set_xticks(range(n_layers + 1), [*layer_names, "all alike"], fontsize=9)
    kx.set_yticks([])
    kx.set_title("LOVI colour key: the layer that responds (value = how strongly)", fontsize=9)
    return fig


def _joint_range(per_layer: Tensor) -> Tensor:
    """(B, L, H, W) range-normalized per image over all layers jointly, as LOVI does."""
    b = per_layer.shape[0]
    p = per_layer.detach().float()
    flat = p.reshape(b, -1)
    lo = flat.amin(1).view(b, 1, 1, 1)
    span = flat.amax(1).view(b, 1, 1, 1) - lo
    return torch.where(span > 0, (p - lo) / span.clamp_min(1e-12), p).clamp(0, 1)


def lovi_saturation(per_layer: Tensor) -> Tensor:
    """LOVI's saturation (B, H, W) in [0, 1]: 1 where one layer alone responds, 0 where all
    respond alike (the formula of :func:`interpretable.viz.lovi`)."""
    p = _joint_range(per_layer)
    n = p.shape[1]
    if n == 1:
        return torch.zeros_like(p[:, 0])
    total, peak = p.sum(1), p.amax(1)
    spread = total / (n * peak.clamp_min(1e-12))
    sat = (1 - (spread - 1 / n) / (1 - 1 / n)).clamp(0, 1)
    return torch.where(peak > 0, sat, torch.zeros_like(sat))


def lovi_reading(per_layer: Tensor, combined: Tensor, layer_names: Sequence[str],
                 top: float = 0.2) -> Any:
    """Which layer responds where: the mean response of each layer (LOVI's joint
    normalization, 0-1) inside the ``top`` fraction of pixels the combined map ranks highest
    and over the rest, and LOVI's mean saturation there, averaged over the images.

    Args:
        per_layer: (B, L, H, W); combined: (B, H, W); layer_names: L names.

    Returns:
        a pandas DataFrame, rows = layers and "LOVI saturation", columns = the two regions.
    """
    import pandas as pd

    b, n = per_layer.shape[:2]
    if len(layer_names) != n:
        raise ValueError(f"layer_names must have {n} entries, got {len(layer_names)}")
    c = combined.detach().float().reshape(b, -1)
    k = max(1, min(c.shape[1] - 1, int(round(top * c.shape[1]))))
    hot = torch.zeros_like(c, dtype=torch.bool).scatter_(1, c.topk(k, dim=1).indices, True)
    values = torch.cat([_joint_range(per_layer).reshape(b, n, -1),
                        lovi_saturation(per_layer).reshape(b, 1, -1)], 1)
    inside = (values * hot[:, None]).sum(2) / hot.sum(1)[:, None]
    outside = (values * ~hot[:, None]).sum(2) / (~hot).sum(1)[:, None]
    return pd.DataFrame({f"most salient {100 * top:.0f}%": inside.mean(0).cpu().numpy(),
                         "rest of the image": outside.mean(0).cpu().numpy()},
                        index=[*layer_names, "LOVI saturation"])


# --------------------------------------------------------------------------------------------
# Faithfulness: what Average Drop reads from a map
# --------------------------------------------------------------------------------------------


def kept_share(maps: Tensor, x: Tensor) -> Tensor:
    """How much of each image a map keeps when Average Drop masks with it: the mean of the
    saliency S (min-max normalized and upsampled as the metrics do), (B,)."""
    from ..metrics.scoring import prepare_maps

    return prepare_maps(maps, x).flatten(1).mean(1)


def faithfulness(model: nn.Module, x: Tensor, y: Tensor, maps: Mapping[str, Tensor],
                 curves: bool = True) -> Any:
    """AD, AG, AI, the share of the image kept, and (``curves``) Insertion and Deletion of
    each map set ``{method: (B, h, w)}`` on images ``x`` (B, 3, H, W), classes ``y`` (B,).

    Returns:
        a pandas DataFrame, one row per method, means over the images in percent (the share
        kept as a fraction); the columns say with an arrow whether lower or higher is better.
    """
    import pandas as pd

    from ..metrics import confidence_scores, insertion_deletion

    rows = {}
    for name, m in maps.items():
        ad, ag, ai = confidence_scores(model, x, m, y)
        row = {"AD ↓": ad.mean(), "AG ↑": ag.mean(), "AI ↑": ai.mean(),
               "share kept": kept_share(m, x).mean()}
        if curves:
            ins, dele = insertion_deletion(model, x, m, y)
            row.update({"Insertion ↑": ins.mean(), "Deletion ↓": dele.mean()})
        rows[name] = {k: float(v) for k, v in row.items()}
    return pd.DataFrame(rows).T


def ad_against_kept(model: nn.Module, x: Tensor, y: Tensor, maps: Mapping[str, Tensor],
                    gammas: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0)) -> Any:
    """Average Drop of the monotone re-scalings S**gamma of each map set (same order of the
    pixels, so the same Insertion and Deletion), with the share of the image each keeps.

    Returns:
        a long pandas DataFrame with columns method, gamma, share kept, AD.
    """
    import pandas as pd

    from ..metrics import confidence_scores
    from ..metrics.scoring import prepare_maps

    rows = []
    for name, m in maps.items():
        s = prepare_maps(m, x)
        for g in gammas:
            sg = s ** float(g)
            ad, _, _ = confidence_scores(model, x, sg, y)
            rows.append({"method": name, "gamma": float(g),
                         "share kept": float(sg.mean()), "AD": float(ad.mean())})
    return pd.DataFrame(rows)


def ad_figure(curve: Any) -> Any:
    """Average Drop against the share of the image kept, one line per method (its registry
    colour), the map as computed (gamma = 1) marked large.

    Args:
        curve: the DataFrame of :func:`ad_against_kept`.

    Returns:
        a matplotlib Figure with one axis.
    """
    from matplotlib.figure import Figure

    from .style import color

    fig = Figure(figsize=(5.6, 3.6), layout="constrained")
    ax = fig.subplots()
    for name, part in curve.groupby("method", sort=False):
        part = part.sort_values("share kept")
        c = color(str(name))
        ax.plot(part["share kept"], part["AD"], "-o", color=c, ms=4, label=str(name))
        one = part[part["gamma"] == 1.0]
        ax.plot(one["share kept"], one["AD"], "o", color=c, ms=10, mec="black")
    ax.set_xlabel("share of the image the mask keeps (mean of S)")
    ax.set_ylabel("Average Drop, % (lower better)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 100)
    ax.legend(loc="upper right")
    gammas = ", ".join(f"{g:g}" for g in sorted(curve["gamma"].unique()))
    ax.set_title(f"large dots: the maps as computed; small: $S^\\gamma$, "
                 f"$\\gamma$ = {gammas}", fontsize=9)
    return fig
