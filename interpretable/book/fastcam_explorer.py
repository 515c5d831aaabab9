"""The static explorer of the chapter "FastCAM and LOVI" (book/04_fastcam.ipynb).

For a handful of test images, :func:`precompute` computes every picture the explorer offers:
image x map x channel statistic x layer-map normalization, where the map is one of the
per-layer maps, their combination, the LOVI picture of the per-layer maps, or FastCAM
(combined saliency times Grad-CAM) for the true class. All of them depend on the statistic
(it makes the per-layer maps) and on the normalization (it scales each per-layer map before
the average, LOVI and the product), so every control changes every picture. The package's
own calls, batched over the images: one :func:`~interpretable.attribution.fastcam.saliency`
and one :class:`~interpretable.attribution.fastcam.FastCAM` call per (statistic,
normalization), then one :func:`~interpretable.viz.heatmap` and one
:func:`~interpretable.viz.lovi` call for all pictures. The result is an
:class:`~interpretable.book.static_explorer.ExplorerData` for
:class:`~interpretable.book.static_explorer.Explorer`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .static_explorer import ExplorerData, Legend, heat_legend, pixels

__all__ = ["CONTROLS", "STATISTICS", "NORMS", "NORM_NAMES", "lovi_legend", "precompute"]

#: the controls, in the order of the picture array's axes
CONTROLS = ("image", "map", "statistic", "normalization")
#: the channel statistics the chapter compares (keys of ``smoe.STATISTICS``)
STATISTICS = ("smoe", "entropy", "std", "mean")
#: the layer-map normalizations the chapter compares (``smoe.NORMS``)
NORMS = ("gamma", "gaussian", "range")
#: display names of the normalizations
NORM_NAMES = {"gamma": "Gamma CDF", "gaussian": "Gaussian CDF", "range": "min-max"}
#: the note under a LOVI picture
LOVI_NOTE = ("LOVI: hue = the depth that responds (key: earliest layer at the top), "
             "pale = all layers alike, dark = weak")


def lovi_legend(layer_names: Sequence[str], cell: int = 25, width: int = 8) -> Legend:
    """LOVI's colour key as a strip: the colour of each layer alone (``fastcam.lovi_key``),
    earliest at the top, ``cell`` pixels tall each."""
    from .fastcam import lovi_key

    n = len(layer_names)
    if n < 2:
        raise ValueError(f"LOVI's key needs at least two layers, got {n}")
    key = pixels(lovi_key(n)[:n])  # (L, 3): the layers alone, without "all alike"
    strip = np.repeat(np.repeat(key[:, None], cell, axis=0), width, axis=1)
    return Legend(strip, top=f"{layer_names[0]} (earliest)",
                  bottom=f"{layer_names[-1]} (deepest)", note=LOVI_NOTE)


def _check(x: Tensor, y: Tensor, statistics: Sequence[str], norms: Sequence[str]) -> None:
    from ..attribution.smoe import NORMS as ALL_NORMS
    from ..attribution.smoe import STATISTICS as ALL_STATISTICS
    from ..attribution.smoe import check_choice

    if x.dim() != 4 or y.shape != (len(x),):
        raise ValueError(f"x must be (B, 3, H, W) and y (B,), got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    if not statistics or not norms:
        raise ValueError("statistics and norms must each name at least one choice")
    for s in statistics:
        check_choice(s, "statistic", ALL_STATISTICS)
    for n in norms:
        check_choice(n, "norm", ALL_NORMS)


def precompute(model: nn.Module, x: Tensor, y: Tensor, class_names: Sequence[str], *,
               statistics: Sequence[str] = STATISTICS, norms: Sequence[str] = NORMS,
               image_names: Sequence[str] | None = None) -> ExplorerData:
    """Every picture of the FastCAM explorer, for images ``x`` (B, 3, H, W) with labels
    ``y`` (B,) (B >= 2: the image control needs a second option).

    The maps (control ``map``, V = L + 3 options for the L layers of
    :func:`interpretable.models.scale_layers`): each layer's normalized map (B, L, H, W),
    the combined map (B, H, W) (both from ``saliency``), LOVI of the per-layer maps, and
    FastCAM (``FastCAM(...)(x, y)``, B x H x W) for the true class. The heat maps are drawn
    in the book's colormap, each min-max scaled to [0, 1] (as ``show_grid`` draws them);
    LOVI in its own colours, with its key.

    Args:
        model: the network (eval mode).
        class_names: names of the classes (captions, and the images' names by default).
        statistics: channel statistics (keys of ``smoe.STATISTICS``), the ``statistic``
            control; norms: per-layer normalizations (``smoe.NORMS``), the
            ``normalization`` control.
        image_names: B names for the image control (default: the true classes' names).

    Returns:
        :class:`ExplorerData` with controls :data:`CONTROLS` and pictures uint8
        (B, V, S, N, H, W, 3) for S statistics and N normalizations; captions (B, V); the
        first setting is the combined map.
    """
    from ..attribution.fastcam import FastCAM, saliency
    from ..data import denormalize
    from ..models import layer_names, scale_layers
    from ..viz import heatmap, lovi
    from .cams import layer_labels
    from .explorer import class_targets
    from .fastcam import STAT_NAMES

    _check(x, y, statistics, norms)
    start = time.perf_counter()
    labels = list(layer_labels(model, x[:1]))
    short = layer_names(model, scale_layers(model))
    n_l, size = len(labels), tuple(x.shape[-2:])
    heat, per_layers = [], []  # per (statistic, norm): (B, L + 2, H, W) and (B, L, H, W)
    for s in statistics:
        for n in norms:
            combined, per_layer = saliency(model, x, statistic=s, norm=n)
            with FastCAM(model, statistic=s, norm=n) as fastcam:
                product = fastcam(x, y)  # (B, H, W), the true class
            heat.append(torch.cat([per_layer, combined[:, None], product[:, None]], 1))
            per_layers.append(per_layer)
    b, k = len(x), len(heat)
    rgb_heat = heatmap(torch.stack(heat).detach())  # (K, B, L + 2, H, W, 3), one lookup
    rgb_lovi = lovi(torch.cat(per_layers).detach()).view(k, b, 1, *size, 3)
    rgb = torch.cat([rgb_heat[:, :, :n_l + 1], rgb_lovi, rgb_heat[:, :, n_l + 1:]], 2)
    views = [*labels, "combined (mean of the layers)", "LOVI (the layers by depth)",
             "FastCAM (x Grad-CAM, true class)"]
    rgb = rgb.view(len(statistics), len(norms), b, len(views), *size, 3)
    pictures = pixels(rgb.permute(2, 3, 0, 1, 4, 5, 6))  # (B, V, S, N, H, W, 3)

    t, p = class_targets(model, x, y, ("true class",))  # (1, B)
    captions = np.empty((b, len(views)), dtype=object)
    for i in range(b):
        name, prob = class_names[int(t[0, i])], float(p[0, i])
        captions[i] = f"class-agnostic (true class: {name}, p = {prob:.2f})"
        captions[i, -1] = f"for the true class: {name} (p = {prob:.2f})"
    names = list(image_names) if image_names else [class_names[int(c)] for c in y]
    options = {"image": names, "map": views,
               "statistic": [STAT_NAMES.get(s, s) for s in statistics],
               "normalization": [NORM_NAMES.get(n, n) for n in norms]}
    legend_index = np.zeros(len(views), dtype=int)
    legend_index[n_l + 1] = 1  # the LOVI picture shows LOVI's key
    return ExplorerData(
        options, pictures, pixels(denormalize(x).permute(0, 2, 3, 1)), captions,
        time.perf_counter() - start, controls=CONTROLS, caption_axes=("image", "map"),
        start={"map": n_l}, slider="image", legends=(heat_legend(), lovi_legend(short)),
        legend_axes=("map",), legend_index=legend_index)
