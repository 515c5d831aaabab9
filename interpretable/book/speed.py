"""Figures and tables of the chapter "Speed" (book/07_speed.ipynb).

The peers' functions beside ours (:func:`peer_functions`, :func:`peer_differences`), the
cost of every method as a figure (:func:`cost_figure`), the peer comparison in long format
(:func:`peer_table`), FastCAM's speed claim in this run and in the committed benchmark
(:func:`claim_table`), the training steps (:func:`step_table`) and the benchmark file's
summary (:func:`benchmark_summary`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

__all__ = ["SEP", "seconds", "peer_functions", "peer_differences", "cost_figure", "peer_table",
           "CLAIMS", "claim_table", "STEP_LABELS", "step_table", "benchmark_summary"]

#: separates library and method in the names of peer functions: "captum: gradient"
SEP = ": "


def seconds(timings: Mapping[str, Any], cpu: bool = True) -> dict[str, float]:
    """Seconds per call from ``measure_interleaved``'s timings: the median process CPU time
    (``cpu``; what the CPU worked for us, which other processes on a busy machine do not
    inflate) or the median wall time (a GPU's work is not CPU time)."""
    return {k: (t.cpu_median if cpu and t.cpu_median is not None else t.median)
            for k, t in timings.items()}


def peer_functions(model: nn.Module, x: Tensor, y: Tensor, layer: nn.Module | None = None,
                   keys: Sequence[str] | None = None, smoothgrad_n: int = 25,
                   score_batch: int = 64) -> dict[str, Callable[[], Tensor]]:
    """The installed peers' versions of our methods on ``x`` (B, 3, H, W), classes ``y`` (B,).

    ``keys``: method keys of ``interpretable.attribution.METHODS`` (default: every key a
    peer has an adapter for except Score-CAM); ``smoothgrad_n``: captum's NoiseTunnel
    samples; ``score_batch``: the peers' Score-CAM batch size.

    Returns:
        ``{"library: method display name": fn()}`` (``interpretable.peers``), in the order of
        the registry, then of the libraries.
    """
    from .. import peers
    from ..attribution import METHODS

    ok = peers.installed()
    if keys is None:
        keys = [k for k in METHODS if k != "scorecam"]
    out: dict[str, Callable[[], Tensor]] = {}
    for key in keys:
        for lib in peers.LIBRARIES:
            if not ok[lib] or (lib, key) not in peers.PEER_NAMES:
                continue
            options: dict[str, Any] = {}
            if key == "smoothgrad":
                options["n"] = smoothgrad_n
            if key == "scorecam":
                options["batch_size"] = score_batch
            fn = peers.peer(lib, key, model, layer, **options)
            out[f"{lib}{SEP}{METHODS[key].name}"] = lambda fn=fn: fn(x, y)
    return out


def peer_differences(model: nn.Module, x: Tensor, y: Tensor,
                     layer: nn.Module | None = None) -> dict[str, float]:
    """Largest absolute differences between our maps and the installed peers' on the same
    inputs: input gradient and guided backpropagation against captum, Grad-CAM normalized
    to [0, 1] against pytorch-grad-cam. Only the pairs whose peer is installed."""
    from .. import peers
    from ..attribution import GradCAM, gradient, guided_backprop

    ok = peers.installed()
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # captum warns that it hooks the ReLUs
        if ok["captum"]:
            for key, ours, label in (("gradient", gradient, "gradient vs captum Saliency"),
                                     ("guided", guided_backprop,
                                      "guided backprop vs captum GuidedBackprop")):
                theirs = peers.peer("captum", key, model)(x, y)
                out[label] = float((ours(model, x, y) - theirs).abs().max())
        if ok["pytorch-grad-cam"]:
            theirs = peers.peer("pytorch-grad-cam", "gradcam", model, layer)(x, y)
            with GradCAM(model, layer) as cam:
                mine = cam(x, y, normalize=True)
            out["Grad-CAM (normalized) vs pytorch-grad-cam"] = float(
                (mine - theirs).abs().max())
    return out


def cost_figure(ratios: Mapping[str, float], references: Sequence[str] = (),
                title: str | None = None) -> Any:
    """Each method's time as a multiple of one forward pass: dots on a log axis.

    Args:
        ratios: ``{name: time / one forward pass}``; a method display name gets its registry
            colour (``style.color``), other names grey.
        references: names drawn grey and hollow (e.g. "forward with autograd").
        title: optional axes title.

    Returns:
        a matplotlib Figure with one axis: one dot per name (its colour) on a stem from 1
        (one forward pass, a vertical line), sorted from cheapest (top) to dearest, each
        labelled with its ratio.
    """
    import numpy as np
    from matplotlib.figure import Figure

    from .style import PALETTE, color

    names = sorted(ratios, key=lambda k: ratios[k])
    values = np.array([float(ratios[k]) for k in names])
    if (values <= 0).any():
        raise ValueError("ratios must be positive (a log axis)")
    fig = Figure(figsize=(7.5, 0.36 * len(names) + 1.2), layout="constrained")
    ax = fig.subplots()
    # a dot per method on a stem from one forward pass: right dearer, left cheaper
    for i, (k, v) in enumerate(zip(names, values, strict=True)):
        c = PALETTE["grey"] if k in references else color(k)
        ax.plot([1.0, v], [i, i], color=c, lw=2.5, solid_capstyle="butt")
        ax.plot([v], [i], "o", ms=10, mec="black", mew=0.8,
                mfc="white" if k in references else c)
    ax.set_yticks(range(len(names)), names)
    ax.set_xscale("log")
    lo, hi = min(values.min(), 1.0), max(values.max(), 1.0)
    ax.set_xlim(lo / 1.6, hi * 2.5)
    ax.set_ylim(len(names) - 0.4, -1.0)
    ax.axvline(1.0, color="black", lw=1)
    ax.text(1.0, -0.75, "one forward pass ", fontsize=8, ha="right", va="bottom")
    for i, v in enumerate(values):
        label = f"{v:.2f}x" if v < 10 else f"{v:.0f}x"
        ax.text(v * (1.12 if v >= 1 else 1 / 1.12), i, label, va="center", fontsize=8,
                ha="left" if v >= 1 else "right")
    ax.set_xlabel("time / one forward pass of the same batch (log scale)")
    if title:
        ax.set_title(title)
    return fig


def peer_table(medians: Mapping[str, float], batch: int) -> Any:
    """The peer comparison in long format: one row per (method, library) pair that exists.

    Args:
        medians: seconds per call, ours under the method's display name and the peers' as
            ``"library: method"`` (:func:`peer_functions`).
        batch: images per call.

    Returns:
        a pandas DataFrame with columns method, library, ours (ms/image), library
        (ms/image), library / ours (above 1: ours is faster).
    """
    import pandas as pd

    rows = []
    for name, t in medians.items():
        if SEP not in name:
            continue
        lib, method = name.split(SEP, 1)
        if method not in medians:
            continue
        rows.append({"method": method, "library": lib,
                     "ours (ms/image)": 1e3 * medians[method] / batch,
                     "library (ms/image)": 1e3 * t / batch,
                     "library / ours": t / medians[method]})
    return pd.DataFrame(rows, columns=["method", "library", "ours (ms/image)",
                                       "library (ms/image)", "library / ours"])


#: FastCAM's speed claim as ratios: label -> (numerator, denominator), our display names
CLAIMS = {
    "SMOE saliency / forward pass": ("SMOE saliency", "forward pass"),
    "Grad-CAM / forward pass": ("Grad-CAM", "forward pass"),
    "FastCAM / Grad-CAM": ("FastCAM", "Grad-CAM"),
    "guided backprop / FastCAM": ("guided backprop", "FastCAM"),
    "guided backprop / SMOE saliency": ("guided backprop", "SMOE saliency"),
    "SmoothGrad / FastCAM": ("SmoothGrad", "FastCAM"),
    "SmoothGrad / SMOE saliency": ("SmoothGrad", "SMOE saliency"),
}
#: our display names -> the names of the committed benchmark's fastcam section
_BENCH_NAMES = {"forward pass": "forward (no_grad)", "SMOE saliency": "saliency (gamma)",
                "Grad-CAM": "GradCAM", "FastCAM": "FastCAM",
                "guided backprop": "guided backprop", "SmoothGrad": "SmoothGrad (n=25)"}


def claim_table(medians: Mapping[str, float], benchmark: Mapping[str, Any] | None = None
                ) -> Any:
    """The ratios of :data:`CLAIMS` in this run and, if given, in the committed benchmark.

    Args:
        medians: seconds per call under our display names (this run).
        benchmark: the parsed ``benchmarks/results/latest.json`` (its ``fastcam`` section's
            timings are used), or None.

    Returns:
        a pandas DataFrame indexed by the claim, column "this run" and, with a benchmark
        holding all the timings, "committed benchmark".
    """
    import pandas as pd

    table = pd.DataFrame(index=list(CLAIMS))
    table["this run"] = [medians[a] / medians[b] for a, b in CLAIMS.values()]
    timings = ((benchmark or {}).get("sections", {}).get("fastcam", {}).get("timings", {}))
    if timings and all(_BENCH_NAMES[n] in timings for pair in CLAIMS.values() for n in pair):
        med = {k: timings[v]["median"] for k, v in _BENCH_NAMES.items()}
        table["committed benchmark"] = [med[a] / med[b] for a, b in CLAIMS.values()]
    return table


#: readable names of the training steps of ``interpretable.training.cost.step_costs``
STEP_LABELS = {"plain": "plain step", "reg": "regularized",
               "reg_0.5": "regularized, half of each batch",
               "reg_0.25": "regularized, a quarter of each batch",
               "reg_bn_batch": "regularized, exact BN statistics",
               "reg_naive": "regularized, straightforward",
               "naive_plain_nchw": "plain, straightforward (NCHW)"}


def step_table(costs: Mapping[str, Any]) -> Any:
    """The training steps of ``step_costs`` as a small table: ms per image and multiples of
    the plain step, readable names (:data:`STEP_LABELS`), cheapest first."""
    import pandas as pd

    table = pd.DataFrame({"ms per image": costs["ms_per_image"],
                          "x plain step": costs["ratios_to_plain"]})
    table = table.rename(index=lambda k: STEP_LABELS.get(k, k))
    return table.sort_values("x plain step")


def benchmark_summary(path: str | Path) -> tuple[str, Any]:
    """What ``make bench`` last wrote: ``(one line on when and where, targets table)``.

    The targets table (pandas DataFrame) has columns section, target, ratio, limit, passed;
    empty when the file has none. FileNotFoundError when the file is missing.
    """
    import pandas as pd

    data = json.loads(Path(path).read_text())
    m, settings = data.get("machine", {}), data.get("settings", {})
    line = (f"measured {m.get('date', '?')} on {m.get('processor', '?')}, "
            f"{m.get('cpu_count', '?')} CPUs ({m.get('torch_threads', '?')} torch threads), "
            f"GPU {m.get('cuda')}, torch {m.get('torch', '?')}; quick={settings.get('quick')}")
    for name, section in data.get("sections", {}).items():
        when = section.get("machine", {}).get("date")
        if when and when != m.get("date"):
            line += f"; section {name} measured {when}"
    rows = [{"section": t.get("section"), "target": t["name"], "ratio": t["ratio"],
             "limit": ("\u2265 " if t.get("at_least") else "\u2264 ") + f"{t['limit']:g}",
             "passed": bool(t.get("passed"))} for t in data.get("targets", [])]
    return line, pd.DataFrame(rows, columns=["section", "target", "ratio", "limit", "passed"])
