"""The convention sensitivity of the metric chapter (``book/06_metrics.ipynb``): do the paired
verdicts on Insertion and Deletion survive the paper authors' conventions?

Insertion and Deletion depend on how their curves are built (:data:`~interpretable.metrics.
CONVENTIONS`: what a deleted pixel becomes, the blur insertion starts from, pixels per step);
AD, AG and AI do not. Some runs were scored a second time, on the seeded 2,000-image subset,
under the authors' conventions (``metrics_authors.csv.gz`` beside ``metrics.csv.gz``, ours).
For each :class:`Pair` of runs whose four files are complete, :func:`sensitivity` pairs the
images and methods all four share and compares the two runs once per convention set with
:func:`interpretable.tables.paired_comparison` (the chapter's verdicts and Bonferroni).
Tables: :func:`compare_conventions` (one pair), :func:`sensitivity` (all pairs),
:func:`verdict_table` (the same as text cells); figure: :func:`sensitivity_figure`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..metrics.definitions import metric
from ..study import scratch
from ..tables import paired_comparison
from . import style
from .metrics import ARCH_NAMES, _figure, method_order

__all__ = ["FILES", "CURVE_METRICS", "Pair", "PAIRS", "default_pairs", "available",
           "load_pair", "compare_conventions", "sensitivity", "verdict_table",
           "sensitivity_figure"]

#: the result file of each set of conventions in a run folder
FILES = {"ours": "metrics.csv.gz", "authors": "metrics_authors.csv.gz"}
#: the paper names of the metrics that depend on the conventions
CURVE_METRICS = ("Ins", "Del")
_NONE = "no clear difference"
_COLORS = {"better": style.PALETTE["blue"], "worse": style.PALETTE["red"],
           _NONE: style.PALETTE["grey"]}


class Pair(NamedTuple):
    """Two runs to compare: ``other - base``; ``base`` and ``other`` are run folders
    relative to the reference root (``"resnet18_baseline"``, ``"scratch/resnet18/lam0.1"``)."""

    arch: str
    comparison: str
    base: str
    other: str


#: the paper's lambda against the baseline, both architectures
PAIRS: tuple[Pair, ...] = tuple(
    Pair(a, "paper λ vs baseline", f"{a}_baseline", f"{a}_regularized")
    for a in ("resnet18", "mobilenet_v2"))


def default_pairs(root: str | Path) -> list[Pair]:
    """:data:`PAIRS` and ResNet-18's from-scratch lambda* against its baseline: the run that
    rule 1 of :mod:`interpretable.study.scratch` picks, a placeholder folder (never
    available) until its runs are finished, none when no lambda qualifies."""
    choice = scratch.mobilenet_lambda(root)
    if choice is not None and choice[0] is None:
        return list(PAIRS)
    run = ("scratch/resnet18/lam<λ*>" if choice is None
           else scratch.run_dir("", "resnet18", choice[0]).as_posix())
    label = "from-scratch λ*" + ("" if choice is None else f" = {choice[0]:g}")
    return [*PAIRS, Pair("resnet18", f"{label} vs baseline", scratch.BASELINES["resnet18"],
                         run)]


def _complete(path: Path) -> bool:
    # written to the end: the provenance record comes last (interpretable.metrics.runs)
    return path.is_file() and path.with_name(path.name + ".provenance.json").is_file()


def available(root: str | Path, pairs: Iterable[Pair]) -> tuple[list[Pair], list[Pair]]:
    """``(ready, pending)``: the pairs whose four result files (:data:`FILES` of both runs)
    are complete, and the others."""
    ready, pending = [], []
    for p in pairs:
        files = [Path(root) / run / f for run in (p.base, p.other) for f in FILES.values()]
        (ready if all(_complete(f) for f in files) else pending).append(p)
    return ready, pending


def _conventions_of(path: Path) -> str:
    """The conventions a result file names (files from before they were options: ours)."""
    meta = json.loads(path.with_name(path.name + ".meta.json").read_text())
    return meta.get("conventions", "ours" if "substrate" not in meta else "custom")


def _shared(tables: Sequence[Any]) -> list[Any]:
    """``tables`` restricted to the (index, method) rows that every one of them holds."""
    keys = [set(zip(t["index"], t["method"], strict=True)) for t in tables]
    common = set.intersection(*keys)
    return [t[[k in common for k in zip(t["index"], t["method"], strict=True)]]
            .reset_index(drop=True) for t in tables]


def load_pair(root: str | Path, pair: Pair) -> dict[str, tuple[Any, Any]]:
    """``{conventions: (base rows, other rows)}`` of ``pair``, each of the four tables
    restricted to the rows (image, method) all four share: the seeded 2,000-image subset and
    the methods of the authors' files. ValueError if a file names other conventions."""
    from ..metrics import read_results

    paths = {c: [Path(root) / run / f for run in (pair.base, pair.other)]
             for c, f in FILES.items()}
    for c, ps in paths.items():
        for p in ps:
            if (got := _conventions_of(p)) != c:
                raise ValueError(f"{p} holds the {got!r} conventions, not {c!r}")
    tables = _shared([read_results(p) for ps in paths.values() for p in ps])
    return {c: (tables[2 * i], tables[2 * i + 1]) for i, c in enumerate(paths)}


