"""The reference runs committed with the repository, as the book reads them.

Four models trained with the ``cpu`` preset on the full CIFAR-100 training set (see
``reference/README.md`` for the exact commands): ResNet-18 and MobileNet-V2, each with
lambda = 0 (baseline) and with the paper's lambda (regularized). A run that has not finished
yet is read from its last completed epoch, and ``meta["epoch"]`` says which.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from .models import load_checkpoint, read_checkpoint

__all__ = ["REFERENCE_DIR", "RUNS", "run_dir", "available", "load", "log", "meta"]

REFERENCE_DIR = Path(
    os.environ.get("INTERPRETABLE_REFERENCE", Path(__file__).resolve().parent.parent / "reference")
)
RUNS = ("resnet18_baseline", "resnet18_regularized", "mobilenet_v2_baseline",
        "mobilenet_v2_regularized")
_FILES = ("final.pt", "last.pt")


def run_dir(name: str) -> Path:
    """The folder of reference run ``name`` (one of :data:`RUNS`)."""
    if name not in RUNS:
        raise ValueError(f"name must be one of {RUNS}, got {name!r}")
    return REFERENCE_DIR / name


def _checkpoint(name: str) -> Path:
    folder = run_dir(name)
    for f in _FILES:
        if (folder / f).is_file():
            return folder / f
    raise FileNotFoundError(
        f"reference run {name!r} has no checkpoint in {folder} (looked for {', '.join(_FILES)}); "
        "train it with the command in reference/README.md, or set INTERPRETABLE_REFERENCE"
    )


def available() -> list[str]:
    """The reference runs that have a checkpoint."""
    return [n for n in RUNS if any((run_dir(n) / f).is_file() for f in _FILES)]


def load(name: str, device=None) -> tuple[nn.Module, dict[str, Any]]:
    """Load reference run ``name`` in eval mode on ``device`` (default CPU): ``(model, meta)``."""
    return load_checkpoint(_checkpoint(name), map_location=device or "cpu")


def meta(name: str) -> dict[str, Any]:
    """The checkpoint metadata of run ``name`` (arch, width, settings, accuracy, epoch)."""
    return read_checkpoint(_checkpoint(name))["meta"]


def log(name: str) -> list[dict[str, Any]]:
    """The per-epoch training log of run ``name`` (one dict per completed epoch)."""
    path = run_dir(name) / "log.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"reference run {name!r} has no log at {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
