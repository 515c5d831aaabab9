"""Figures and tables of the book's Training chapter (``book/05_training.ipynb``).

Two of them are meant for other pages too and are fast:

- :func:`grid_of_dots_figure` ``(models, x, y=None, labels=None)``: the input-gradient
  magnitude of each model on a few images, as heat maps with a colourbar; on the network
  trained from scratch at lambda* it is a regular grid of dots (two gradient passes per
  model and image, about a second on a CPU for four images and two small models).
- :func:`lambda_curve_figure` ``(root=None)``: top-1 and cos(g, g~) against lambda for the
  committed fine-tuning sweep of both architectures, from the ``summary.json`` files alone
  (no model is loaded).

The others draw the chapter's training curves, histograms and live runs, and measure the
per-image statistics of input gradients (cosine with the guided gradient, roughness, lattice
concentration) with the white-noise yardstick measured the same way. Every figure is a
``matplotlib.figure.Figure`` built without pyplot (nothing is shown or kept open; in a
notebook it renders as the cell's value).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from torch import Tensor, nn

from .. import mapstats
from ..attribution import gradient, guided_backprop
from ..stats import mean_interval
from . import style

__all__ = ["ARCH_NAMES", "COLLAPSE", "run_color", "run_linestyle", "training_curves_figure",
           "gradient_statistics", "white_noise_statistics", "interval_table",
           "cosine_histogram_figure", "grid_of_dots_figure", "live_curves_figure"]

#: display names of the architectures
ARCH_NAMES = {"resnet18": "ResNet-18", "mobilenet_v2": "MobileNet-V2"}
#: a sweep run has collapsed when its top-1 is below this fraction of its control's
COLLAPSE = 0.5
#: statistics of :func:`gradient_statistics`, in table order
STATS = ("cos", "roughness", "lattice")


def run_color(label: str) -> str:
    """The colour of a run: :func:`interpretable.book.style.color`, except that a network
    *fine-tuned* at lambda* (a label containing "fine-tuned") is purple, so that it stays
    apart from the network trained from scratch at lambda* (red, "aligned")."""
    if "fine-tuned" in label.lower():
        return style.PALETTE["purple"]
    return style.color(label)


def run_linestyle(name: str) -> str:
    """Solid for ResNet-18 runs, dashed for MobileNet-V2 runs (by the name)."""
    return "--" if "mobilenet" in name.lower() else "-"


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _values(log: Sequence[Mapping[str, Any]], key: str, transform=None) -> list[float]:
    out = []
    for r in log:
        v = r.get(key)
        out.append(np.nan if v is None else (transform(v) if transform else v))
    return out


# --------------------------------------------------------------------------------------------
# The reference runs
# --------------------------------------------------------------------------------------------


def training_curves_figure(logs: Mapping[str, Sequence[Mapping[str, Any]]]) -> Any:
    """The training logs of reference runs, four panels against the epoch.

    ``logs``: ``{run name: [one dict per epoch, as in log.jsonl]}``; the keys used are
    ``epoch``, ``test_acc``, ``train_ce``, ``test_align`` (1 - mean cos of the test images)
    and ``lr``. Panels: test top-1, training cross-entropy, cos(g, g~) on test images
    (symlog: linear below 0.01) and the learning rate. Colour by kind of run
    (:func:`run_color`), line style by architecture; one legend below the panels.
    """
    panels = (("test_acc", "test top-1 (%)", None),
              ("train_ce", "training cross-entropy", None),
              ("test_align", "cos(g, guided g), test images", lambda v: 1.0 - v),
              ("lr", "learning rate", None))
    fig = _figure(9.5, 5.6)
    axes = list(fig.subplots(2, 2, sharex=True).flat)
    for name, log in logs.items():
        epochs = _values(log, "epoch")
        for ax, (key, _, transform) in zip(axes, panels, strict=True):
            ax.plot(epochs, _values(log, key, transform), run_linestyle(name),
                    color=run_color(name), marker=".", label=name)
    for ax, (_, title, _) in zip(axes, panels, strict=True):
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[2].set_yscale("symlog", linthresh=0.01, linscale=0.5)
    for ax in axes[2:]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=3)
    return fig


# --------------------------------------------------------------------------------------------
# Per-image statistics of input gradients
# --------------------------------------------------------------------------------------------


def _map_stats(g: Tensor) -> dict[str, np.ndarray]:
    magnitude = g.abs().sum(1)
    return {"roughness": mapstats.roughness(magnitude).cpu().numpy(),
            "lattice": mapstats.lattice_concentration(magnitude).cpu().numpy()}


def gradient_statistics(models: Mapping[str, nn.Module], x: Tensor, y: Tensor | None = None,
                        batch: int = 100) -> dict[str, dict[str, np.ndarray]]:
    """Per-image statistics of each model's input gradient on the same images.

    ``x``: (B, 3, H, W) normalized images, ``y``: (B,) classes whose logit is differentiated
    (None: the predicted class). Returns ``{label: {"cos", "roughness", "lattice"}}``, each a
    (B,) array: the cosine of the gradient g with its guided gradient g~ (what 1 - L_R
    averages), and the roughness (:func:`interpretable.mapstats.roughness`) and lattice
    concentration (:func:`interpretable.mapstats.lattice_concentration`) of the magnitude
    map sum over channels of |g|, shape (B, H, W). Images go through in chunks of ``batch``.
    """
    out = {}
    for label, model in models.items():
        parts: dict[str, list[np.ndarray]] = {k: [] for k in STATS}
        for i in range(0, len(x), batch):
            xb = x[i:i + batch]
            yb = None if y is None else y[i:i + batch]
            g, gg = gradient(model, xb, yb), guided_backprop(model, xb, yb)
            parts["cos"].append(mapstats.cosine(g, gg).cpu().numpy())
            for k, v in _map_stats(g).items():
                parts[k].append(v)
        out[label] = {k: np.concatenate(v) for k, v in parts.items()}
    return out


def white_noise_statistics(shape: Sequence[int], seed: int = 0) -> dict[str, np.ndarray]:
    """The yardstick of :func:`gradient_statistics`: Gaussian white noise of ``shape``
    (B, C, H, W) in place of the gradient, measured the same way.

    Returns ``{"roughness", "lattice"}`` of the magnitude maps sum over channels of |n|
    (what the chapter measures on gradients) and ``"roughness, signed"`` of the signed noise
    itself (about sqrt 2: a different quantity, not comparable with magnitude maps).
    """
    noise = torch.randn(tuple(shape), generator=torch.Generator().manual_seed(seed))
    out = _map_stats(noise)
    out["roughness, signed"] = mapstats.roughness(noise).numpy()
    return out


def interval_table(stats: Mapping[str, Mapping[str, np.ndarray]],
                   against: str | None = None, keys: Sequence[str] = STATS,
                   digits: int = 3) -> Any:
    """A pandas table of ``"mean [low, high]"`` (95% Student-t interval over images), one
    row per label of ``stats`` (as :func:`gradient_statistics` returns), one column per key.

    With ``against`` (a label), the rows are the other labels and the values their
    image-by-image differences from it (paired: the same images)."""
    import pandas as pd

    def cell(values: np.ndarray) -> str:
        ci = mean_interval(values)
        sign = "+" if against else ""
        return (f"{ci['mean']:{sign}.{digits}f} [{ci['low']:{sign}.{digits}f}, "
                f"{ci['high']:{sign}.{digits}f}]")

    rows = {}
    for label, s in stats.items():
        if against is None:
            rows[label] = {k: cell(s[k]) for k in keys if k in s}
        elif label != against:
            base = stats[against]
            rows[label] = {k: cell(s[k] - base[k]) for k in keys if k in s and k in base}
    return pd.DataFrame(rows).T


def cosine_histogram_figure(cos: Mapping[str, np.ndarray]) -> Any:
    """Histograms of per-image cos(g, g~), one outline per run (``{name: (B,) array}``),
    on shared bins; the legend (below) gives each run's mean."""
    fig = _figure(8.0, 3.4)
    ax = fig.subplots()
    values = [np.asarray(c, dtype=float) for c in cos.values()]
    lo = min(float(v.min()) for v in values)
    hi = max(float(v.max()) for v in values)
    bins = np.linspace(lo, hi, 40)
    for name, v in zip(cos, values, strict=True):
        ax.hist(v, bins=bins, histtype="step", linewidth=1.5, color=run_color(name),
                linestyle=run_linestyle(name), label=f"{name} (mean {v.mean():.3f})")
    ax.set_xlabel("cos(g, guided g) per test image")
    ax.set_ylabel("images")
    ax.set_yscale("log")
    fig.legend(loc="outside right center")
    return fig


