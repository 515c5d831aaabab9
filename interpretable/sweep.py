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

__all__ = ["GRID", "TOLERANCE", "BASELINES", "run_name", "run_dir", "planned", "summaries",
           "choose_lambda"]

#: lambda values of each curve, per architecture (the control lambda = 0 is separate).
GRID: dict[str, dict[str, tuple[float, ...]]] = {
    "resnet18": {
        "logit": (7.5e-3, 0.1, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0),
        "loss": (7.5e-3, 1.0, 2.0, 3.0, 5.0),
    },
    "mobilenet_v2": {
        "logit": (7.5e-3, 0.3, 1.0, 2.0, 3.0),
        "loss": (7.5e-3, 0.3, 1.0, 2.0, 3.0),   # only if ResNet-18 picks "loss" (rule 3)
    },
}
#: Accuracy a run may lose against the control and still count (points of top-1).
TOLERANCE = 1.5
#: The reference run each architecture's sweep starts from.
BASELINES = {"resnet18": "resnet18_baseline", "mobilenet_v2": "mobilenet_v2_baseline"}


def run_name(gradient_of: str, lam: float) -> str:
    """Folder name of a sweep run, e.g. ``logit_lam0.3``; ``logit_lam0`` is the control."""
    return f"{'logit' if lam == 0 else gradient_of}_lam{lam:g}"


def run_dir(root: str | Path, arch: str, gradient_of: str, lam: float) -> Path:
    """``root/sweep/<arch>/<run_name>`` (``root``: the reference folder)."""
    return Path(root) / "sweep" / arch / run_name(gradient_of, lam)


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
