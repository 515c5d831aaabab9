"""Per-image gradient alignment of a finished run, measured once and committed.

METHODS.md section 2. The training loop records 1 - mean cos(g, g~) with its
interval in ``summary.json``; the reference runs trained first recorded it for the loss
gradient only, on 1,000 images, without an interval. :func:`measure` re-measures any
finished run from its ``final.pt`` the way the from-scratch study reports it (both gradients,
the first 2,000 test images, 95% Student-t interval) and keeps the *per-image* cosines, so
that a build can re-verify the file on a sample of images (:func:`verify`) instead of
trusting a mean. ``python -m interpretable measure RUN`` writes ``RUN/alignment.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import data, default_device, models
from .._io import atomic_write_text, sha256_file
from ..provenance import command_line, git_info, now_utc
from ..stats import mean_interval
from ..training import GRADIENT_OF, per_image_cosines

__all__ = ["FILE", "IMAGES", "cosines", "measure", "read", "summary", "verify"]

#: the file :func:`measure` writes in a run folder
FILE = "alignment.json"
#: test images measured by default (the first ones, as the training loop measures them)
IMAGES = 2000


def cosines(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
            batch_size: int = 250) -> dict[str, np.ndarray]:
    """Per-image cos(g, g~) of both gradients (METHODS.md section 2), eval-mode BN.

    ``x``: (B, 3, H, W) normalized images, ``y``: (B,) true classes. Returns
    ``{"logit": (B,), "loss": (B,)}`` float64 arrays. The model's mode is restored.
    """
    was_training = model.training
    model.eval()
    out: dict[str, list[np.ndarray]] = {k: [] for k in GRADIENT_OF}
    try:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            for kind, c in per_image_cosines(model, xb, yb).items():
                out[kind].append(c.double().cpu().numpy())
    finally:
        model.train(was_training)
    return {k: np.concatenate(v) for k, v in out.items()}


def summary(cos: dict[str, Any]) -> dict[str, Any]:
    """``{"<kind>": {"mean", "low", "high"}}``: mean cos with its 95% interval per gradient."""
    return {k: mean_interval(np.asarray(v, dtype=np.float64)) for k, v in cos.items()}


def measure(folder: str | Path, images: int = IMAGES, device=None,
            data_root: str | Path | None = None, out: str | Path | None = None
            ) -> dict[str, Any]:
    """Measure the run in ``folder`` from its ``final.pt`` and write ``folder/alignment.json``
    (or ``out``).

    The file holds ``images``, the per-image cosines (``cos_logit``, ``cos_loss``, 7
    significant digits), their means with 95% intervals (``summary``), and provenance: the
    checkpoint's sha256, torch version, git commit, command and time. Written atomically.
    Returns what it wrote.
    """
    folder = Path(folder)
    ckpt = folder / "final.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{folder} holds no final.pt: measure a finished run")
    if images < 2:
        raise ValueError(f"images must be at least 2 (an interval needs two), got {images}")
    model, _ = models.load_checkpoint(ckpt, map_location=device or default_device())
    test = data.cifar100("test", root=data_root)
    n = min(images, len(test))
    x, y = test.tensors(range(n), device=next(model.parameters()).device)
    # 7 significant digits (float32 precision); the summary is of the values as stored
    cos = {k: [float(f"{v:.7g}") for v in c] for k, c in cosines(model, x, y).items()}
    record = {
        "run": folder.name, "images": n, "summary": summary(cos),
        "cos_logit": cos["logit"], "cos_loss": cos["loss"],
        "provenance": {"checkpoint_sha256": sha256_file(ckpt), "torch": torch.__version__,
                       "git": git_info(), "command": command_line(), "time": now_utc()},
    }
    atomic_write_text(Path(out) if out else folder / FILE, json.dumps(record) + "\n")
    return record


def read(folder: str | Path) -> dict[str, Any] | None:
    """The ``alignment.json`` of ``folder`` (None when there is none)."""
    path = Path(folder) / FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    for k in GRADIENT_OF:
        if len(record[f"cos_{k}"]) != record["images"]:
            raise ValueError(f"{path}: cos_{k} holds {len(record[f'cos_{k}'])} values, "
                             f"images says {record['images']}")
    return record


def verify(folder: str | Path, sample: int = 8, seed: int = 0, device=None,
           atol: float = 1e-4, data_root: str | Path | None = None) -> dict[str, Any]:
    """Re-measure ``sample`` seeded images of ``folder/alignment.json`` from ``final.pt``.

    Checks the checkpoint's sha256, that the stored summary follows from the stored per-image
    values, and the re-computed cosines of the sampled images (within ``atol``: float rounding
    of another batch split or thread count). Returns ``{"ok", "images", "max_difference",
    "problems"}``.
    """
    folder = Path(folder)
    record = read(folder)
    if record is None:
        raise FileNotFoundError(f"{folder} holds no {FILE}")
    problems = []
    if sha256_file(folder / "final.pt") != record["provenance"]["checkpoint_sha256"]:
        problems.append("final.pt is not the checkpoint that was measured")
    stored = {k: np.asarray(record[f"cos_{k}"]) for k in GRADIENT_OF}
    for k, s in summary(stored).items():
        if abs(s["mean"] - record["summary"][k]["mean"]) > 1e-6:
            problems.append(f"summary of {k} does not follow from its per-image values")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(record["images"], size=min(sample, record["images"]),
                             replace=False))
    model, _ = models.load_checkpoint(folder / "final.pt",
                                      map_location=device or default_device())
    x, y = data.cifar100("test", root=data_root).tensors(
        idx, device=next(model.parameters()).device)
    now = cosines(model, x, y)
    worst = max(float(np.abs(now[k] - stored[k][idx]).max()) for k in GRADIENT_OF)
    if worst > atol:
        problems.append(f"re-computed cosines differ by up to {worst:.2g} (> {atol:g})")
    return {"ok": not problems, "images": idx.tolist(), "max_difference": worst,
            "problems": problems}
