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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import mapstats
from ..attribution import gradient, guided_backprop
from ..stats import mean_interval
from . import style

__all__ = ["ARCH_NAMES", "COLLAPSE", "run_color", "run_linestyle", "training_curves_figure",
           "gradient_statistics", "white_noise_statistics", "interval_table",
           "cosine_histogram_figure", "grid_of_dots_figure", "sweep_frame",
           "lambda_curve_figure", "live_curves_figure"]

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
    axes = fig.subplots(2, 2, sharex=True).flat
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
    for (name, c), v in zip(cos.items(), values, strict=True):
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


def _magnitudes(model: nn.Module, x: Tensor, y, guided: bool) -> Tensor:
    g = (guided_backprop if guided else gradient)(model, x, y)
    m = g.detach().abs().sum(1)
    top = torch.quantile(m.flatten(1).float(), 0.99, dim=1).clamp_min(1e-12)
    return (m / top[:, None, None]).clamp(0, 1).cpu()


def grid_of_dots_figure(models: Mapping[str, nn.Module], x: Tensor, y: Tensor | None = None,
                        labels: Sequence[str] | None = None, guided: bool = True,
                        zoom: int | None = 10, cell: float | None = None) -> Any:
    """Input-gradient magnitudes of several models on the same images, as heat maps.

    Args:
        models: ``{label: model}`` (eval mode), drawn left to right; e.g.
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
    lattice = {k: mapstats.lattice_concentration(v) for k, v in maps.items()}
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
    if labels is None:
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


def sweep_frame(root: str | Path | None = None,
                archs: Sequence[str] = ("resnet18", "mobilenet_v2")) -> Any:
    """Every finished sweep run of ``archs`` as one pandas table (from ``summary.json``).

    Columns: ``arch``, ``run``, ``variant`` ("control", "logit" or "loss"), ``lam``,
    ``top1``, ``top5``, ``cos`` (mean cos(g, g~) of the logit gradient) with ``cos_low`` /
    ``cos_high`` (95% interval), ``cos_loss`` (of the loss gradient), ``images``, and
    ``within`` (top-1 at least the rule's threshold, control - 1.5 points), ``collapsed``
    (top-1 below :data:`COLLAPSE` times the control's), ``lam_star`` (the run the rule
    picks). Architectures without a finished control are left out.
    """
    import pandas as pd

    from ..study import reference, sweep

    folder = reference.find_root(root)
    frames = []
    for arch in archs:
        rows = sweep.table(folder, arch)
        if not any(r["lam"] == 0 for r in rows):
            continue
        choice = sweep.choose_lambda(sweep.summaries(folder, arch))
        t = pd.DataFrame(rows).rename(columns={"gradient_of": "variant"})
        t.insert(0, "arch", arch)
        control = t.loc[t["variant"] == "control", "top1"].iloc[0]
        t["within"] = t["top1"] >= choice["threshold"]
        t["collapsed"] = t["top1"] < COLLAPSE * control
        t["lam_star"] = (t["lam"] == choice["lam"]) & (t["variant"] == choice["gradient_of"])
        frames.append(t)
    if not frames:
        raise FileNotFoundError(f"no finished sweep with its control in {folder / 'sweep'}")
    return pd.concat(frames, ignore_index=True).drop(columns=["hours"])


_VARIANTS = {"logit": dict(color=style.PALETTE["black"], marker="o", linestyle="-",
                           label="runs, logit gradient"),
             "loss": dict(color=style.PALETTE["sky"], marker="s", linestyle="--",
                          label="runs, loss gradient")}


def _edge_marks(ax, t, key: str, lo: float, hi: float) -> None:
    """Runs outside [lo, hi] on ``key``: drawn at the edge, collapsed ones as grey x,
    the others as a triangle with their value."""
    span = hi - lo
    for _, r in t[(t[key] < lo) | (t[key] > hi)].iterrows():
        y = hi if r[key] > hi else lo
        if r["collapsed"]:
            ax.plot(r["lam"], y, "x", color=style.PALETTE["grey"], markersize=8,
                    markeredgewidth=2, clip_on=False, zorder=5)
        else:
            up = r[key] > hi
            ax.plot(r["lam"], y, "^" if up else "v", clip_on=False, zorder=5,
                    color=_VARIANTS.get(r["variant"], _VARIANTS["logit"])["color"])
            text = f"{r[key]:.1f}%" if key == "top1" else f"{r[key]:.2f}"
            ax.annotate(text, (r["lam"], y - (0.06 if up else -0.06) * span),
                        ha="center", va="top" if up else "bottom", fontsize=8)


#: lambda ticks of the sweep figure (log axis)
_TICKS = (0.01, 0.1, 0.3, 0.5, 1.0, 2.0, 5.0)


def _window(values: Sequence[float], pad: float) -> tuple[float, float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    margin = pad * (hi - lo) if hi > lo else 1.0
    return lo - margin, hi + margin


def lambda_curve_figure(root: str | Path | None = None,
                        archs: Sequence[str] = ("resnet18", "mobilenet_v2"),
                        extra: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> Any:
    """The lambda sweep: cos(g, g~) (top row) and test top-1 (bottom row) against lambda,
    one column per architecture, from the committed ``summary.json`` files alone (fast).

    ``root``: the reference folder (default :func:`interpretable.study.reference.find_root`).
    Marked: the control (lambda 0, horizontal line; its 95% interval as a band), the rule's
    threshold (control - 1.5 points), the rule's lambda* (red dashed) and the paper's lambda
    = 7.5e-3 (orange dotted). The y-ranges follow the runs that stay within the rule's
    accuracy window (control - 1.5 points): a run outside the range is marked at the edge,
    by a grey x when it collapsed (top-1 below :data:`COLLAPSE` times the control's), else
    by a triangle with its value; the lines run on to it (clipped).

    ``extra``: optional further points, ``{arch: [{"lam", "top1", "cos", "label"}, ...]}``
    (e.g. the from-scratch runs of :mod:`interpretable.study.scratch`), drawn as green
    diamonds and named in the legend by their ``label`` (the first of each label).
    Returns a ``matplotlib.figure.Figure`` (2 x number of architectures panels).
    """
    from matplotlib.lines import Line2D

    from ..study import sweep
    from ..training.presets import PRESETS

    t_all = sweep_frame(root, archs)
    shown = [a for a in archs if a in set(t_all["arch"])]
    fig = _figure(10.0, 6.4)
    axes = fig.subplots(2, len(shown), squeeze=False, sharex="col")
    paper = PRESETS["paper"]["lam"]
    for j, arch in enumerate(shown):
        t = t_all[t_all["arch"] == arch]
        control = t[t["variant"] == "control"].iloc[0]
        ax_cos, ax_acc = axes[0, j], axes[1, j]
        runs = t[t["variant"] != "control"]
        inside = runs[runs["within"]]
        threshold = control["top1"] - sweep.TOLERANCE
        cos_lo, cos_hi = _window(list(inside["cos_low"]) + list(inside["cos_high"])
                                 + [control["cos_low"], control["cos_high"]], 0.15)
        acc_lo, acc_hi = _window(list(inside["top1"]) + [threshold, control["top1"]], 0.3)
        for variant, g in runs.groupby("variant"):
            g = g.sort_values("lam")
            kw = _VARIANTS.get(variant, _VARIANTS["logit"])
            ax_cos.errorbar(g["lam"], g["cos"], capsize=3, **kw,
                            yerr=[g["cos"] - g["cos_low"], g["cos_high"] - g["cos"]])
            ax_acc.plot(g["lam"], g["top1"], **kw)
            _edge_marks(ax_cos, g, "cos", cos_lo, cos_hi)
            _edge_marks(ax_acc, g, "top1", acc_lo, acc_hi)
        blue = style.color("control")
        ax_cos.axhline(control["cos"], color=blue, linewidth=1.2)
        ax_cos.axhspan(control["cos_low"], control["cos_high"], color=blue, alpha=0.15)
        ax_acc.axhline(control["top1"], color=blue, linewidth=1.2)
        ax_acc.axhline(threshold, color=style.PALETTE["grey"], linestyle=":")
        star = t[t["lam_star"]]
        for ax in (ax_cos, ax_acc):
            ax.axvline(paper, color=style.color("paper"), linestyle=":", linewidth=1.5)
            if len(star):
                ax.axvline(star["lam"].iloc[0], color=style.color("lambda*"), linestyle="--",
                           linewidth=1.2)
            ax.grid(alpha=0.3)
        for point in (extra or {}).get(arch, ()):
            for ax, key in ((ax_cos, "cos"), (ax_acc, "top1")):
                ax.plot(point["lam"], point[key], "D", color=style.color("scratch"),
                        label=point.get("label", "extra"))
        ax_cos.set_ylim(cos_lo, cos_hi)
        ax_acc.set_ylim(acc_lo, acc_hi)
        ax_acc.set_xscale("log")
        ax_acc.set_xticks(_TICKS, [f"{v:g}" for v in _TICKS])
        ax_acc.minorticks_off()
        ax_acc.set_xlabel("lambda (log scale)")
        ax_cos.set_title(f"{ARCH_NAMES.get(arch, arch)}: fine-tuned 2 epochs")
        if j == 0:
            ax_cos.set_ylabel("cos(g, guided g)\n(logit gradient, test images)")
            ax_acc.set_ylabel("test top-1 (%)")
    star_lams = sorted(set(t_all.loc[t_all["lam_star"], "lam"]))
    handles = [Line2D([], [], **_VARIANTS[v]) for v in _VARIANTS
               if v in set(t_all["variant"])]
    handles += [
        Line2D([], [], color=style.color("control"), label="control (lambda 0), its 95% band"),
        Line2D([], [], color=style.PALETTE["grey"], linestyle=":",
               label=f"rule's threshold: control - {sweep.TOLERANCE:g} points"),
        Line2D([], [], color=style.color("lambda*"), linestyle="--",
               label="lambda* by the rule = " + ", ".join(f"{v:g}" for v in star_lams)),
        Line2D([], [], color=style.color("paper"), linestyle=":", linewidth=1.5,
               label=f"paper's lambda = {paper:g}"),
        Line2D([], [], color=style.PALETTE["grey"], marker="x", linestyle="",
               markeredgewidth=2, label=f"collapsed (top-1 < {COLLAPSE:g} x control), "
                                        "at the edge"),
        Line2D([], [], color=style.PALETTE["black"], marker="^", linestyle="",
               label="outside the range, value written")]
    seen = set()
    for points in (extra or {}).values():
        for p in points:
            name = p.get("label", "extra")
            if name not in seen:
                seen.add(name)
                handles.append(Line2D([], [], color=style.color("scratch"), marker="D",
                                      linestyle="", label=name))
    fig.legend(handles=handles, loc="outside lower center", ncol=3)
    return fig


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
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center")
    return fig