def _wrap(title: str, width: int = 18) -> str:
    import textwrap

    return "\n".join(textwrap.fill(part, width) for part in title.split("\n"))


def _magnitudes(model: nn.Module, x: Tensor, y, guided: bool) -> np.ndarray:
    g = (guided_backprop if guided else gradient)(model, x, y)
    m = g.detach().abs().sum(1).float()
    top = torch.quantile(m.flatten(1), 0.99, dim=1).clamp_min(1e-12)
    return (m / top[:, None, None]).clamp(0, 1).cpu().numpy()


def grid_of_dots_figure(models: Mapping[str, nn.Module], x: Tensor, y: Tensor | None = None,
                        labels: Sequence[str] | None = None, guided: bool = True,
                        zoom: int | None = 10, cell: float | None = None) -> Any:
    """Input-gradient magnitudes of several models on the same images, as heat maps.

    Args:
        models: ``{label: model}`` in eval mode (as :func:`interpretable.book.reference_models`
            loads them), drawn left to right; e.g.
            ``{"baseline": m0, "aligned (lambda* from scratch)": m1}``.
        x: (B, 3, H, W) normalized images (B of 2-4 fits the page); y: (B,) classes whose
            logit is differentiated (None: the predicted class).
        labels: one name per image (e.g. the class), shown at the left.
        guided: add the guided gradient's magnitude of the *last* model.
        zoom: add a close-up of the central ``zoom`` x ``zoom`` pixels of the last model's
            map (its region is outlined), where a period-2 grid of dots is unmistakable;
            None leaves it out.

    Each map is sum over channels of |g|, shape (B, H, W), divided by its own 99th
    percentile and clipped at 1 (one shared colourbar, inferno); every pixel is drawn as a
    square. Under each map: its lattice concentration
    (:func:`interpretable.mapstats.lattice_concentration`: 1 for an even spread over the
    four period-2 pixel lattices, 4 when all the magnitude sits on one).
    Returns a ``matplotlib.figure.Figure`` (columns: image, one per model, the guided map,
    the close-up).
    """
    from matplotlib.patches import Rectangle

    from ..viz import HEAT_CMAP, to_image

    if not models:
        raise ValueError("models must name at least one model")
    last = list(models)[-1]
    maps = {f"{k}\n|g|": _magnitudes(m, x, y, False) for k, m in models.items()}
    if guided:
        maps[f"{last}\nguided |g~|"] = _magnitudes(models[last], x, y, True)
    b, (h, w) = len(x), x.shape[-2:]
    if zoom is not None and not 2 <= zoom <= min(h, w):
        raise ValueError(f"zoom must lie in 2..{min(h, w)} or be None, got {zoom!r}")
    cols = 1 + len(maps) + (zoom is not None)
    cell = cell or min(2.0, 9.0 / cols)
    fig = _figure(cell * cols + 0.9, cell * b + 0.6)
    axes = fig.subplots(b, cols, squeeze=False)
    pics = to_image(x)
    top, left = (h - (zoom or 0)) // 2, (w - (zoom or 0)) // 2
    lattice = {k: mapstats.lattice_concentration(torch.from_numpy(v))
               for k, v in maps.items()}
    for r in range(b):
        axes[r, 0].imshow(pics[r], interpolation="nearest")
        if labels is not None:
            axes[r, 0].set_ylabel(labels[r])
        for c, (title, m) in enumerate(maps.items(), start=1):
            im = axes[r, c].imshow(m[r], cmap=HEAT_CMAP, vmin=0, vmax=1,
                                   interpolation="nearest")
            axes[r, c].set_xlabel(f"lattice {lattice[title][r]:.1f}")
            if r == 0:
                axes[r, c].set_title(_wrap(title))
        if zoom is not None:
            key = f"{last}\n|g|"
            crop = maps[key][r, top:top + zoom, left:left + zoom]
            axes[r, -1].imshow(crop, cmap=HEAT_CMAP, vmin=0, vmax=1, interpolation="nearest")
            c = list(maps).index(key) + 1
            axes[r, c].add_patch(Rectangle((left - 0.5, top - 0.5), zoom, zoom, fill=False,
                                           edgecolor=style.PALETTE["sky"], linewidth=1.2))
            if r == 0:
                axes[r, -1].set_title(_wrap(f"{last}\ncentre {zoom}x{zoom} of |g|"))
    axes[0, 0].set_title("image")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[:, 1:], shrink=0.8 if b > 2 else 1.0,
                 label="|g| / its 99th percentile")
    return fig


