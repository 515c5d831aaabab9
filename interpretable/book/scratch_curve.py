"""The from-scratch dose-response of the training chapter: test top-1 and cos(g, g~) against
lambda for the networks trained from scratch (:mod:`interpretable.study.scratch`), beside the
fine-tuned sweep, with the two baseline seeds marked, and the same two numbers epoch by epoch
from the runs' logs. Read from committed files alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import style
from .training import ARCH_NAMES, COLLAPSE, _figure

__all__ = ["scratch_frame", "scratch_table", "scratch_curve_figure", "scratch_epochs",
           "scratch_epochs_figure"]


def scratch_frame(root: str | Path | None = None,
                  archs: Sequence[str] = ("resnet18", "mobilenet_v2")) -> Any:
    """Every from-scratch run of ``archs`` as one pandas table.

    The rows of :func:`interpretable.study.scratch.table` with ``arch`` added, and for
    finished runs ``baseline_top1`` (the seed-0 baseline's), ``threshold`` (that minus the
    rule's 1.5 points),
    ``within`` (top-1 at least the threshold), ``collapsed`` (top-1 below
    :data:`~interpretable.book.training.COLLAPSE` times the baseline's) and ``lam_star`` (the
    run rule 1 picks: ResNet-18 only, once all its runs are finished).
    """
    import pandas as pd

    from ..study import reference, scratch

    folder = reference.find_root(root)
    frames = []
    for arch in archs:
        t = pd.DataFrame(scratch.table(folder, arch))
        if t.empty:
            continue
        t.insert(0, "arch", arch)
        base = t[(t["run"] == scratch.BASELINES[arch]) & t["finished"]]
        if len(base) and "top1" in t:
            top = float(base["top1"].iloc[0])
            t["baseline_top1"] = top
            t["threshold"] = top - scratch.TOLERANCE
            t["within"] = t["finished"] & (t["top1"] >= t["threshold"])
            t["collapsed"] = t["finished"] & (t["top1"] < COLLAPSE * top)
        choice = scratch.mobilenet_lambda(folder) if arch == "resnet18" else None
        t["lam_star"] = (choice is not None and choice[0] is not None) & (
            t["lam"] == (choice[0] if choice else -1)) & (t["variant"] == "logit")
        frames.append(t)
    if not frames:
        raise FileNotFoundError(f"no from-scratch run of {list(archs)} in {folder}")
    return pd.concat(frames, ignore_index=True)


def scratch_table(frame: Any) -> Any:
    """:func:`scratch_frame` for reading: one row per run (``network``, ``lambda``, ``seed``),
    with ``top-1 %``, ``vs baseline`` (points against the seed-0 baseline), ``cos(g, g~)
    [95% CI]`` and ``state`` ("finished", or "epoch k of n" while it trains)."""
    import pandas as pd

    rows = []
    for _, r in frame.iterrows():
        row = {"network": ARCH_NAMES.get(r["arch"], r["arch"]), "lambda": r["lam"],
               "seed": r["seed"], "gradient": "-" if r["variant"] == "baseline" else r["variant"]}
        if r["finished"]:
            row.update({"top-1 %": r["top1"],
                        "vs baseline": r["top1"] - r["baseline_top1"],
                        "cos(g, g~) [95% CI]": f"{r['cos']:.3f} [{r['cos_low']:.3f}, "
                                               f"{r['cos_high']:.3f}]",
                        "state": "finished"})
        else:
            row["state"] = f"epoch {r['epoch']} of {r['epochs']}"
        rows.append(row)
    return pd.DataFrame(rows).round({"top-1 %": 2, "vs baseline": 2})


#: lambda ticks (log axis)
_TICKS = (0.0075, 0.05, 0.1, 0.2, 0.5)


def scratch_curve_figure(frame: Any, finetuned: Any = None) -> Any:
    """cos(g, g~) (top row) and test top-1 (bottom row) against lambda, one column per
    architecture of ``frame`` (:func:`scratch_frame`; finished runs only).

    Green diamonds: from scratch, logit gradient, lambda ramped up over 3 epochs (with the
    95% interval of the cosine); orange square: the paper's lambda from scratch (loss
    gradient, no ramp); blue lines: the baselines (lambda 0), seed 0 solid and seed 1 dashed;
    grey dotted: the rule's threshold (seed-0 baseline - 1.5 points). A run far below the
    others (collapsed) is drawn at the lower edge with its value. ``finetuned``: optional
    :func:`interpretable.book.lambda_curve.sweep_frame`, whose logit curve is drawn thin in
    purple for comparison (2 epochs from the baseline instead of 20 from scratch).
    Returns a ``matplotlib.figure.Figure``.
    """
    from matplotlib.lines import Line2D

    done = frame[frame["finished"]]
    archs = list(dict.fromkeys(done["arch"]))
    fig = _figure(10.0, 6.4)
    axes = fig.subplots(2, len(archs), squeeze=False, sharex="col")
    green, orange = style.color("scratch"), style.color("paper")
    blue, purple = style.color("baseline"), style.color("fine-tuned")
    for j, arch in enumerate(archs):
        t = done[done["arch"] == arch]
        ax_cos, ax_acc = axes[0, j], axes[1, j]
        base = t[t["variant"] == "baseline"].sort_values("seed")
        logit = t[t["variant"] == "logit"].sort_values("lam")
        paper = t[t["variant"] == "loss"]
        kept = t[~t["collapsed"]] if "collapsed" in t else t
        acc_lo, acc_hi = float(kept["top1"].min()), float(kept["top1"].max())
        if "threshold" in t:
            acc_lo = min(acc_lo, float(t["threshold"].iloc[0]))
        pad = 0.15 * max(acc_hi - acc_lo, 1.0)
        acc_lo, acc_hi = acc_lo - pad, acc_hi + pad
        if finetuned is not None:
            ft = finetuned[(finetuned["arch"] == arch) & (finetuned["variant"] == "logit")]
            ft = ft[(ft["lam"] > 0.99 * _TICKS[0]) & (ft["lam"] < 1.01 * _TICKS[-1])]
            ft = ft.sort_values("lam")
            ax_cos.plot(ft["lam"], ft["cos"], ".-", color=purple, linewidth=1, alpha=0.7)
            ax_acc.plot(ft["lam"], ft["top1"].clip(acc_lo, acc_hi), ".-", color=purple,
                        linewidth=1, alpha=0.7)
        for _, b in base.iterrows():
            style_ = "-" if b["seed"] == 0 else "--"
            ax_cos.axhline(b["cos"], color=blue, linestyle=style_, linewidth=1.2)
            ax_acc.axhline(b["top1"], color=blue, linestyle=style_, linewidth=1.2)
        if "threshold" in t:
            ax_acc.axhline(t["threshold"].iloc[0], color=style.PALETTE["grey"], linestyle=":")
        ax_cos.errorbar(logit["lam"], logit["cos"], capsize=3, color=green, marker="D",
                        yerr=[logit["cos"] - logit["cos_low"], logit["cos_high"] - logit["cos"]])
        ax_acc.plot(logit["lam"], logit["top1"].clip(acc_lo, acc_hi), "D-", color=green)
        ax_cos.plot(paper["lam"], paper["cos"], "s", color=orange, markersize=7)
        ax_acc.plot(paper["lam"], paper["top1"], "s", color=orange, markersize=7)
        for _, r in t[t["top1"] < acc_lo].iterrows():  # collapsed: at the edge, with its value
            ax_acc.plot(r["lam"], acc_lo, "v", color=style.PALETTE["grey"], clip_on=False,
                        markersize=9, zorder=5)
            ax_acc.annotate(f"{r['top1']:.1f}%", (r["lam"], acc_lo), xytext=(0, 8),
                            textcoords="offset points", ha="center", fontsize=8)
        star = t[t["lam_star"]]
        for ax in (ax_cos, ax_acc):
            if len(star):
                ax.axvline(star["lam"].iloc[0], color=style.color("lambda*"), linestyle="--")
            ax.grid(alpha=0.3)
        ax_acc.set_ylim(acc_lo, acc_hi)
        ax_acc.set_xscale("log")
        ax_acc.set_xticks(_TICKS, [f"{v:g}" for v in _TICKS])
        ax_acc.minorticks_off()
        ax_acc.set_xlim(_TICKS[0] / 1.4, _TICKS[-1] * 1.4)
        ax_acc.set_xlabel(r"$\lambda$ (log scale)")
        ax_cos.set_title(f"{ARCH_NAMES.get(arch, arch)}: trained from scratch, 20 epochs")
        if j == 0:
            ax_cos.set_ylabel("cos(g, guided g)\n(logit gradient, 2,000 test images)")
            ax_acc.set_ylabel("test top-1 (%)")
    has = set(done["variant"] + done["seed"].astype(str))
    handles = [h for key, h in (
        ("logit0", Line2D([], [], color=green, marker="D", label="from scratch, logit "
                          r"gradient ($\lambda$ ramped over 3 epochs)")),
        ("loss0", Line2D([], [], color=orange, marker="s", linestyle="",
                         label=r"from scratch at the paper's $\lambda$ (loss gradient)")),
        ("baseline0", Line2D([], [], color=blue, label=r"baseline ($\lambda$ = 0), seed 0")),
        ("baseline1", Line2D([], [], color=blue, linestyle="--",
                             label=r"baseline ($\lambda$ = 0), seed 1"))) if key in has]
    if "threshold" in done:
        handles.append(Line2D([], [], color=style.PALETTE["grey"], linestyle=":",
                              label="rule's threshold: baseline (seed 0) - 1.5 points"))
    if finetuned is not None:
        handles.append(Line2D([], [], color=purple, marker=".", alpha=0.7,
                              label="fine-tuned 2 epochs from the baseline (the sweep)"))
    if done["lam_star"].any():
        handles.append(Line2D([], [], color=style.color("lambda*"), linestyle="--",
                              label=r"from-scratch $\lambda^*$ by the rule"))
    if np.any(done["top1"] < COLLAPSE * done["top1"].max()):
        handles.append(Line2D([], [], color=style.PALETTE["grey"], marker="v", linestyle="",
                              label="collapsed, drawn at the edge with its top-1"))
    fig.legend(handles=handles, loc="outside lower center", ncol=2)
    return fig


def scratch_epochs(frame: Any, root: str | Path | None = None, arch: str = "resnet18") -> Any:
    """Epoch by epoch, from each ``log.jsonl``: the finished runs of ``arch`` in ``frame``
    (:func:`scratch_frame` of the same ``root``) trained with the logit gradient, and the
    seed-1 baseline (whose log measured the logit gradient too; the seed-0 baseline's
    measured the loss gradient).

    One row per run and epoch: ``run``, ``lam``, ``seed``, ``epoch``, ``cos`` (mean cos(g, g~)
    of the logit gradient on the test images the run's log used: 2,000, or 1,000 for the
    reference runs), ``top1`` (all 10,000 test images), ``lr`` and ``lam_now`` (the
    learning rate and the ramped lambda of that epoch).
    """
    import json

    import pandas as pd

    from ..study import reference

    root = reference.find_root(root)
    done = frame[(frame["arch"] == arch) & frame["finished"]]
    keep = done[(done["variant"] == "logit") | ((done["variant"] == "baseline")
                                               & (done["seed"] == 1))]
    rows = []
    for r in keep.itertuples():
        log = (root / r.run / "log.jsonl").read_text().splitlines()
        for line in log:
            e = json.loads(line)
            rows.append({"run": r.run, "lam": r.lam, "seed": r.seed, "epoch": e["epoch"],
                         "cos": 1.0 - e["test_align"], "top1": e["test_acc"], "lr": e["lr"],
                         "lam_now": e.get("lam")})
    if not rows:
        raise FileNotFoundError(f"no finished logit-gradient run of {arch} in the frame")
    return pd.DataFrame(rows).sort_values(["lam", "seed", "epoch"], ignore_index=True)


def scratch_epochs_figure(epochs: Any) -> Any:
    """cos(g, g~) (left) and test top-1 (right) against the epoch, one line per run of
    ``epochs`` (:func:`scratch_epochs`): the logit-gradient runs in greens, darker for a
    larger lambda; the seed-1 baseline in blue, dashed. A dotted line marks the end of the
    3-epoch warm-up (lambda and the learning rate at their peak; the learning rate then
    falls linearly to 0). Returns a ``matplotlib.figure.Figure``.
    """
    import matplotlib as mpl

    fig = _figure(10.0, 3.8)
    ax_cos, ax_acc = fig.subplots(1, 2, sharex=True)
    lams = sorted({float(v) for v in epochs["lam"] if v > 0})
    greens = mpl.colormaps["Greens"]
    shade = {lam: greens(0.45 + 0.55 * i / max(len(lams) - 1, 1)) for i, lam in enumerate(lams)}
    for (lam, seed), t in epochs.groupby(["lam", "seed"], sort=True):
        if lam == 0:
            kw = {"color": style.color("baseline"), "linestyle": "--",
                  "label": rf"baseline ($\lambda$ = 0), seed {seed}"}
        else:
            aligned = ", aligned" if "aligned" in t["run"].iloc[0] else ""
            kw = {"color": shade[float(lam)], "linestyle": "-",
                  "label": rf"$\lambda$ = {lam:g}{aligned}"}
        for ax, key in ((ax_cos, "cos"), (ax_acc, "top1")):
            ax.plot(t["epoch"], t[key], marker=".", **kw)
    for ax in (ax_cos, ax_acc):
        ax.axvline(3, color=style.PALETTE["grey"], linestyle=":", linewidth=1)
        ax.grid(alpha=0.3)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
    ax_cos.set_ylabel("cos(g, guided g)\n(logit gradient, test images)")
    ax_acc.set_ylabel("test top-1 (%)")
    # on the accuracy panel: its top is empty at epoch 3 (the cosine panel's is not)
    ax_acc.annotate("end of warm-up", (3, 1), xycoords=("data", "axes fraction"),
                    xytext=(3, -3), textcoords="offset points", ha="left", va="top",
                    fontsize=8, color=style.PALETTE["grey"])
    handles, labels = ax_cos.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels))
    return fig
