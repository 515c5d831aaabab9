"""The lambda sweep (METHODS.md section 2, "The lambda sweep"): its grid, its run folders and
the rule that picks lambda* from the finished runs.

Every sweep run fine-tunes the architecture's reference baseline with the ``finetune`` preset
(same batches, same order, same schedule, same seed) and differs only in lambda and
``gradient_of``; lambda = 0 is the control of both curves. Run folders:
``reference/sweep/<arch>/<gradient_of>_lam<lambda>/`` (``logit_lam0`` is the control).

**The rule** (fixed before any sweep run existed; :func:`choose_lambda`):

1. For each ``gradient_of`` curve, lambda*(curve) is the largest lambda of its grid whose test
   top-1 (all 10,000 images) is at least the control's top-1 minus 1.5 points. No such lambda:
   the curve has no lambda*.
2. Between the curves that have one, the better ``gradient_of`` is the one whose run at its
   lambda* has the higher mean cos(g, g~) of the *logit* gradient on the test images (what
   saliency and the CAMs differentiate); ``logit`` on a tie.
3. MobileNet-V2's sweep has the ``logit`` curve; its ``loss`` curve (same grid) is run only
   if ResNet-18's better ``gradient_of`` is ``loss``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import data, default_device, models
from ..training import GRADIENT_OF, accuracy_and_alignment

__all__ = ["GRID", "TOLERANCE", "BASELINES", "REPLICATES", "run_name", "run_dir", "planned",
           "summaries", "table", "choose_lambda", "verify_run", "replicate_dir"]

#: lambda values of each curve, per architecture (the control lambda = 0 is separate).
GRID: dict[str, dict[str, tuple[float, ...]]] = {
    "resnet18": {
        "logit": (7.5e-3, 0.1, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0),
        "loss": (7.5e-3, 1.0, 2.0, 3.0, 5.0),
    },
    # 0.5 and 1.5 added (as in ResNet-18's grid) before any MobileNet-V2 run existed, once
    # ResNet-18 had shown its bend between 0.5 and 2. 0.1 added (as in ResNet-18's grid) when
    # the first regularized MobileNet-V2 run, lambda 1, was at 19% top-1 after one of its two
    # epochs, before any other MobileNet-V2 run at lambda > 0 had finished; no point is added
    # after this one.
    "mobilenet_v2": {
        "logit": (7.5e-3, 0.1, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0),
        "loss": (7.5e-3, 0.1, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0),  # only if ResNet-18 picks "loss"
    },
}
#: Accuracy a run may lose against the control and still count (points of top-1).
TOLERANCE = 1.5
#: The reference run each architecture's sweep starts from.
BASELINES = {"resnet18": "resnet18_baseline", "mobilenet_v2": "mobilenet_v2_baseline"}
#: Sweep runs trained again with other seeds (``{arch: {(gradient_of, lambda): seeds}}``):
#: ResNet-18's control and its lambda* = 0.5 (by the rule), seed 1. Added after the sweep and
#: its metrics were known, to measure how much two fine-tunings differ that differ only in the
#: seed (batch order, augmentation): they choose nothing, they size the noise of training.
REPLICATES: dict[str, dict[tuple[str, float], tuple[int, ...]]] = {
    "resnet18": {("logit", 0.0): (1,), ("logit", 0.5): (1,)},
}


def run_name(gradient_of: str, lam: float) -> str:
    """Folder name of a sweep run, e.g. ``logit_lam0.3``; ``logit_lam0`` is the control."""
    return f"{'logit' if lam == 0 else gradient_of}_lam{lam:g}"


def run_dir(root: str | Path, arch: str, gradient_of: str, lam: float) -> Path:
    """``root/sweep/<arch>/<run_name>`` (``root``: the reference folder)."""
    return Path(root) / "sweep" / arch / run_name(gradient_of, lam)


def replicate_dir(root: str | Path, arch: str, gradient_of: str, lam: float, seed: int) -> Path:
    """``root/replicates/<arch>/<run_name>_seed<seed>``: a sweep run trained with another seed
    (outside ``sweep/``, so :func:`summaries` and the rule never see it)."""
    return Path(root) / "replicates" / arch / f"{run_name(gradient_of, lam)}_seed{seed}"


def planned(arch: str, curves: tuple[str, ...] | None = None) -> list[tuple[str, float]]:
    """``(gradient_of, lambda)`` of every run of ``arch``'s sweep, the control first."""
    if arch not in GRID:
        raise ValueError(f"arch must be one of {sorted(GRID)}, got {arch!r}")
    curves = curves if curves is not None else tuple(GRID[arch])
    return [("logit", 0.0)] + [(g, lam) for g in curves for lam in GRID[arch][g]]


def summaries(root: str | Path, arch: str) -> list[dict[str, Any]]:
    """The ``summary.json`` of every finished sweep run of ``arch`` (unordered)."""
    folder = Path(root) / "sweep" / arch
    out = []
    for path in sorted(folder.glob("*/summary.json")):
        s = json.loads(path.read_text())
        s["run"] = path.parent.name
        out.append(s)
    return out


