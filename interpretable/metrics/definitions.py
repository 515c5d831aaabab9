"""What the metrics are, without computing anything (no torch import): the one metric table,
the columns of a result table, and the insertion/deletion conventions (METHODS.md section 5).

:data:`METRICS` is the only list of the metrics in the package: every table, figure, summary
and command reads the column names, paper names and better directions from it.
:data:`CONVENTIONS` names the two sets of insertion/deletion conventions: ``"ours"`` (the
Decision of METHODS.md section 5, the default everywhere) and ``"authors"`` (the paper
authors' public metric code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "Metric",
    "METRICS",
    "metric",
    "COLUMNS",
    "SUBSTRATES",
    "Conventions",
    "CONVENTIONS",
    "resolve_conventions",
    "conventions_name",
]


@dataclass(frozen=True)
class Metric:
    """One metric of METHODS.md section 5.

    ``column``: its per-image column in :func:`~interpretable.metrics.evaluate`'s table
    (``"ad"``); ``name``: the paper's short name, used as the column of every summary table
    and figure (``"AD"``); ``better``: ``"lower"`` or ``"higher"``; ``title``: the long name.
    """

    column: str
    name: str
    better: str
    title: str

    @property
    def sign(self) -> int:
        """+1 if higher is better, -1 if lower is better (``sign * difference > 0``: better)."""
        return 1 if self.better == "higher" else -1


#: The metrics, in the paper's column order ([P1] Table 1).
METRICS: tuple[Metric, ...] = (
    Metric("ad", "AD", "lower", "Average Drop"),
    Metric("ag", "AG", "higher", "Average Gain"),
    Metric("ai", "AI", "higher", "Average Increase"),
    Metric("insertion", "Ins", "higher", "Insertion"),
    Metric("deletion", "Del", "lower", "Deletion"),
)

#: Columns of the per-image result table, in order. ``Y`` = p_c(x), ``O`` = p_c(x masked by
#: the map); then one column per metric of :data:`METRICS` (percent).
COLUMNS: tuple[str, ...] = ("index", "label", "predicted", "target", "method", "Y", "O",
                            *(m.column for m in METRICS))


def metric(key: str) -> Metric:
    """The :class:`Metric` with column or paper name ``key`` (``"ad"`` or ``"AD"``)."""
    for m in METRICS:
        if key in (m.column, m.name):
            return m
    raise KeyError(f"unknown metric {key!r}; the metrics are "
                   f"{', '.join(m.column for m in METRICS)} ({', '.join(m.name for m in METRICS)})")


# ------------------------------------------------------------------------ conventions

#: Deletion substrates: what a deleted pixel becomes.
SUBSTRATES = ("black", "mean", "blur")


@dataclass(frozen=True)
class Conventions:
    """How the insertion and deletion curves are built (METHODS.md section 5).

    ``substrate``: what deletion sets a pixel to: ``"black"`` (pixel value 0, our Decision),
    ``"mean"`` (zeros of the normalized tensor, i.e. the data set's mean colour in pixel
    space) or ``"blur"`` (the pixel of the insertion blur below).
    ``blur_kernel``, ``blur_sigma``: the Gaussian blur (odd kernel size, sigma in pixels,
    reflect padding, pixel space) insertion starts from.
    ``step_rows``: pixels per curve step in rows' worth, ``step = step_rows * W`` (an explicit
    ``step`` in pixels, where a function accepts one, overrides it).

    AD, AG and AI do not depend on these: their masking is always pixel-space multiplication.
    """

    substrate: str = "black"
    blur_kernel: int = 11
    blur_sigma: float = 5.0
    step_rows: int = 1

    def __post_init__(self):
        if self.substrate not in SUBSTRATES:
            raise ValueError(f"substrate must be one of {', '.join(SUBSTRATES)}, got "
                             f"{self.substrate!r}")
        k = self.blur_kernel
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ValueError(f"blur_kernel must be an odd positive int, got {k!r}")
        s = self.blur_sigma
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) \
                or s <= 0:
            raise ValueError(f"blur_sigma must be a positive number, got {s!r}")
        object.__setattr__(self, "blur_sigma", float(s))
        r = self.step_rows
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"step_rows must be a positive int, got {r!r}")

    def step(self, width: int) -> int:
        """Pixels per step for images ``width`` pixels wide: ``step_rows * width``."""
        return self.step_rows * width


#: The named sets. ``"ours"``: METHODS.md section 5's Decision (black deletion, blur 11 /
#: sigma 5, one row per step). ``"authors"``: the first author's later public metric code
#: (``ftorres11/CA_Stream``, adapted from RISE): deletion to zeros of the normalized tensor
#: (the mean colour), a 5x5 blur with sigma 5, and ``step = imsize * 8`` pixels (8 rows: 256
#: pixels, 4 steps, on 32x32 CIFAR images).
CONVENTIONS: dict[str, Conventions] = {
    "ours": Conventions(),
    "authors": Conventions(substrate="mean", blur_kernel=5, blur_sigma=5.0, step_rows=8),
}


def resolve_conventions(conventions: str | Conventions = "ours", *,
                        substrate: str | None = None, blur_kernel: int | None = None,
                        blur_sigma: float | None = None) -> Conventions:
    """A :class:`Conventions` from a name of :data:`CONVENTIONS` (or an instance), with any of
    ``substrate``, ``blur_kernel``, ``blur_sigma`` that is not None replacing its value."""
    if isinstance(conventions, Conventions):
        base = conventions
    elif isinstance(conventions, str) and conventions in CONVENTIONS:
        base = CONVENTIONS[conventions]
    else:
        raise ValueError(f"conventions must be one of {', '.join(map(repr, CONVENTIONS))} or a "
                         f"Conventions, got {conventions!r}")
    changes = {k: v for k, v in (("substrate", substrate), ("blur_kernel", blur_kernel),
                                 ("blur_sigma", blur_sigma)) if v is not None}
    if not changes:
        return base
    return Conventions(**{"substrate": base.substrate, "blur_kernel": base.blur_kernel,
                          "blur_sigma": base.blur_sigma, "step_rows": base.step_rows,
                          **changes})


def conventions_name(conventions: Conventions, step: int, width: int) -> str:
    """The name of :data:`CONVENTIONS` that ``conventions`` with ``step`` pixels per step on
    images ``width`` wide amounts to, else ``"custom"``."""
    got = (conventions.substrate, conventions.blur_kernel, conventions.blur_sigma, step)
    for name, c in CONVENTIONS.items():
        if got == (c.substrate, c.blur_kernel, c.blur_sigma, c.step(width)):
            return name
    return "custom"
