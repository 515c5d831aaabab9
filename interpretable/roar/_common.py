"""Names, default paths and argument checks shared by the ROAR / KAR modules.

METHODS.md section 5 ("ROAR / KAR"). Nothing here imports torch, so the job list of
``reference/run_all.py`` can use it cheaply.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

from interpretable._io import atomic_write_text
from interpretable.provenance import git_info, now_utc

__all__ = ["MODES", "CELL_MODES", "METHODS", "TEST_METHODS", "FRACTIONS", "DEFAULT_ROOT",
           "DEFAULT_CACHE", "DEFAULT_CHECKPOINT", "check_mode", "check_method",
           "check_fraction", "top_count", "git_info", "now_utc", "read_json", "write_json"]

#: ROAR replaces the top-t pixels, KAR keeps them and replaces the rest.
MODES: tuple[str, ...] = ("roar", "kar")
#: Cell modes: the two above and ``unmodified`` (the same recipe on the original images).
CELL_MODES: tuple[str, ...] = ("unmodified", *MODES)
#: Methods whose ranks are computed from the explained model (``random`` needs no model).
METHODS: tuple[str, ...] = ("random", "smoe", "gradcam", "fastcam")
#: Labels allowed only for rank arrays passed in by the caller (tests: a known-pixel oracle).
TEST_METHODS: tuple[str, ...] = ("oracle",)
#: The fractions t of the grid.
FRACTIONS: tuple[float, ...] = (0.1, 0.5, 0.9)

#: Defaults, relative to the working directory (the repository root for run_all's jobs).
DEFAULT_ROOT = Path("reference/roar")
DEFAULT_CACHE = DEFAULT_ROOT / "cache"
DEFAULT_CHECKPOINT = Path("reference/resnet18_baseline/final.pt")


def check_mode(mode: Any, allowed: tuple[str, ...] = MODES) -> str:
    """``mode`` if it is one of ``allowed``, else a ValueError naming ``mode``."""
    if not isinstance(mode, str) or mode not in allowed:
        raise ValueError(f"mode must be one of {', '.join(allowed)}; got {mode!r}")
    return mode


def check_method(method: Any, allowed: tuple[str, ...] = METHODS) -> str:
    """``method`` if it is one of ``allowed``, else a ValueError naming ``method``."""
    if not isinstance(method, str) or method not in allowed:
        raise ValueError(f"method must be one of {', '.join(allowed)}; got {method!r}")
    return method


def check_fraction(fraction: Any) -> float:
    """``fraction`` as a float strictly between 0 and 1, else a ValueError naming it."""
    ok = isinstance(fraction, numbers.Real) and not isinstance(fraction, bool)
    if not ok or not math.isfinite(fraction) or not 0 < fraction < 1:
        raise ValueError(f"fraction must be a number strictly between 0 and 1; got {fraction!r}")
    return float(fraction)


def top_count(fraction: float, pixels: int) -> int:
    """Pixels in the top-``fraction`` share of ``pixels``: ``floor(t * pixels + 0.5)``
    (nearest, halves up; 0.1 / 0.5 / 0.9 of 32 x 32 -> 102 / 512 / 922)."""
    return int(math.floor(check_fraction(fraction) * pixels + 0.5))


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in ``path``; None if the file is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically, indented, with a final newline."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