def compare_conventions(loaded: Mapping[str, tuple[Any, Any]], arch: str = "",
                        comparison: str = "") -> Any:
    """The paired comparison ``other - base`` once per set of conventions, side by side.

    Args:
        loaded: ``{conventions: (base, other)}`` per-image tables (:func:`load_pair`),
            ``"ours"`` and ``"authors"``.
        arch, comparison: copied into the columns of the same names.

    Returns:
        A DataFrame, one row per (method, metric of :data:`CURVE_METRICS`), methods in the
        book's order: ``arch``, ``comparison``, ``method``, ``metric``, ``images`` (pairs,
        the fewer of the two sets), then for each set ``c``: ``c difference`` (mean of other
        - base, points), ``c ci low``, ``c ci high``, ``c ci half-width`` (95%), ``c
        verdict`` and ``c bonferroni verdict`` (``"better"``, ``"worse"`` or ``"no clear
        difference"``, :func:`~interpretable.tables.paired_comparison`; Bonferroni over the
        comparison's method x metric cells, all five metrics, as the chapter's heat maps),
        then ``verdict changes`` and ``bonferroni verdict changes`` (bool: the two sets'
        verdicts differ).
    """
    import pandas as pd

    names = list(loaded)
    parts = []
    for c in names:
        base, other = loaded[c]
        cmp = paired_comparison(base, other).set_index(["method", "metric"])
        cols = ["difference", "ci low", "ci high", "ci half-width", "verdict",
                "bonferroni verdict", "images"]
        parts.append(cmp[cols].rename(columns={k: f"{c} {k}" for k in cols}))
    out = pd.concat(parts, axis=1, join="inner").reset_index()
    out = out[out["metric"].isin(CURVE_METRICS)]
    out["images"] = out[[f"{c} images" for c in names]].min(axis=1)
    out = out.drop(columns=[f"{c} images" for c in names])
    for k in ("verdict", "bonferroni verdict"):
        out[f"{k} changes"] = out[[f"{c} {k}" for c in names]].nunique(axis=1) > 1
    order = {m: i for i, m in enumerate(method_order(out["method"]))}
    out = out.sort_values(["method", "metric"], key=lambda s: s.map(
        order if s.name == "method" else CURVE_METRICS.index), kind="stable")
    head = ["arch", "comparison", "method", "metric", "images"]
    out = out.assign(arch=arch, comparison=comparison)
    return out[head + [c for c in out.columns if c not in head]].reset_index(drop=True)


