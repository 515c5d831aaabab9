"""ROAR and KAR for the FastCAM chapter: the images a cell retrains on
(:func:`modified_figure`) and the retrained test top-1 against the fraction of pixels removed
(ROAR) or kept (KAR), per method, from the committed cell summaries
(:func:`interpretable.roar.table`) alone (:func:`roar_figure`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import style
from .training import _figure

__all__ = ["MAP_NAMES", "modified_figure", "roar_figure", "side_by_side"]

#: The chapter's name of each ROAR / KAR method's map.
MAP_NAMES = {"random": "random map", "smoe": "SMOE saliency", "gradcam": "Grad-CAM",
             "fastcam": "FastCAM"}

_TITLES = {"roar": "ROAR: the top fraction removed\n(lower = the map found more)",
           "kar": "KAR: only the top fraction kept\n(higher = the map found more)"}


def _label(method: str) -> str:
    from ..attribution import METHODS

    return METHODS[method].name if method in METHODS else method


def modified_figure(image: np.ndarray, ranks: Mapping[str, np.ndarray], fill: Any,
                    fractions: Sequence[float] = (0.1, 0.5, 0.9)) -> Any:
    """What ROAR and KAR retrain on: one image with its top-t pixels replaced (ROAR) and with
    only them kept (KAR), one row per map.

    Args:
        image: (H, W, 3) uint8, pixel space.
        ranks: ``{label: (H*W,) pixel ranks}`` of the image, 0 = most salient (one row of a
            rank file, or :func:`interpretable.roar.pixel_ranks`).
        fill: the replacement colour, 3 values in uint8 pixel space
            (:func:`interpretable.roar.train_mean` of the training set).
        fractions: the fractions t, one column per mode and fraction.

    The images are made by :func:`interpretable.roar.modified`, the function the cells use.
    Returns a ``matplotlib.figure.Figure`` (rows: maps; columns: ROAR at each t, then KAR).
    """
    from ..roar import modified
    from ..roar.images import ImageSet

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if not ranks:
        raise ValueError("ranks must name at least one map")
    one = ImageSet(image[None], np.zeros(1, np.int64))
    columns = [(mode, t) for mode in ("roar", "kar") for t in fractions]
    fig = _figure(1.2 * len(columns) + 1.2, 1.25 * len(ranks) + 0.5)
    axes = fig.subplots(len(ranks), len(columns), squeeze=False)
    for row, (label, r) in zip(axes, ranks.items(), strict=True):
        r = np.asarray(r).reshape(1, -1)
        for ax, (mode, t) in zip(row, columns, strict=True):
            ax.imshow(modified(one, r, t, mode, fill).images[0], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(label, rotation=0, ha="right", va="center")
    for ax, (mode, t) in zip(axes[0], columns, strict=True):
        ax.set_title(f"{mode.upper()}, t = {t:g}", fontsize="small")
    return fig


def _line_style(method: str) -> dict[str, Any]:
    """One method's line in :func:`roar_figure` and its legend: the book colour, solid; the
    seeded random map grey and dashed."""
    if method == "random":
        return {"marker": "o", "linestyle": "--", "color": style.PALETTE["grey"]}
    return {"marker": "o", "linestyle": "-", "color": style.color(_label(method))}


def roar_figure(rows: Sequence[Mapping[str, Any]],
                seeds: Sequence[float] = ()) -> Any:
    """Retrained test top-1 (%) against the fraction t, one panel per mode (ROAR, KAR).

    ``rows``: :func:`interpretable.roar.table` (finished cells: ``mode``, ``method``,
    ``fraction``, ``top1``). One line per method in its book colour, the seeded random map in
    grey and dashed; the ``unmodified`` retrain (original images) as a black line; ``seeds``:
    top-1 of further unmodified retrains (the pilot's seeds), drawn as a grey band from the
    lowest to the highest unmodified top-1, the spread training randomness alone gives.
    Returns a ``matplotlib.figure.Figure``.
    """
    from matplotlib.lines import Line2D

    cells = [r for r in rows if r["mode"] in _TITLES]
    if not cells:
        raise ValueError("rows hold no finished ROAR or KAR cell")
    unmodified = [r["top1"] for r in rows if r["mode"] == "unmodified"]
    fig = _figure(9.5, 4.2)
    axes = fig.subplots(1, 2, sharey=True)
    methods = list(dict.fromkeys(r["method"] for r in cells))
    for ax, mode in zip(axes, _TITLES, strict=True):
        for method in methods:
            pts = sorted((r["fraction"], r["top1"]) for r in cells
                         if r["mode"] == mode and r["method"] == method)
            if not pts:
                continue
            t, top1 = np.array(pts).T
            ax.plot(t * 100, top1, **_line_style(method))
        if unmodified:
            ax.axhline(unmodified[0], color=style.color("unmodified"), linewidth=1)
            spread = [*unmodified, *seeds]
            if len(spread) > 1:
                ax.axhspan(min(spread), max(spread), color=style.PALETTE["grey"], alpha=0.2)
        ax.set_title(_TITLES[mode])
        ax.set_xlim(0, 100)  # the whole range, whichever fractions are finished
        ax.set_xlabel("fraction t of the pixels (%)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test top-1 of the retrained network (%)")
    handles = [Line2D([], [], **_line_style(m), label=MAP_NAMES.get(m, _label(m))
                      + (" (seeded)" if m == "random" else "")) for m in methods]
    if unmodified:
        handles.append(Line2D([], [], color=style.color("unmodified"),
                              label="unmodified images" + (", spread of seeds" if seeds else "")))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5))
    return fig


def side_by_side(faithfulness: Any, rows: Sequence[Mapping[str, Any]],
                 fractions: Sequence[float] | None = None) -> Any:
    """The two families of metrics for the same maps, one row per map.

    Args:
        faithfulness: :func:`interpretable.book.fastcam.faithfulness`'s DataFrame, indexed
            by the names of :data:`MAP_NAMES` (this network, its images masked or deleted).
        rows: :func:`interpretable.roar.table` (networks retrained on modified images).
        fractions: the fractions t to show (default: every one with a finished cell).

    Returns:
        a pandas DataFrame: AD, Insertion and Deletion of ``faithfulness``, then one column
        per mode and fraction, ``"ROAR t=0.5 ↓"`` / ``"KAR t=0.5 ↑"``: the retrained test
        top-1 (%), NaN for a cell not finished. Rows: the maps of :data:`MAP_NAMES` present
        in either input, in that order.
    """
    cells = {(r["mode"], r["method"], r["fraction"]): r["top1"] for r in rows
             if r["mode"] in _TITLES}
    if fractions is None:
        fractions = sorted({t for (_, _, t) in cells})
    maps = [m for m, n in MAP_NAMES.items()
            if n in faithfulness.index or any(k[1] == m for k in cells)]
    table = faithfulness.reindex([MAP_NAMES[m] for m in maps])[
        ["AD ↓", "Insertion ↑", "Deletion ↓"]].copy()
    for mode, arrow in (("roar", "↓"), ("kar", "↑")):
        for t in fractions:
            table[f"{mode.upper()} t={t:g} {arrow}"] = [
                cells.get((mode, m, t), np.nan) for m in maps]
    return table

