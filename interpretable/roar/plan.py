"""The ROAR / KAR study plan: one fixed recipe, the pilot's epoch rule, folders and the table.

METHODS.md section 5 ("ROAR / KAR"). No torch import: ``reference/run_all.py`` builds its jobs
from this module.

**Recipe** (:data:`RECIPE`, :func:`recipe`): every cell trains a fresh width-0.25 ResNet-18 from
scratch with the ``cpu`` preset (SGD lr 0.1, nesterov momentum 0.9, weight decay 5e-4, batch
128, one-cycle schedule, label smoothing 0.1) and plain cross-entropy (lambda 0), seed 0,
no alignment evaluation (``align_eval_images`` 0), for ``E`` epochs instead of 20; the
learning-rate warm-up keeps the preset's share of the run (3 of 20 epochs: 0.15 E).

**The pilot rule** (fixed and committed before any pilot run finished; :func:`choose_epochs`):
the unmodified retrain (same recipe, original images, seed 0) is run for each of
:data:`PILOT_EPOCHS` = 4, 6, 8 epochs. ``E`` is the fewest of them whose test top-1 is at least
:data:`REFERENCE_TOP1` - :data:`TOLERANCE` = 65.07 - 5 = 60.07% (65.07%: the 20-epoch
``reference/resnet18_baseline``, same preset, lambda 0); if none qualifies, ``E`` is the largest
(8). The choice is made as soon as it is certain (the runs of all smaller counts finished and
failed the bar, and this one finished), so it never changes once made. Then the unmodified
retrain is repeated at ``E`` with seeds :data:`PILOT_SEEDS` (1, 2): their spread is the
yardstick of what training randomness alone does to a cell's top-1. Budget: a cell costs about
E x 3.5 minutes on one thread plus a minute of loading and evaluation, so the 24 cells plus
``unmodified`` (copied from the seed-0 pilot run) take about 9 / 6.3 / 12 lane-hours for
E = 6 / 4 / 8, the pilot about 1.2 hours plus 2 x E x 3.6 minutes.

**Folders** below ``root`` (default ``reference/roar``): ``<mode>_<method>_t<fraction>/``,
``unmodified/``, ``pilot/unmodified_e<E>_seed<S>/`` and ``cache/<method>.npy`` (+ ``.json``),
the rank files (not committed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from interpretable.training import preset

from ._common import (
    CELL_MODES,
    DEFAULT_ROOT,
    FRACTIONS,
    METHODS,
    MODES,
    TEST_METHODS,
    check_fraction,
    check_method,
    check_mode,
    read_json,
)

__all__ = ["RECIPE", "WARMUP_SHARE", "PILOT_EPOCHS", "PILOT_SEEDS", "REFERENCE_TOP1",
           "TOLERANCE", "CELL_FORMAT", "recipe", "cell_dir", "pilot_dir", "rank_path",
           "choose_epochs", "pilot_results", "chosen_epochs", "pilot_spread", "grid", "table",
           "table_lines", "reading"]

#: Share of the epochs spent in the linear learning-rate warm-up (the cpu preset: 3 of 20).
WARMUP_SHARE = 0.15
#: The fixed recipe of every cell; ``epochs`` and ``warmup_epochs`` come from :func:`recipe`.
RECIPE: dict[str, Any] = {
    **preset("cpu", "resnet18"), "arch": "resnet18", "lam": 0.0, "seed": 0,
    "align_eval_images": 0, "epochs": None, "warmup_epochs": None,
}
#: Epoch counts of the pilot's unmodified retrains (seed 0).
PILOT_EPOCHS: tuple[int, ...] = (4, 6, 8)
#: Further seeds of the unmodified retrain at the chosen epoch count.
PILOT_SEEDS: tuple[int, ...] = (1, 2)
#: Test top-1 (%) of reference/resnet18_baseline: the same preset for 20 epochs, lambda 0.
REFERENCE_TOP1 = 65.07
#: Top-1 points an unmodified retrain may lose against REFERENCE_TOP1 and still qualify.
TOLERANCE = 5.0
#: ``format`` of a cell's provenance.json.
CELL_FORMAT = "interpretable-roar-cell-v1"


def recipe(epochs: int, seed: int = 0) -> dict[str, Any]:
    """The TrainConfig settings of a cell: :data:`RECIPE` for ``epochs`` and ``seed``."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in RECIPE.items()}
    out.update(epochs=epochs, seed=seed, warmup_epochs=round(WARMUP_SHARE * epochs, 6))
    return out


def cell_dir(root: str | os.PathLike, mode: str, method: str | None = None,
             fraction: float | None = None) -> Path:
    """``root/<mode>_<method>_t<fraction:g>`` (e.g. ``roar_gradcam_t0.5``), or
    ``root/unmodified`` for mode ``unmodified`` (then method and fraction must be None)."""
    mode = check_mode(mode, CELL_MODES)
    if mode == "unmodified":
        if method is not None or fraction is not None:
            raise ValueError("method and fraction must be None for mode 'unmodified'")
        return Path(root) / "unmodified"
    method = check_method(method, METHODS + TEST_METHODS)
    return Path(root) / f"{mode}_{method}_t{check_fraction(fraction):g}"


