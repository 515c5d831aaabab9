"""How a class activation map changes with the class it explains: the correlation of the
maps of lower-ranked classes with the top class's map, and why a 4x4 CAM layer barely lets it
move (its activations are nearly rank one). Used by the chapter on class activation maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..mapstats import correlation, is_empty
from . import style
from .cams import SHIFT_RANKS, cam_maps, ranked_targets

__all__ = ["class_shift", "shift_summary", "class_shift_figure", "rank_one_share"]

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
                         "rank": np.repeat(ranks[1:], b), "r": r.double().cpu().numpy(),
                         "empty": empty.cpu().numpy(),
                         "p": p[1:].flatten().double().cpu().numpy()})


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
