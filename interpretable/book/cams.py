"""Figures and tables of the chapter on class activation maps (book/03_cams.ipynb).

Every function takes batches: images ``x`` (B, 3, H, W) as the model sees them (normalized),
labels or targets (B,), maps (B, H, W). Figures are ``matplotlib.figure.Figure`` objects
built without pyplot, in the book's style (:mod:`interpretable.book.style`): maps in the
heat colormap with a colourbar, one colour per method and per model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..attribution import build_method
from ..mapstats import correlation, is_empty
from . import style

__all__ = ["METHOD_NAMES", "SHIFT_RANKS", "layer_labels", "cam_maps", "gallery", "sample",
           "overlay_grid", "method_grid", "identity_gaps", "agreement", "agreement_figure",
           "empty_shares", "ranked_targets", "class_grid", "class_shift", "shift_summary",
           "class_shift_figure", "rank_one_share", "model_grid", "faithfulness"]

#: the five class activation maps of the chapter, by display name
METHOD_NAMES = ("Grad-CAM", "Grad-CAM++", "XGrad-CAM", "Layer-CAM", "Score-CAM")
#: class ranks compared with the top class in :func:`class_shift`
SHIFT_RANKS = (2, 3, 5, 10, 20, 50, 100)
_IMPORTANCE = "relative importance (per map)"


# --------------------------------------------------------------------------------------------
# Maps, layers and images
# --------------------------------------------------------------------------------------------


def layer_labels(model: nn.Module, x: Tensor) -> dict[str, nn.Module]:
    """``{label: module}`` for the five scale layers of ``model``
    (:func:`interpretable.models.scale_layers`, earliest first), labelled with their name and
    output shape from one forward pass of ``x[:1]``: ``"layer4 (4x4, 128 ch)"``."""
    from ..models import layer_names, scale_layers

    layers = scale_layers(model)
    shapes: dict[int, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: shapes.update({k: o.shape[1:]}))
             for k, m in enumerate(layers)]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in hooks:
            h.remove()
    return {f"{n} ({shapes[k][1]}x{shapes[k][2]}, {shapes[k][0]} ch)": m
            for k, (n, m) in enumerate(zip(layer_names(model, layers), layers, strict=True))}


def cam_maps(model: nn.Module, x: Tensor, target: Any, method: str = "Grad-CAM",
             layer: nn.Module | None = None, normalize: bool = True) -> Tensor:
    """(B, H, W) maps of ``method`` (display name or key) at ``layer`` (default the model's
    CAM layer), each scaled to [0, 1] unless ``normalize=False``."""
    with build_method(method, model, layer=layer) as cam:
        return cam(x, target, normalize=normalize)


def gallery(model: nn.Module, dataset: Any, n: int, device: Any = None, seed: int = 0
            ) -> tuple[Tensor, Tensor, list[str]]:
    """The first ``n`` images (in class order) of a seeded one-per-class sample of
    ``dataset`` that ``model`` classifies correctly: x (n, 3, H, W), y (n,), class names."""
    from ..data import balanced_subset

    x, y = dataset.tensors(balanced_subset(dataset, 1, seed).indices, device=device)
    with torch.no_grad():
        pick = torch.nonzero(model(x).argmax(1) == y).flatten()[:n]
    if len(pick) == 0:
        raise ValueError("the model classifies none of the sampled images correctly")
    return x[pick], y[pick], [dataset.classes[int(c)] for c in y[pick]]


def sample(dataset: Any, n: int, device: Any = None, seed: int = 1) -> tuple[Tensor, Tensor]:
    """``n`` test images for statistics: a seeded class-balanced sample, every k-th image
    so that the classes mix. x (n, 3, H, W), y (n,)."""
    from ..data import balanced_subset

    per_class = -(-n // len(dataset.classes))
    idx = np.asarray(balanced_subset(dataset, per_class, seed).indices)
    return dataset.tensors(idx[np.linspace(0, len(idx) - 1, n).astype(int)], device=device)


def ranked_targets(model: nn.Module, x: Tensor, ranks: Sequence[int]
                   ) -> tuple[Tensor, Tensor]:
    """The k-th most likely class of each image for each k in ``ranks`` and its softmax
    probability: two (R, B) tensors."""
    with torch.no_grad():
        p = model(x).softmax(1)
    order = p.argsort(1, descending=True)[:, [k - 1 for k in ranks]].T  # (R, B)
    return order, p.gather(1, order.T).T


# --------------------------------------------------------------------------------------------
# Grids of overlays
# --------------------------------------------------------------------------------------------


def overlay_grid(x: Tensor, columns: Mapping[str, Tensor], row_labels: Sequence[str],
                 cell_titles: Sequence[Sequence[str]] | None = None,
                 colors: Sequence[str | None] | None = None, cell: float = 1.55,
                 alpha: float = 0.5) -> Any:
    """One row per image: the image, then each map set of ``columns`` ({title: (B, H, W)})
    overlaid on it in the heat colormap, and one colourbar.

    ``cell_titles``: optional (B, len(columns)) titles of the map panels (instead of the
    column titles on the first row); ``colors``: one colour per column (or None) for the
    panel frames, e.g. the method's or the model's colour. Returns a Figure with
    B * (1 + len(columns)) image axes and a colourbar.
    """
    from matplotlib.figure import Figure

    from ..viz import overlay, to_image

    pics = to_image(x)
    b, names = len(pics), list(columns)
    if len(row_labels) != b:
        raise ValueError(f"row_labels must have {b} entries, got {len(row_labels)}")
    colors = list(colors) if colors is not None else [None] * len(names)
    extra = 0.3 if cell_titles is not None else 0.0
    fig = Figure(figsize=(cell * (len(names) + 1) + 1.0, (cell + extra) * b + 0.3),
                 layout="constrained")
    axes = fig.subplots(b, len(names) + 1, squeeze=False)
    for j, name in enumerate(names):
        maps = columns[name].detach().float().cpu()
        if tuple(maps.shape[:1]) != (b,):
            raise ValueError(f"column {name!r} has {maps.shape[0]} maps for {b} images")
        shown = overlay(pics, maps.numpy(), alpha=alpha)
        for i in range(b):
            ax = axes[i, j + 1]
            ax.imshow(shown[i], interpolation="nearest")
            if cell_titles is not None:
                ax.set_title(cell_titles[i][j], fontsize=8)
            if colors[j]:
                for side in ax.spines.values():
                    side.set(visible=True, color=colors[j], linewidth=2.5)
        if cell_titles is None:
            axes[0, j + 1].set_title(name, fontsize=9)
    for i in range(b):
        axes[i, 0].imshow(pics[i], interpolation="nearest")
        axes[i, 0].set_ylabel(row_labels[i], fontsize=9)
    axes[0, 0].set_title("image", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    style.colorbar(fig, axes[:, 1:], label=_IMPORTANCE, shrink=min(0.9, 3.0 / b + 0.2))
    return fig


def method_grid(x: Tensor, maps: Mapping[str, Tensor], row_labels: Sequence[str],
                suffix: str = "") -> Any:
    """:func:`overlay_grid` of ``{method name: maps}``, framed in each method's colour;
    ``suffix`` is added to each column title (e.g. a layer)."""
    return overlay_grid(x, {f"{m}{suffix}": v for m, v in maps.items()}, row_labels,
                        colors=[style.color(m) for m in maps])


def model_grid(models: Mapping[str, nn.Module], x: Tensor, y: Tensor,
               row_labels: Sequence[str], methods: Sequence[str] = ("Grad-CAM", "Grad-CAM++")
               ) -> Any:
    """Maps of each method for each model side by side, framed in the model's colour."""
    cols = {f"{m}\n{kind}": cam_maps(model, x, y, m) for m in methods
            for kind, model in models.items()}
    colors = [style.color(kind) for _ in methods for kind in models]
    return overlay_grid(x, cols, row_labels, colors=colors)