def pilot_dir(root: str | os.PathLike, epochs: int, seed: int = 0) -> Path:
    """``root/pilot/unmodified_e<epochs>_seed<seed>``: an unmodified retrain of the pilot."""
    return Path(root) / "pilot" / f"unmodified_e{epochs}_seed{seed}"


def rank_path(cache: str | os.PathLike, method: str, seed: int = 0) -> Path:
    """``cache/<method>.npy`` (``random_seed<S>.npy`` for another seed of the random map)."""
    method = check_method(method)
    name = f"random_seed{seed}" if method == "random" and seed else method
    return Path(cache) / f"{name}.npy"


def choose_epochs(results: dict[int, float | None]) -> int | None:
    """The pilot rule: ``{epochs: seed-0 unmodified top-1 or None while unfinished}`` -> E.

    The fewest of :data:`PILOT_EPOCHS` whose top-1 is >= REFERENCE_TOP1 - TOLERANCE, the largest
    if none is; None while that is not yet certain.
    """
    for epochs in sorted(PILOT_EPOCHS):
        top1 = results.get(epochs)
        if top1 is None:
            return None
        if top1 >= REFERENCE_TOP1 - TOLERANCE:
            return epochs
    return max(PILOT_EPOCHS)


def _cell_provenance(folder: Path) -> dict[str, Any] | None:
    p = read_json(folder / "provenance.json")
    return p if p is not None and p.get("format") == CELL_FORMAT else None


def pilot_results(root: str | os.PathLike = DEFAULT_ROOT) -> dict[tuple[int, int], float]:
    """``{(epochs, seed): test top-1}`` of the finished pilot runs below ``root/pilot``."""
    out = {}
    for prov in sorted((Path(root) / "pilot").glob("*/provenance.json")):
        p = _cell_provenance(prov.parent)
        if p is not None and p["mode"] == "unmodified":
            out[(int(p["epochs"]), int(p["seed"]))] = float(p["test_acc"])
    return out


def chosen_epochs(root: str | os.PathLike = DEFAULT_ROOT) -> int | None:
    """The epoch count the pilot rule gives from the runs finished below ``root``, or None."""
    done = pilot_results(root)
    return choose_epochs({e: done.get((e, 0)) for e in PILOT_EPOCHS})


def pilot_spread(root: str | os.PathLike = DEFAULT_ROOT) -> dict[str, Any]:
    """What training randomness alone does to a cell's top-1: the unmodified retrains at the
    chosen epoch count, seed 0 and :data:`PILOT_SEEDS`.

    Returns ``{"epochs": E, "top1": {seed: top-1}, "spread": max - min}`` (points); a
    ValueError while the pilot has not chosen E or a seed's run is unfinished.
    """
    epochs = chosen_epochs(root)
    if epochs is None:
        raise ValueError(f"the pilot below {root} has not chosen the epochs yet")
    done = pilot_results(root)
    seeds = (0, *PILOT_SEEDS)
    missing = [s for s in seeds if (epochs, s) not in done]
    if missing:
        raise ValueError(f"the pilot's unmodified retrains at {epochs} epochs with seed(s) "
                         f"{', '.join(map(str, missing))} are not finished below {root}")
    top1 = {s: done[(epochs, s)] for s in seeds}
    return {"epochs": epochs, "top1": top1,
            "spread": round(max(top1.values()) - min(top1.values()), 6)}


def grid() -> list[tuple[str, str, float]]:
    """The 24 cells ``(mode, method, fraction)`` in run order: fraction 0.5, then 0.1, 0.9
    (each fraction complete before the next); per fraction the methods in :data:`METHODS`
    order (the random baseline first), ROAR then KAR."""
    order = [0.5] + [f for f in FRACTIONS if f != 0.5]
    return [(mode, method, f) for f in order for method in METHODS for mode in MODES]


def table(root: str | os.PathLike = DEFAULT_ROOT) -> list[dict[str, Any]]:
    """One row per finished cell directly below ``root`` (pilot runs excluded): ``mode``,
    ``method``, ``fraction`` (None for unmodified), ``top1``, ``top5`` (test set, modified
    like the training set, %), ``epochs``, ``seed`` and ``cell`` (the folder name); unmodified
    first, then ROAR, KAR, by method and fraction."""
    rows = []
    for prov in Path(root).glob("*/provenance.json"):
        p = _cell_provenance(prov.parent)
        if p is None:
            continue
        rows.append({"mode": p["mode"], "method": p["method"], "fraction": p["fraction"],
                     "top1": p["test_acc"], "top5": p["test_top5"], "epochs": p["epochs"],
                     "seed": p["seed"], "cell": prov.parent.name})
    known = list(METHODS + TEST_METHODS)

    def key(r: dict[str, Any]) -> tuple:
        method = known.index(r["method"]) if r["method"] in known else len(known)
        return (CELL_MODES.index(r["mode"]), method, str(r["method"]), r["fraction"] or 0.0)

    return sorted(rows, key=key)


