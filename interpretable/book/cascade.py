"""The randomization cascade of the gradients chapter: the maps of the trained network against
those of copies whose top blocks are re-initialized, compared by a signed cosine and by the
Spearman rank correlation of magnitudes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..attribution import METHODS, normalize_maps
from ..viz import show_grid
from . import style
from .gradients import (  # noqa: F401
    _SIGNED,
    MEASURES,
    _map_axes,
    _no_frames,
    method_color,
)

__all__ = ['cascade_similarity', 'cascade_figure', 'cascade_maps_figure']


def _maps(net: nn.Module, x: Tensor, y: Tensor, methods: Sequence[str]
          ) -> dict[str, tuple[Tensor | None, Tensor]]:
    """{method key: (signed map or None, magnitude map in [0, 1])}."""
    from .. import sanity

    out: dict[str, tuple[Tensor | None, Tensor]] = {}
    others = [k for k in methods if k not in _SIGNED]
    for k in methods:
        if k in _SIGNED:
            g = _SIGNED[k](net, x, y).detach()
            out[k] = (g, normalize_maps(g.abs().sum(1)))
    if others:
        by_name = sanity.explain(net, x, y, others)
        for k in others:
            out[k] = (None, by_name[METHODS[k].name])
    return out


def cascade_similarity(model: nn.Module, x: Tensor, y: Tensor,
                       methods: Sequence[str] = ("gradient", "guided"),
                       measures: Sequence[str] = ("cosine", "Spearman of |map|"),
                       steps: int | None = None, seed: int = 0, label: str = "") -> Any:
    """Cascading randomization (:func:`interpretable.sanity.cascade`) measured with several
    similarities: a long pandas DataFrame with one row per (step, method, measure).

    Columns: ``model`` (``label``), ``step`` (0 = trained, k = the top k blocks
    re-initialized), ``block`` ("trained" or the lowest block re-initialized), ``method``
    (display name), ``measure`` (a key of :data:`MEASURES`), ``value`` (mean over the images
    of the similarity to the trained model's map), ``sem`` (its standard error) and
    ``images``. ``methods``: keys of :data:`interpretable.attribution.METHODS`; the signed
    measures are NaN for methods without a sign (the CAMs). ``model`` is not modified.
    """
    import pandas as pd

    from .. import sanity

    for m in measures:
        if m not in MEASURES:
            raise ValueError(f"measures must be keys of MEASURES {list(MEASURES)}, got {m!r}")
    for k in methods:
        if k not in METHODS:
            raise ValueError(f"methods must be keys of METHODS {list(METHODS)}, got {k!r}")
    ref = _maps(model, x, y, methods)
    rows = []
    for step, (block, net) in enumerate(sanity.cascade(model, seed=seed, steps=steps)):
        now = ref if step == 0 else _maps(net, x, y, methods)
        for k in methods:
            for m in measures:
                kind, fn = MEASURES[m]
                i = 0 if kind == "signed" else 1
                if now[k][i] is None:
                    v = torch.full((len(x),), float("nan"))
                else:
                    v = fn(ref[k][i], now[k][i]).detach().float().cpu()
                rows.append({"model": label, "step": step,
                             "block": "trained" if block == "none" else block,
                             "method": METHODS[k].name, "measure": m,
                             "value": float(v.mean()),
                             "sem": float(v.std() / len(v) ** 0.5) if len(v) > 1 else np.nan,
                             "images": len(v)})
    return pd.DataFrame(rows)


_LINESTYLES = ("-", "--", ":", "-.")


def cascade_figure(table: Any, title: str | None = None):
    """The cascade of :func:`cascade_similarity` (one or several models concatenated): one
    panel per measure, similarity to the trained model's maps against the blocks
    re-initialized (top first); a line per method in its colour, a line style per model,
    shaded +-1 standard error. Rows with NaN values are left out."""
    from matplotlib.figure import Figure

    table = table.dropna(subset=["value"])
    measures = list(dict.fromkeys(table["measure"]))
    models = list(dict.fromkeys(table["model"]))
    ncols = 2 if len(measures) > 2 else len(measures)
    nrows = -(-len(measures) // ncols)
    fig = Figure(figsize=(min(9.5, 3.3 * ncols + 2.2), 2.9 * nrows + 0.6),
                 layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False, sharey=True, sharex=True)
    axes = list(grid.flat)
    for ax in axes[len(measures):]:
        ax.set_visible(False)
    for ax, meas in zip(axes, measures, strict=False):
        part = table[table["measure"] == meas]
        for (model, method), g in part.groupby(["model", "method"], sort=False):
            g = g.sort_values("step")
            ls = _LINESTYLES[models.index(model) % len(_LINESTYLES)]
            name = f"{method}, {model}" if len(models) > 1 else method
            ax.plot(g["step"], g["value"], ls, marker="o", ms=3.5,
                    color=method_color(method), label=name)
            sem = g["sem"].fillna(0).to_numpy()
            ax.fill_between(g["step"], g["value"] - sem, g["value"] + sem,
                            color=method_color(method), alpha=0.15, lw=0)
        ticks = part.drop_duplicates("step").sort_values("step")
        ax.set_xticks(ticks["step"], ticks["block"], rotation=45, ha="right")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(meas)
    fig.supxlabel("weights re-initialized from the top down to this block", fontsize=10)
    fig.supylabel("similarity to the trained model's map", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center")
    if title:
        fig.suptitle(title)
    return fig


def cascade_maps_figure(model: nn.Module, x: Tensor, y: Tensor, steps: Sequence[int],
                        methods: Sequence[str] | None = None, seed: int = 0):
    """One image ``x`` (1, 3, H, W), target ``y`` (1,), followed through the cascade: a row
    per step k of ``steps`` (the top k blocks re-initialized, as
    :func:`interpretable.sanity.randomized`; 0 = trained), a column per method (default
    :data:`interpretable.sanity.SANITY_METHODS`), maps in [0, 1] as heat maps with one
    colourbar."""
    from .. import sanity

    names = ["trained"] + [b for b, _ in sanity.blocks(model)][::-1]
    kw = {} if methods is None else {"methods": methods}
    rows = [sanity.explain(sanity.randomized(model, k, seed=seed), x, y, **kw)
            for k in steps]
    panel = {m: torch.cat([r[m] for r in rows]) for m in rows[0]}
    labels = ["trained" if k == 0 else f"down to\n{names[k]}" for k in steps]
    fig = show_grid(x.expand(len(steps), -1, -1, -1), panel, overlay_maps=False,
                    row_labels=labels, cell=1.3, colorbar=False)
    _no_frames(fig)
    style.colorbar(fig, _map_axes(fig), shrink=0.6, label="map scaled to [0, 1] per image")
    return fig
