"""The from-scratch dose-response study (METHODS.md section 2, "From scratch").

The paper trains from scratch; the reference study has two from-scratch extremes (the
paper's lambda = 7.5e-3, inert, and the sweep's lambda* = 0.5, which costs ResNet-18 20 points
and destroys MobileNet-V2). These runs fill the range between them: the ``cpu`` preset (20
epochs), logit gradient, lambda ramped up over 3 epochs as in the aligned runs, at
:data:`LAMBDAS`, and a second baseline seed (lambda 0, seed 1) as the yardstick of what
training randomness alone does to every number. Run folders:
``reference/scratch/<arch>/lam<lambda>`` and ``reference/scratch/<arch>/lam0_seed1``.

**The rule** (fixed and committed before any of these runs finished; :func:`choose_lambda`):

1. The from-scratch lambda* of ResNet-18 is the largest lambda of :data:`LAMBDAS` whose test
   top-1 (``test_acc`` of ``summary.json``, all 10,000 images) is at least the top-1 of the
   reference baseline ``resnet18_baseline`` (seed 0, the same preset) minus
   :data:`TOLERANCE` = 1.5 points. If none qualifies, there is no from-scratch lambda* and the
   study says so.
2. MobileNet-V2 gets one from-scratch run at that lambda, or at the smallest of
   :data:`LAMBDAS` (0.05) if none qualified, and its own seed-1 baseline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["LAMBDAS", "TOLERANCE", "LAM_WARMUP", "ALIGN_IMAGES", "BASELINES", "run_dir",
           "train_args", "choose_lambda", "mobilenet_lambda", "summary", "table", "markdown",
           "RESULT_FILES", "results_complete", "verdicts", "verdicts_markdown"]

#: lambda values trained from scratch (ResNet-18); the rule picks among them.
LAMBDAS: tuple[float, ...] = (0.05, 0.1, 0.2)
#: Accuracy a from-scratch run may lose against the baseline and still count (top-1 points).
TOLERANCE = 1.5
#: Epochs over which lambda ramps up (the aligned runs' ramp).
LAM_WARMUP = 3.0
#: Test images on which cos(g, g~) is measured, with its 95% interval.
ALIGN_IMAGES = 2000
#: The reference run (seed 0) each architecture's from-scratch runs are compared with.
BASELINES = {"resnet18": "resnet18_baseline", "mobilenet_v2": "mobilenet_v2_baseline"}
#: The CAM result files of a from-scratch run (``run_all``'s evaluate jobs): Grad-CAM,
#: Grad-CAM++ and FastCAM on all 10,000 test images, Score-CAM on the seeded 2,000.
RESULT_FILES = ("metrics.csv.gz", "metrics_scorecam.csv.gz")


def run_dir(root: str | Path, arch: str, lam: float, seed: int = 0) -> Path:
    """``root/scratch/<arch>/lam<lambda>`` (``_seed<seed>`` appended for seed != 0)."""
    name = f"lam{lam:g}" + (f"_seed{seed}" if seed else "")
    return Path(root) / "scratch" / arch / name


def train_args(arch: str, lam: float, seed: int = 0) -> list[str]:
    """The ``python -m interpretable train`` options of a run (without ``--out``).

    lambda = 0 is the baseline recipe (as ``resnet18_baseline`` was trained) with another
    seed; lambda > 0 adds the logit-gradient regularizer with the aligned runs' ramp.
    """
    args = ["train", "--preset", "cpu", "--arch", arch, "--lam", f"{lam:g}"]
    if lam > 0:
        args += ["--gradient-of", "logit", "--lam-warmup", f"{LAM_WARMUP:g}"]
    return args + ["--seed", str(seed), "--align-eval-images", str(ALIGN_IMAGES)]


def summary(root: str | Path, arch: str, lam: float, seed: int = 0) -> dict[str, Any] | None:
    """The ``summary.json`` of a finished run, None while it is unfinished."""
    path = run_dir(root, arch, lam, seed) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def choose_lambda(baseline_acc: float, runs: dict[float, float],
                  tolerance: float = TOLERANCE) -> float | None:
    """Rule 1: the largest lambda of ``runs`` (``{lambda: test top-1}``) whose top-1 is at
    least ``baseline_acc - tolerance``; None if none is."""
    ok = [lam for lam, acc in runs.items() if lam > 0 and acc >= baseline_acc - tolerance]
    return max(ok) if ok else None


def mobilenet_lambda(root: str | Path) -> tuple[float | None, float] | None:
    """Rule 2: ``(ResNet-18's from-scratch lambda* or None, the lambda MobileNet-V2 trains
    at)``; None while the answer is not certain.

    The answer is certain once the baseline is finished and, from the largest lambda of
    :data:`LAMBDAS` down, every run is finished and outside the tolerance up to the first
    one inside it (lambda*: the smaller runs cannot change it), or all of them are (no
    lambda*). The outcome is :func:`choose_lambda`'s over all runs; it is only known earlier.
    """
    base = Path(root) / BASELINES["resnet18"] / "summary.json"
    if not base.is_file():
        return None
    base_acc = json.loads(base.read_text())["test_acc"]
    for lam in sorted(LAMBDAS, reverse=True):
        s = summary(root, "resnet18", lam)
        if s is None:
            return None
        if choose_lambda(base_acc, {lam: s["test_acc"]}) is not None:
            return lam, lam
    return None, min(LAMBDAS)


def _row(folder: Path, run: str, variant: str, seed: int) -> dict[str, Any]:
    """One run of :func:`table`: the summary's accuracy, cos(g, g~) of the logit gradient
    (from ``alignment.json`` when there is one, else from the summary), or the epochs done."""
    from . import alignment

    config = json.loads((folder / "config.json").read_text()) if (
        folder / "config.json").is_file() else {}
    row: dict[str, Any] = {"run": run, "variant": variant, "lam": float(config.get("lam", 0.0)),
                           "seed": seed, "finished": False, "epochs": config.get("epochs")}
    s = folder / "summary.json"
    if not s.is_file():
        log = folder / "log.jsonl"
        row["epoch"] = len(log.read_text().splitlines()) if log.is_file() else 0
        return row
    s = json.loads(s.read_text())
    row.update(finished=True, epoch=s["epochs"], lam=float(s["lam"]), top1=s["test_acc"],
               top5=s["test_top5"])
    measured = alignment.read(folder)
    if measured is not None:
        c = measured["summary"]["logit"]
        row.update(cos=c["mean"], cos_low=c["low"], cos_high=c["high"],
                   images=measured["images"])
    else:
        lo, hi = s["test_align_logit_ci"]
        row.update(cos=1 - s["test_align_logit"], cos_low=1 - hi, cos_high=1 - lo,
                   images=s["align_images"])
    return row


def table(root: str | Path, arch: str) -> list[dict[str, Any]]:
    """Every from-scratch run of ``arch`` (20 epochs, ``cpu`` preset), the reference runs
    included, sorted by lambda then seed.

    Rows: ``run`` (folder below ``root``), ``variant`` ("baseline" for lambda 0, "loss" for
    the paper-lambda reference run, which aligns the loss gradient without a ramp, "logit"
    for the others), ``lam``, ``seed``, ``finished``, ``epoch`` / ``epochs``; finished runs
    add ``top1``, ``top5`` (all 10,000 test images) and ``cos`` with ``cos_low`` /
    ``cos_high`` (mean cos(g, g~) of the logit gradient, 95% interval) on ``images`` test
    images. Runs whose folder does not exist yet are left out.
    """
    root = Path(root)
    rows = []
    for kind, variant in (("baseline", "baseline"), ("regularized", "loss"),
                          ("aligned", "logit")):
        folder = root / f"{arch}_{kind}"
        if folder.is_dir():
            rows.append(_row(folder, folder.name, variant, 0))
    for lam, seed in [(0.0, 1)] + [(lam, 0) for lam in LAMBDAS]:
        folder = run_dir(root, arch, lam, seed)
        if folder.is_dir():
            rows.append(_row(folder, str(folder.relative_to(root)),
                             "baseline" if lam == 0 else "logit", seed))
    return sorted(rows, key=lambda r: (r["lam"], r["seed"]))


def markdown(root: str | Path, arch: str) -> str:
    """The from-scratch runs of ``arch`` as a Markdown table (for READMEs and notes)."""
    lines = ["| run | lambda | seed | gradient | top-1 % | top-5 % | cos(g, g~) [95% CI] "
             "| images |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in table(root, arch):
        if not r["finished"]:
            lines.append(f"| `{r['run']}` | {r['lam']:g} | {r['seed']} | | epoch {r['epoch']} "
                         f"of {r['epochs']} | | | |")
            continue
        lines.append(f"| `{r['run']}` | {r['lam']:g} | {r['seed']} | {r['variant']} "
                     f"| {r['top1']:.2f} | {r['top5']:.2f} | {r['cos']:.4f} [{r['cos_low']:.4f}, "
                     f"{r['cos_high']:.4f}] | {r['images']} |")
    return "\n".join(lines)


def results_complete(folder: str | Path) -> bool:
    """Whether the CAM results of run ``folder`` are complete: ``metrics.csv.gz`` and every
    other of :data:`RESULT_FILES` there has its provenance record (written last, when an
    evaluation ends), and a from-scratch run (below ``scratch/``) has all of them."""
    from ..metrics.runs import provenance_path

    folder = Path(folder)
    needed = RESULT_FILES if "scratch" in folder.parts else RESULT_FILES[:1]
    files = [f for f in RESULT_FILES if f in needed or (folder / f).is_file()]
    return all(provenance_path(folder / f).is_file() for f in files)


def verdicts(root: str | Path, arch: str) -> list[dict[str, Any]]:
    """The CAM verdicts of every from-scratch run of ``arch`` (:func:`table`'s runs) whose
    results are complete, against the seed-0 baseline and against the seed yardstick.

    Each run is paired image by image with the baseline
    (:func:`interpretable.tables.paired_comparison`: 4 methods x 5 metrics, 95% Student-t
    intervals, Bonferroni over the 20 cells) and read against the seed-1 baseline's own
    difference from the seed-0 one (:func:`interpretable.tables.beyond_seed`).

    Rows: ``run``, ``lam``, ``seed``, ``cells``, ``better`` / ``worse`` (clear verdicts),
    ``bonferroni`` (cells still clear after Bonferroni), ``counted`` (clear and larger in size
    than the seed alone; None without a complete seed-1 baseline, and for the seed-1 baseline
    itself, which is the yardstick), ``which`` (the counted cells, "method metric verdict",
    as :func:`interpretable.tables.seed_summary` writes them), ``counted_cells`` and
    ``cell_names`` (the counted cells and every cell, "method metric"). Needs pandas.
    """
    from ..compare import load_results
    from ..tables import beyond_seed, paired_comparison, seed_summary, verdict_counts

    root = Path(root)
    base = root / BASELINES[arch]
    if not results_complete(base):
        raise FileNotFoundError(f"{base}: its CAM results are not complete (python -m "
                                f"interpretable evaluate {base})")
    base_rows = load_results(base)
    runs = [r for r in table(root, arch) if r["run"] != BASELINES[arch] and r["finished"]
            and results_complete(root / r["run"])]
    compared = {r["run"]: paired_comparison(base_rows, load_results(root / r["run"]))
                for r in runs}
    yardstick = str(run_dir(".", arch, 0.0, 1))
    alone = compared.get(yardstick)
    out = []
    for r in runs:
        c = compared[r["run"]]
        n = verdict_counts({r["run"]: c}).iloc[0]
        row = {"run": r["run"], "lam": r["lam"], "seed": r["seed"], "cells": int(n["cells"]),
               "better": int(n["better"]), "worse": int(n["worse"]),
               "bonferroni": int(n["Bonferroni"]),
               "counted": None, "which": "", "counted_cells": [],
               "cell_names": [f"{m} {k}" for m, k in zip(c["method"], c["metric"],
                                                         strict=True)]}
        if alone is not None and r["run"] != yardstick:
            reading = beyond_seed(c, alone)
            s = seed_summary({r["run"]: reading}).iloc[0]
            row.update(counted=int(s["count"]), which=s["which"], counted_cells=[
                f"{m} {k}" for m, k in reading.index[reading["counts"]]])
        out.append(row)
    return out


def verdicts_markdown(root: str | Path, arch: str) -> str:
    """:func:`verdicts` beside :func:`table`'s accuracy and cosine, as a Markdown table (the
    closing table of the from-scratch study)."""
    rows = {r["run"]: r for r in table(root, arch)}
    lines = ["| run | lambda | seed | top-1 % | cos(g, g~) [95% CI] | better / worse "
             "(Bonferroni) of 20 | beyond the seed | which |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for v in verdicts(root, arch):
        r = rows[v["run"]]
        beyond = "yardstick" if v["counted"] is None and v["seed"] else (
            "-" if v["counted"] is None else str(v["counted"]))
        which = v["which"]
        if v["counted"] and v["counted"] > v["cells"] / 2:  # name the few that do not count
            rest = [c for c in v["cell_names"] if c not in v["counted_cells"]]
            which = "all but " + ", ".join(rest) if rest else f"all {v['cells']} cells"
        lines.append(f"| `{v['run']}` | {v['lam']:g} | {v['seed']} | {r['top1']:.2f} "
                     f"| {r['cos']:.3f} [{r['cos_low']:.3f}, {r['cos_high']:.3f}] "
                     f"| {v['better']} / {v['worse']} ({v['bonferroni']}) | {beyond} "
                     f"| {which} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m interpretable.study.scratch [ROOT]: the tables
    import sys

    from .reference import find_root

    here = find_root(sys.argv[1] if len(sys.argv) > 1 else None)
    for name in BASELINES:
        print(f"## {name}\n\n{markdown(here, name)}\n")
        try:
            print(f"CAM verdicts against {BASELINES[name]}:\n\n"
                  f"{verdicts_markdown(here, name)}\n")
        except (FileNotFoundError, ImportError) as e:  # no results yet, or no pandas
            print(f"CAM verdicts: {e}\n")
    print(f"rule: {mobilenet_lambda(here)}")
