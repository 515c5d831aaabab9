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

from ..attribution import CAM_METHODS, METHODS, build_method
from ..mapstats import correlation, is_empty
from . import style

__all__ = ["METHOD_NAMES", "SHIFT_RANKS", "layer_labels", "cam_maps", "gallery", "sample",
           "overlay_grid", "method_grid", "layer_grid", "identity_gaps", "agreement",
           "agreement_figure", "empty_shares", "ranked_targets", "class_grid", "class_shift",
           "shift_summary", "class_shift_figure", "rank_one_share", "model_grid",
           "faithfulness", "faithfulness_verdict", "timed"]

#: the five class activation maps of the chapter, by display name
METHOD_NAMES = tuple(METHODS[k].name for k in CAM_METHODS if k != "fastcam")
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
    """The first ``n`` images (in the dataset's order) of a seeded one-per-class sample of
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
    fig = Figure(figsize=(cell * (len(names) + 1) + 0.9, (cell + extra) * b + 0.5),
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
            for side in ax.spines.values():  # a frame in the column's colour, or none
                side.set(visible=bool(colors[j]), color=colors[j] or "none", linewidth=2.5)
        if cell_titles is None:
            axes[0, j + 1].set_title(name, fontsize=9)
    for i in range(b):
        axes[i, 0].imshow(pics[i], interpolation="nearest")
        axes[i, 0].set_ylabel(row_labels[i], fontsize=9)
        axes[i, 0].spines[:].set_visible(False)
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


def layer_grid(x: Tensor, maps: Mapping[str, Tensor], method: str,
               row_labels: Sequence[str]) -> Any:
    """:func:`overlay_grid` of one method's maps at several layers (``{layer label: maps}``,
    labels as :func:`layer_labels` makes them), framed in the method's colour."""
    cols = {f"{method}\n" + name.replace(" (", "\n("): v for name, v in maps.items()}
    return overlay_grid(x, cols, row_labels, colors=[style.color(method)] * len(cols))


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
    (from 0.5, or lower if a value is lower, to 1) and the method names in their colours.
    Returns a Figure with 2 axes."""
    from matplotlib.figure import Figure

    names = list(table.columns)
    values = table.to_numpy(dtype=float)
    low = np.nanmin(values) if np.isfinite(values).any() else 0.0
    vmin = min(0.5, np.floor(low * 10) / 10)  # the scale starts at 0.5 or below
    fig = Figure(figsize=(5.2, 4.2), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(values, vmin=vmin, vmax=1, cmap=style.HEAT_CMAP)
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax.set_yticks(range(len(names)), table.index)
    for lab in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
        lab.set_color(style.color(lab.get_text()))
        lab.set_fontweight("bold")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            ax.text(j, i, "-" if not np.isfinite(v) else f"{v:.2f}", ha="center",
                    va="center", fontsize=9,
                    color="white" if v < (1 + vmin) / 2 else "black")
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
    titles = [[f"{_ordinal(ranks[k])}: {class_names[int(t[k, i])]}\np={float(p[k, i]):.2f}"
               + ("" if k == 0 else f", r={float(r[k][i]):.2f}") for k in range(r_n)]
              for i in range(b)]
    cols = {f"{_ordinal(k)} class": maps[j] for j, k in enumerate(ranks)}
    fig = overlay_grid(x, cols, row_labels, cell_titles=titles, cell=1.5)
    fig.suptitle(f"{method}: classes by rank (r: correlation with the map of the "
                 f"{_ordinal(ranks[0])})", fontsize=10)
    return fig


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


def faithfulness_verdict(table: Any, images: int) -> str:
    """One sentence saying which model each column of :func:`faithfulness` favours (AD:
    lower is better, AG and AI: higher), on ``images`` images; "equal" within 0.005."""
    parts = []
    for col in table.columns:
        values = table[col].astype(float)
        best = values.idxmin() if col.startswith("AD") else values.idxmax()
        equal = values.max() - values.min() < 0.005
        parts.append(f"{col.split()[0]} {'equal' if equal else best}")
    return f"more faithful on these {images} images by " + ", ".join(parts)


def timed(fn: Any, *args: Any, repeat: int = 2) -> float:
    """Seconds of the fastest of ``repeat`` calls ``fn(*args)`` (the first call pays one-off
    costs: memory, kernel selection)."""
    import time

    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
    return best


# the class-shift analysis lives beside this module; the chapter reads it from here too
from .class_shift import (  # noqa: E402
    class_shift,
    class_shift_figure,
    rank_one_share,
    shift_summary,
)