# --------------------------------------------------------------------------------------------
# The lambda sweep
# --------------------------------------------------------------------------------------------




# --------------------------------------------------------------------------------------------
# The live run
# --------------------------------------------------------------------------------------------


def live_curves_figure(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> Any:
    """Test top-1 and cos(g, g~) per epoch of short training runs.

    ``histories``: ``{label: TrainResult.history}`` (one dict per epoch with ``epoch``,
    ``test_acc`` and ``test_align``). Colour by label (:func:`run_color`)."""
    fig = _figure(8.0, 3.0)
    axes = fig.subplots(1, 2)
    for label, h in histories.items():
        ep = _values(h, "epoch")
        axes[0].plot(ep, _values(h, "test_acc"), marker="o", color=run_color(label),
                     label=label)
        axes[1].plot(ep, _values(h, "test_align", lambda v: 1.0 - v), marker="o",
                     color=run_color(label), label=label)
    axes[0].set_ylabel("test top-1 (%)")
    axes[1].set_ylabel("cos(g, guided g), test images")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center")
    return fig


# the names of _MOVED live in .lambda_curve and are served from here on first use
_MOVED = ('sweep_frame', 'lambda_curve_figure')


def __getattr__(name: str):
    if name in _MOVED:
        from . import lambda_curve

        return getattr(lambda_curve, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