def sensitivity(root: str | Path, pairs: Iterable[Pair] | None = None) -> Any:
    """:func:`compare_conventions` for every pair of ``pairs`` (default
    :func:`default_pairs`) whose files are complete, one table (empty when none is); prints
    one line naming the pending pairs, if any."""
    import pandas as pd

    ready, pending = available(root, default_pairs(root) if pairs is None else pairs)
    if pending:
        print("pending (no complete authors' results yet): " + "; ".join(
            f"{p.other} vs {p.base}" for p in pending))
    tables = [compare_conventions(load_pair(root, p), p.arch, p.comparison) for p in ready]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _cell(d: float, h: float, v: str, bv: str) -> str:
    # the text of interpretable.tables.paired_grid
    return (f"{d:+.2f} ± {h:.2f}" + ("" if v == _NONE else f" {v}")
            + ("" if bv == _NONE else "*"))


def verdict_table(table: Any, sets: Sequence[str] = ("ours", "authors")) -> Any:
    """:func:`sensitivity` as text, indexed by (network, comparison, method, metric): per set
    of conventions ``"+0.37 ± 0.27 worse*"`` (change, 95% half-width, verdict unless none,
    ``*`` when it holds after Bonferroni), then ``changes`` ("yes" when the verdicts differ)
    and ``images``."""
    out = table.assign(network=table["arch"].map(lambda a: ARCH_NAMES.get(a, a)))
    for c in sets:
        out[c] = [_cell(*r) for r in zip(out[f"{c} difference"], out[f"{c} ci half-width"],
                                         out[f"{c} verdict"], out[f"{c} bonferroni verdict"],
                                         strict=True)]
    out["changes"] = out["verdict changes"].map({True: "yes", False: ""})
    return out.set_index(["network", "comparison", "method", "metric"])[
        [*sets, "changes", "images"]]


def sensitivity_figure(table: Any, sets: Sequence[str] = ("ours", "authors"),
                       title: str | None = None):
    """The two sets' intervals side by side: one row of panels per comparison, one panel
    per metric of :data:`CURVE_METRICS`, methods down; per method the improvement (``sign *
    (other - base)``, right = better) with its 95% interval under each set (circle: the
    first, square: the second), coloured by its verdict (blue better, red worse, grey none);
    a method whose verdict changes is named in bold. Returns a Figure."""
    from matplotlib.lines import Line2D

    if not len(table):
        raise ValueError("table is empty: nothing to draw")
    groups = list(dict.fromkeys(zip(table["arch"], table["comparison"], strict=True)))
    methods = method_order(table["method"])
    fig = _figure(8.0, (0.45 * len(methods) + 1.1) * len(groups) + 0.9)
    axes = fig.subplots(len(groups), len(CURVE_METRICS), squeeze=False)
    markers, offsets = ("o", "s"), (-0.15, 0.15)
    for row, (arch, comparison) in zip(axes, groups, strict=True):
        g = table[(table["arch"] == arch) & (table["comparison"] == comparison)]
        for ax, name in zip(row, CURVE_METRICS, strict=True):
            sign, d = metric(name).sign, g[g["metric"] == name].set_index("method")
            ax.axvline(0, color="black", linewidth=0.7)
            for i, m in enumerate(methods):
                if m not in d.index:
                    continue
                for c, mk, off in zip(sets, markers, offsets, strict=False):
                    color = _COLORS[d.loc[m, f"{c} verdict"]]
                    ax.errorbar(sign * d.loc[m, f"{c} difference"], i + off,
                                xerr=d.loc[m, f"{c} ci half-width"], fmt=mk, color=color,
                                markersize=5, capsize=2, elinewidth=1.2)
            ax.set_yticks(range(len(methods)), methods)
            for t, m in zip(ax.get_yticklabels(), methods, strict=True):
                if m in d.index and bool(d.loc[m, "verdict changes"]):
                    t.set_fontweight("bold")
            ax.set_ylim(len(methods) - 0.5, -0.5)
            ax.set_title(f"{ARCH_NAMES.get(arch, arch)}, {comparison}\n"
                         f"{metric(name).title}")
    for ax in axes[-1]:
        ax.set_xlabel("improvement (points), right = better")
    handles = [Line2D([], [], marker=mk, linestyle="", color="black", label=f"{c} conventions")
               for c, mk in zip(sets, markers, strict=False)]
    handles += [Line2D([], [], marker="o", linestyle="", color=col, label=v)
                for v, col in _COLORS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=3)
    if title:
        fig.suptitle(title)
    return fig
