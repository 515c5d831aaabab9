"""ROAR and KAR: retrain on images whose most (least) salient pixels are removed.

METHODS.md section 5 ("ROAR / KAR") [Hooker et al. 2019, as used by FastCAM, Mundhenk et al.
2020]; the maps of section 4. For a method and a fraction t every pixel of every training and
test image is ranked by the method's map of the true class (:func:`ranks`, cached per method);
ROAR replaces the top-t fraction by the training set's per-channel mean, KAR keeps the top-t
fraction and replaces the rest (:func:`modified`); a fresh network is trained on the modified
training set with one fixed recipe and tested on the modified test set (:func:`run_cell`).
Lower ROAR accuracy and higher KAR accuracy mean the map found what the task needs; a seeded
random map is the baseline every method must beat. :mod:`interpretable.roar.plan` holds the
recipe, the pilot's epoch rule and the grid; ``python -m interpretable.roar --help`` the
command line.

Names load on first use (the plan and the run_all job list need no torch).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "MODES": "_common", "CELL_MODES": "_common", "METHODS": "_common",
    "FRACTIONS": "_common", "DEFAULT_ROOT": "_common", "DEFAULT_CACHE": "_common",
    "DEFAULT_CHECKPOINT": "_common", "top_count": "_common",
    "ImageSet": "images", "train_mean": "images", "check_ranks": "images", "modified": "images",
    "ranks_of": "ranking", "pixel_ranks": "ranking", "compute_ranks": "ranking",
    "data_fingerprint": "ranking", "rank_file": "ranking", "ranks": "ranking",
    "RECIPE": "plan", "PILOT_EPOCHS": "plan", "PILOT_SEEDS": "plan", "REFERENCE_TOP1": "plan",
    "TOLERANCE": "plan", "recipe": "plan", "cell_dir": "plan", "pilot_dir": "plan",
    "rank_path": "plan", "choose_epochs": "plan", "chosen_epochs": "plan",
    "pilot_results": "plan", "pilot_spread": "plan", "grid": "plan", "table": "plan",
    "table_lines": "plan", "reading": "plan", "run_cell": "cells", "reproduce_cell": "cells",
    "REPRODUCTION_FORMAT": "cells", "add_arguments": "cli", "run": "cli", "main": "cli",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