def table(root: str | Path, arch: str) -> list[dict[str, Any]]:
    """One row per finished sweep run of ``arch``, sorted by (gradient_of, lambda).

    Keys: ``run``, ``gradient_of`` (``"control"`` for lambda = 0), ``lam``, ``top1``,
    ``top5``, ``cos`` (mean cos(g, g~) of the logit gradient), ``cos_low`` / ``cos_high`` (its
    95% interval), ``cos_loss`` (the same for the cross-entropy gradient), ``images``
    (alignment images), ``hours`` (wall clock of the run, pauses included).
    """
    rows = []
    for s in summaries(root, arch):
        lo, hi = s["test_align_logit_ci"]
        rows.append({
            "run": s["run"], "gradient_of": "control" if s["lam"] == 0 else s["gradient_of"],
            "lam": s["lam"], "top1": s["test_acc"], "top5": s["test_top5"],
            "cos": 1 - s["test_align_logit"], "cos_low": 1 - hi, "cos_high": 1 - lo,
            "cos_loss": 1 - s["test_align_loss"], "images": s["align_images"],
            "hours": s["seconds"] / 3600,
        })
    return sorted(rows, key=lambda r: (r["gradient_of"] != "control", r["gradient_of"],
                                       r["lam"]))


def choose_lambda(runs: list[dict[str, Any]], tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Apply the rule of the module docstring to finished sweep runs of one architecture.

    ``runs``: summary dicts with ``lam``, ``gradient_of``, ``test_acc`` and
    ``test_align_logit`` (1 - mean cos of the logit gradient). Returns ``{"lam",
    "gradient_of", "control_acc", "threshold", "per_curve": {curve: lambda* or None}}``;
    ``lam`` is None when no curve has a lambda*. Raises ValueError without a control run.
    """
    control = [r for r in runs if r["lam"] == 0]
    if not control:
        raise ValueError("runs hold no control (lam = 0): the rule measures against it")
    control_acc = float(control[0]["test_acc"])
    threshold = control_acc - tolerance
    per_curve: dict[str, float | None] = {}
    best: dict[str, dict[str, Any]] = {}
    for curve in sorted({r["gradient_of"] for r in runs if r["lam"] > 0}):
        ok = [r for r in runs if r["lam"] > 0 and r["gradient_of"] == curve
              and float(r["test_acc"]) >= threshold]
        top = max(ok, key=lambda r: r["lam"]) if ok else None
        per_curve[curve] = top["lam"] if top else None
        if top:
            best[curve] = top
    choice = None
    if best:
        # lower test_align_logit = higher mean cos; "logit" wins a tie (sorted after the key)
        choice = min(best, key=lambda c: (best[c]["test_align_logit"], c != "logit"))
    return {"lam": best[choice]["lam"] if choice else None, "gradient_of": choice,
            "control_acc": control_acc, "threshold": threshold, "per_curve": per_curve}


def verify_run(folder: str | Path, device=None, align_images: int | None = None,
               atol_acc: float = 0.0, atol_align: float = 1e-4,
               data_root: str | Path | None = None) -> dict[str, Any]:
    """Re-measure a finished run from its ``final.pt`` and compare with its ``summary.json``.

    Top-1 and top-5 on the whole test set must match exactly (``atol_acc`` points, default
    0); 1 - mean cos of both gradients on the first ``align_images`` test images (default:
    as many as the summary used) within ``atol_align`` (float rounding of a different batch
    split or thread count). Returns ``{"ok", "measured", "committed", "differences"}``.
    """
    folder = Path(folder)
    committed = json.loads((folder / "summary.json").read_text())
    n = committed["align_images"] if align_images is None else align_images
    model, _ = models.load_checkpoint(folder / "final.pt",
                                      map_location=device or default_device())
    got = accuracy_and_alignment(model, data.cifar100("test", root=data_root), device,
                                 align_images=n, gradient_of=GRADIENT_OF)
    # accuracy of the stored weights: float16 ones are measured again when they are written
    half = committed.get("weights_dtype") == "float16"
    diffs = {}
    for k in ("test_acc", "test_top5"):
        key = f"{k}_float16_weights" if half else k
        if key in committed:  # (runs written before top-5 of float16 weights was recorded)
            diffs[k] = abs(got[k] - committed[key])
    if n == committed["align_images"]:
        diffs.update({f"test_align_{g}": abs(got[f"test_align_{g}"] - committed[f"test_align_{g}"])
                      for g in GRADIENT_OF})
    ok = all(v <= (atol_acc if k in ("test_acc", "test_top5") else atol_align)
             for k, v in diffs.items())
    return {"ok": ok, "measured": got, "committed": committed, "differences": diffs}


def markdown(root: str | Path, arch: str) -> str:
    """The sweep of ``arch`` as a Markdown table, with lambda* by the rule (for READMEs)."""
    rows = table(root, arch)
    lines = ["| variant | lambda | top-1 % | top-5 % | cos(g, g~) [95% CI] | cos, loss gradient "
             "| hours |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['gradient_of']} | {r['lam']:g} | {r['top1']:.2f} | {r['top5']:.2f} "
                     f"| {r['cos']:.4f} [{r['cos_low']:.4f}, {r['cos_high']:.4f}] "
                     f"| {r['cos_loss']:.4f} | {r['hours']:.2f} |")
    if any(r["lam"] == 0 for r in rows):
        c = choose_lambda(summaries(root, arch))
        lines.append("")
        lines.append(f"lambda* = {c['lam']} ({c['gradient_of']}); control top-1 "
                     f"{c['control_acc']:.2f}%, threshold {c['threshold']:.2f}%; largest lambda "
                     f"within it per variant: {c['per_curve']}")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m interpretable.study.sweep [ROOT]: tables and lambda*
    import sys

    from .reference import find_root

    here = find_root(sys.argv[1] if len(sys.argv) > 1 else None)
    for name in GRID:
        print(f"## {name}\n\n{markdown(here, name)}\n")