# --------------------------------------------------------------------------------------------
# Where the methods agree
# --------------------------------------------------------------------------------------------


def identity_gaps(model: nn.Module, x: Tensor, y: Tensor,
                  layers: Mapping[str, nn.Module]) -> Any:
    """Largest difference (over images and pixels) of the [0, 1] maps of Grad-CAM and
    XGrad-CAM, and of Grad-CAM++ and Layer-CAM, at each layer: a DataFrame, one row per
    layer label."""
    import pandas as pd

    rows = {}
    for name, layer in layers.items():
        m = {k: cam_maps(model, x, y, k, layer) for k in METHOD_NAMES[:4]}
        rows[name] = {"Grad-CAM vs XGrad-CAM": float((m["Grad-CAM"] - m["XGrad-CAM"]).abs()
                                                     .max()),
                      "Grad-CAM++ vs Layer-CAM": float((m["Grad-CAM++"] - m["Layer-CAM"])
                                                       .abs().max())}
    return pd.DataFrame(rows).T


def agreement(maps: Mapping[str, Tensor]) -> Any:
    """Mean Pearson correlation over pixels of every pair of map sets ``{method: (B, H, W)}``
    (a set may hold fewer images: a pair uses the images both have; an image where a map is
    constant is skipped). A square DataFrame."""
    import pandas as pd

    def mean_r(a: Tensor, b: Tensor) -> float:
        n = min(len(a), len(b))
        return float(correlation(a[:n], b[:n]).nanmean())

    return pd.DataFrame({m1: {m2: mean_r(v1, v2) for m2, v2 in maps.items()}
                         for m1, v1 in maps.items()})


