"""One look for every figure of the book: colours that keep their meaning from chapter to
chapter, a perceptually uniform colormap for heat maps, readable fonts.

Colours are the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies). A model or a method has one colour everywhere: :func:`color`.
"""

from __future__ import annotations

from typing import Any

from ..attribution import METHODS
from ..viz import HEAT_CMAP

__all__ = ["HEAT_CMAP", "DIVERGING_CMAP", "PALETTE", "MODEL_COLORS", "METHOD_COLORS",
           "color", "use", "colorbar"]

#: signed effects (paired differences): blue = better, red = worse, white = no difference
DIVERGING_CMAP = "RdBu"

PALETTE = {"black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
           "yellow": "#F0E442", "blue": "#0072B2", "red": "#D55E00", "purple": "#CC79A7",
           "grey": "#888888"}

#: the reference runs and the study's variants (a name contains one of these keys)
MODEL_COLORS = {"baseline": PALETTE["blue"], "control": PALETTE["blue"],
                "regularized": PALETTE["orange"], "paper": PALETTE["orange"],
                "aligned": PALETTE["red"], "fine-tuned": PALETTE["purple"],
                "lambda*": PALETTE["red"],
                "scratch": PALETTE["green"], "seed": PALETTE["grey"],
                "random": PALETTE["grey"], "unmodified": PALETTE["black"]}
#: the attribution methods, by display name (their colours live in the registry)
METHOD_COLORS = {m.name: m.color for m in METHODS.values()}


def color(name: str) -> str:
    """The colour of a method (display name) or a model/run (a name containing one of the
    keys of :data:`MODEL_COLORS`, e.g. ``"resnet18_regularized"``); grey otherwise."""
    if name in METHOD_COLORS:
        return METHOD_COLORS[name]
    low = name.lower()
    for key, value in MODEL_COLORS.items():
        if key in low:
            return value
    return PALETTE["grey"]


#: matplotlib settings: fonts of at least 9 pt at the size the page shows the figure
RC: dict[str, Any] = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10,
                      "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9,
                      "figure.titlesize": 11, "figure.dpi": 100, "savefig.dpi": 100,
                      "image.cmap": HEAT_CMAP, "axes.spines.top": False,
                      "axes.spines.right": False, "legend.frameon": False}


def use() -> None:
    """Apply :data:`RC` to matplotlib (the chapters' setup calls it)."""
    import matplotlib

    matplotlib.rcParams.update(RC)


def colorbar(fig: Any, mappable_or_axes: Any, label: str = "relative importance",
             cmap: str = HEAT_CMAP, vmin: float = 0.0, vmax: float = 1.0, **kwargs: Any) -> Any:
    """A colourbar for ``fig``: given an image (a mappable), for it; given axes, one shared
    bar for maps drawn in ``cmap`` over [vmin, vmax] (e.g. overlays built as RGB)."""
    import matplotlib as mpl

    if hasattr(mappable_or_axes, "get_cmap"):
        return fig.colorbar(mappable_or_axes, label=label, **kwargs)
    sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(vmin, vmax),
                               cmap=mpl.colormaps[cmap])
    return fig.colorbar(sm, ax=mappable_or_axes, label=label, **kwargs)