def table_lines(root: str | os.PathLike = DEFAULT_ROOT) -> list[str]:
    """:func:`table` as aligned text, each ROAR / KAR cell read against the random map and
    Grad-CAM (:func:`reading`, points, positive = the map found more; ``*`` beyond the
    pilot's seed spread) once the spread is known, then the pilot runs and the epoch choice."""
    rows = table(root)
    try:
        spread = pilot_spread(root)["spread"]
    except ValueError:
        spread = None
    read = {} if spread is None else reading(rows, spread)
    lines = [f"{'mode':11} {'method':8} {'t':>4} {'top-1':>6} {'top-5':>6} {'epochs':>6}"
             + ("" if spread is None else f" {'vs random':>10} {'vs Grad-CAM':>12}")]

    def signed(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:+.2f}" + ("*" if abs(value) > spread else " ")

    for r in rows:
        t = "-" if r["fraction"] is None else f"{r['fraction']:g}"
        line = (f"{r['mode']:11} {r['method'] or '-':8} {t:>4} {r['top1']:6.2f} "
                f"{r['top5']:6.2f} {r['epochs']:6d}")
        x = read.get((r["mode"], r["method"], r["fraction"]))
        if x is not None:
            line += f" {signed(x['vs_random']):>10} {signed(x['vs_reference']):>12}"
        lines.append(line)
    pilot = pilot_results(root)
    for (epochs, seed), top1 in sorted(pilot.items()):
        lines.append(f"pilot: {epochs} epochs, seed {seed}: top-1 {top1:.2f}%")
    e = chosen_epochs(root)
    lines.append(f"epochs chosen by the pilot rule: {e if e is not None else 'not yet'} "
                 f"(fewest of {PILOT_EPOCHS} with top-1 >= {REFERENCE_TOP1:g} - {TOLERANCE:g})")
    if spread is not None:
        lines.append(f"spread of the pilot's seeds: {spread:.2f} points (* = beyond it; "
                     "vs columns: positive = the map found more)")
    return lines


def reading(rows: list[dict[str, Any]], spread: float, reference: str = "gradcam"
            ) -> dict[tuple[str, str, float], dict[str, Any]]:
    """Each finished cell against the random map and against ``reference`` (Grad-CAM), with
    the pilot's seed spread as the yardstick (METHODS.md section 5).

    ``rows``: :func:`table`; ``spread``: :func:`pilot_spread`'s ``spread`` (points). A map
    "found more" than another when its cell is lower under ROAR (what it removed was needed)
    or higher under KAR (what it kept was enough), so ``vs_random`` and ``vs_reference`` are
    signed that way: positive = better, in points of top-1 (None without that cell).
    ``beats_random``: better than the random map by more than ``spread``;
    ``on_par``: within ``spread`` of ``reference`` (its own rows too); ``worse_than_reference``
    and ``better_than_reference``: beyond it. One dict per ROAR / KAR cell, keyed by
    ``(mode, method, fraction)``, e.g. ``reading(rows, 0.39)["roar", "fastcam", 0.5]``, in
    table order.
    """
    if isinstance(spread, bool) or not isinstance(spread, (int, float)) or not spread >= 0:
        raise ValueError(f"spread must be a non-negative number of points; got {spread!r}")
    top1 = {(r["mode"], r["method"], r["fraction"]): r["top1"] for r in rows}
    out: dict[tuple[str, str, float], dict[str, Any]] = {}
    for r in rows:
        if r["mode"] not in MODES:
            continue
        sign = -1.0 if r["mode"] == "roar" else 1.0

        def versus(method: str, r: dict[str, Any] = r, sign: float = sign) -> float | None:
            other = top1.get((r["mode"], method, r["fraction"]))
            # + 0.0: no "-0.00" for a tie
            return None if other is None else round(sign * (r["top1"] - other), 6) + 0.0

        vs_random, vs_ref = versus("random"), versus(reference)
        out[r["mode"], r["method"], r["fraction"]] = {
            "mode": r["mode"], "method": r["method"], "fraction": r["fraction"],
            "top1": r["top1"], "vs_random": vs_random, "vs_reference": vs_ref,
            "beats_random": None if vs_random is None or r["method"] == "random"
                else vs_random > spread,
            "on_par": None if vs_ref is None else abs(vs_ref) <= spread,
            "better_than_reference": None if vs_ref is None else vs_ref > spread,
            "worse_than_reference": None if vs_ref is None else vs_ref < -spread}
    return out