def agreement_figure(table: Any, title: str = "") -> Any:
    """The agreement matrix (:func:`agreement`) as a heat map with its values, a colourbar
    and the method names in their colours. Returns a Figure with 2 axes."""
    from matplotlib.figure import Figure

    names = list(table.columns)
    values = table.to_numpy(dtype=float)
    fig = Figure(figsize=(5.2, 4.2), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(values, vmin=0, vmax=1, cmap=style.HEAT_CMAP)
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax.set_yticks(range(len(names)), table.index)
    for lab in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
        lab.set_color(style.color(lab.get_text()))
        lab.set_fontweight("bold")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            ax.text(j, i, "-" if not np.isfinite(v) else f"{v:.2f}", ha="center",
                    va="center", fontsize=9, color="white" if v < 0.6 else "black")
    ax.spines[:].set_visible(False)
    fig.colorbar(im, ax=ax, shrink=0.85, label="mean correlation of the maps")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


def empty_shares(model: nn.Module, x: Tensor, y: Tensor, layers: Mapping[str, nn.Module],
                 methods: Sequence[str] = ("Grad-CAM", "Layer-CAM")) -> Any:
    """Percentage of images whose map has no positive value, per layer (rows) and method
    (columns): a DataFrame."""
    import pandas as pd

    return pd.DataFrame({m: {n: 100 * float(is_empty(cam_maps(model, x, y, m, layer,
                                                                normalize=False))
                                             .float().mean())
                             for n, layer in layers.items()} for m in methods})


# --------------------------------------------------------------------------------------------
# Classes
# --------------------------------------------------------------------------------------------


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def class_grid(model: nn.Module, x: Tensor, class_names: Sequence[str],
               row_labels: Sequence[str], ranks: Sequence[int] = (1, 2, 3, 20),
               method: str = "Grad-CAM") -> Any:
    """The map of the k-th most likely class, for each k in ``ranks``: one row per image,
    each panel titled with the class, its probability and the correlation r of its map
    with the first rank's map. One CAM call for all images and ranks."""
    t, p = ranked_targets(model, x, ranks)  # (R, B)
    r_n, b = t.shape
    maps = cam_maps(model, x.repeat(r_n, 1, 1, 1), t.flatten(), method).view(r_n, b,
                                                                             *x.shape[-2:])
    r = [correlation(maps[0], maps[k]) for k in range(r_n)]
    titles = [[f"{class_names[int(t[k, i])]}\np={float(p[k, i]):.2f}"
               + ("" if k == 0 else f", r={float(r[k][i]):.2f}") for k in range(r_n)]
              for i in range(b)]
    cols = {f"{_ordinal(k)} class": maps[j] for j, k in enumerate(ranks)}
    fig = overlay_grid(x, cols, row_labels, cell_titles=titles, cell=1.5)
    fig.suptitle(f"{method}: classes by rank (r: correlation with the map of the "
                 f"{_ordinal(ranks[0])})", fontsize=10)
    return fig


def class_shift(model: nn.Module, x: Tensor, ranks: Sequence[int] = SHIFT_RANKS,
                method: str = "Grad-CAM", layer: nn.Module | None = None) -> Any:
    """How the map changes with the class: for each image and each k in ``ranks``, the
    correlation r of the map of the k-th most likely class with the map of the most likely
    one (NaN where the k-th map is empty: no positive evidence anywhere), whether it is
    empty, and its probability p. One CAM call on all images and ranks. A long DataFrame
    with columns image, rank, r, empty, p."""
    import pandas as pd

    ranks = [1, *ranks]
    t, p = ranked_targets(model, x, ranks)
    r_n, b = t.shape
    maps = cam_maps(model, x.repeat(r_n, 1, 1, 1), t.flatten(), method, layer,
                    normalize=False).view(r_n, b, -1)
    r = correlation(maps[:1].expand_as(maps[1:]).flatten(0, 1), maps[1:].flatten(0, 1))
    empty = is_empty(maps[1:].flatten(0, 1))
    return pd.DataFrame({"image": np.tile(np.arange(b), r_n - 1),
                         "rank": np.repeat(ranks[1:], b), "r": r.cpu().numpy(),
                         "empty": empty.cpu().numpy(), "p": p[1:].flatten().cpu().numpy()})


def shift_summary(shift: Any, moved: float = 0.5) -> Any:
    """Per rank: median r, the share of images whose map moved (r < ``moved``, empty maps
    not counted), the share of empty maps (percent) and the median probability."""
    g = shift.groupby("rank")
    return g.agg(median_r=("r", "median"), moved=("r", lambda r: 100 * (r < moved).mean()),
                 empty=("empty", lambda e: 100 * e.mean()), median_p=("p", "median"))


def class_shift_figure(shifts: Mapping[str, Any], moved: float = 0.5) -> Any:
    """Left: median correlation of the k-th class's map with the top class's map (band:
    the middle half of the images) against the rank k; right: the share of maps that moved
    (r < ``moved``) and of empty maps. One line per model (its colour); ``shifts`` are
    :func:`class_shift` tables by model name. A Figure with 2 axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.4, 3.3), layout="constrained")
    ax_r, ax_m = fig.subplots(1, 2)
    for name, shift in shifts.items():
        c = style.color(name)
        g = shift.groupby("rank")["r"]
        ranks = np.asarray(sorted(shift["rank"].unique()))
        ax_r.fill_between(ranks, g.quantile(0.25).to_numpy(), g.quantile(0.75).to_numpy(),
                          color=c, alpha=0.2, linewidth=0)
        ax_r.plot(ranks, g.median().to_numpy(), "o-", color=c, label=name)
        s = shift_summary(shift, moved)
        ax_m.plot(ranks, s["moved"].to_numpy(), "o-", color=c, label=f"{name}: moved")
        ax_m.plot(ranks, s["empty"].to_numpy(), "s--", color=c, label=f"{name}: empty")
    for ax in (ax_r, ax_m):
        ax.set_xscale("log")
        ax.set_xticks(ranks, [str(k) for k in ranks])
        ax.minorticks_off()
        ax.set_xlabel("rank k of the class asked for")
    ax_r.axhline(0, color=style.PALETTE["grey"], linewidth=0.8)
    ax_r.set_ylim(-1, 1)
    ax_r.set_ylabel("r with the top class's map")
    ax_r.set_title("similarity to the top class's map", fontsize=10)
    ax_r.legend(loc="lower left")
    ax_m.set_ylim(0, 100)
    ax_m.set_ylabel("% of images")
    ax_m.set_title(f"maps that moved (r < {moved}) or are empty", fontsize=10)
    ax_m.legend(loc="upper left", fontsize=8)
    return fig


def rank_one_share(model: nn.Module, x: Tensor, layer: nn.Module | None = None) -> Tensor:
    """Per image, the share of the energy of ``layer``'s activations A (K channels x h w
    positions; default the CAM layer) in their best rank-one approximation a s^T: one
    spatial pattern s, scaled per channel. 1 = every channel shows the same pattern. (B,)."""
    from ..models import cam_layer

    layer = cam_layer(model) if layer is None else layer
    out: dict[str, Tensor] = {}
    hook = layer.register_forward_hook(lambda m, i, o: out.update(a=o.detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        hook.remove()
    s = torch.linalg.svdvals(out["a"].flatten(2).double())  # (B, min(K, h w))
    return (s[:, 0] ** 2 / (s ** 2).sum(1).clamp_min(1e-300)).float()


# --------------------------------------------------------------------------------------------
# Faithfulness
# --------------------------------------------------------------------------------------------


def faithfulness(models: Mapping[str, nn.Module], x: Tensor, y: Tensor,
                 method: str = "Grad-CAM") -> Any:
    """Average Drop, Average Gain and Average Increase (percent) of ``method``'s maps for
    the true classes, per model: a DataFrame, one row per model."""
    import pandas as pd

    from ..metrics import confidence_scores

    rows = {}
    for kind, model in models.items():
        ad, ag, ai = confidence_scores(model, x, cam_maps(model, x, y, method,
                                                          normalize=False), y)
        rows[kind] = {"AD (lower is better)": float(ad.mean()),
                      "AG (higher)": float(ag.mean()), "AI (higher)": float(ai.mean())}
    return pd.DataFrame(rows).T
