"""Verification of a result file: recompute a seeded sample of its rows from the weights and
compare (METHODS.md section 5), so a committed table can be trusted without rerunning it.

:func:`verify_results` takes the settings from the file itself (methods, target, step and
conventions) and the checkpoint from its provenance record (or an explicit one);
:func:`compare_rows` holds the rules, :data:`TOLERANCES` the accepted differences.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._io import sha256_file
from ..attribution import METHODS, method_key, parse_methods
from . import _results
from .definitions import Conventions
from .evaluation import _fingerprint, evaluate
from .runs import _built, _dataset, _read_json, find_checkpoint, provenance_path

__all__ = ["TOLERANCES", "Verification", "ResultMismatch", "compare_rows", "verify_results"]


class ResultMismatch(AssertionError):
    """A result file disagrees with what its checkpoint gives (see :func:`verify_results`)."""


#: Largest accepted |file - recomputed| per column, chosen from measurement (see
#: :func:`verify_results`): Y and O (probabilities) differ by at most 3e-6 when rows are
#: recomputed in other batches; AD and AG get this base plus the error the Y/O tolerances
#: propagate to them (large where Y is near 0 or 1); insertion and deletion (percent) move
#: by up to 0.3 points, as float rounding flips the order of nearly equal map pixels.
TOLERANCES = {"Y": 1e-5, "O": 1e-5, "ad": 1e-3, "ag": 1e-3, "insertion": 1.0, "deletion": 1.0}


@dataclass
class Verification:
    """The outcome of :func:`verify_results`: ``ok`` when ``mismatches`` is empty."""

    result_file: Path
    checkpoint: Path
    indices: list[int]
    methods: list[str]
    rows_checked: int
    max_difference: dict[str, float]
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def __str__(self) -> str:
        head = (f"{self.result_file}: {self.rows_checked} rows of {len(self.indices)} images "
                f"recomputed from {self.checkpoint} in {self.seconds:.1f} s")
        if self.ok:
            worst = ", ".join(f"{k} {v:.1e}" for k, v in self.max_difference.items())
            return f"{head}: all agree (largest differences: {worst})"
        first = "; ".join(m["problem"] for m in self.mismatches[:3])
        return f"{head}: {len(self.mismatches)} disagree, e.g. {first}"


def _row_tolerance(tol: dict[str, float], column: str, r: dict) -> float:
    """The tolerance of one value: AD and AG add what the Y/O tolerances propagate to them
    (ad = 100 (Y - O) / Y, ag = 100 (O - Y) / (1 - Y); first-order error bounds)."""
    y, o = float(r["Y"]), float(r["O"])
    if column == "ad":
        return tol["ad"] + (100 * (tol["O"] + o / y * tol["Y"]) / y if y > 0 else math.inf)
    if column == "ag":
        return tol["ag"] + (100 * (tol["O"] + (1 - o) / (1 - y) * tol["Y"]) / (1 - y)
                            if y < 1 else math.inf)
    return tol[column]


def compare_rows(stored: list[dict], fresh: list[dict],
                 tolerances: dict[str, float] | None = None
                 ) -> tuple[list[dict], dict[str, float]]:
    """``(mismatches, largest difference per column)`` of two row lists keyed by (index, method).

    ``label``, ``predicted`` and ``target`` must be equal; each float column within
    ``tolerances`` (default :data:`TOLERANCES`; for AD and AG plus the error the Y and O
    tolerances propagate; NaN only matches NaN); ``ai`` (0 or 100 from O > Y) equal unless
    |O - Y| <= tol Y + tol O in both rows (then the order of O and Y is within rounding).
    Rows of ``fresh`` missing from ``stored`` are mismatches.
    """
    tol = {**TOLERANCES, **(tolerances or {})}
    ai_margin = tol["Y"] + tol["O"]
    have = {(r["index"], r["method"]): r for r in stored}
    worst = dict.fromkeys(tol, 0.0)
    bad: list[dict] = []
    for r in fresh:
        key = (r["index"], r["method"])
        s = have.get(key)
        if s is None:
            bad.append({"index": key[0], "method": key[1], "problem": f"image {key[0]} "
                        f"{key[1]}: no row in the file"})
            continue
        problems = [f"{c} {s[c]} != {r[c]}" for c in ("label", "predicted", "target")
                    if int(s[c]) != int(r[c])]
        for c in tol:
            a, b = float(s[c]), float(r[c])
            if math.isnan(a) or math.isnan(b):
                if math.isnan(a) != math.isnan(b):
                    problems.append(f"{c} {a} != {b}")
                continue
            d = abs(a - b)
            worst[c] = max(worst[c], d)
            t = _row_tolerance(tol, c, r)
            if not d <= t:
                problems.append(f"{c} {a:.6g} != {b:.6g} (|diff| {d:.2g} > {t:.2g})")
        if s["ai"] != r["ai"] and max(abs(s["O"] - s["Y"]), abs(r["O"] - r["Y"])) > ai_margin:
            problems.append(f"ai {s['ai']:g} != {r['ai']:g} with |O - Y| = "
                            f"{abs(r['O'] - r['Y']):.2g}")
        if problems:
            bad.append({"index": key[0], "method": key[1],
                        "problem": f"image {key[0]} {key[1]}: " + ", ".join(problems)})
    return bad, worst


def verify_results(
    result_file: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    n: int = 8,
    seed: int = 0,
    *,
    methods: str | Sequence[str] | None = None,
    batch_size: int | None = None,
    data_root: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    dataset=None,
    tolerances: dict[str, float] | None = None,
    raise_on_mismatch: bool = True,
) -> Verification:
    """Recompute ``n`` seeded random images of a result file from the weights and compare.

    The settings come from the file itself (methods, target, step and conventions: its
    ``.meta.json`` or JSON ``meta``); the checkpoint from ``checkpoint`` (a file or run
    folder) or else from the provenance record. Checked: the checkpoint file is the one in
    the provenance (sha256), its weights have the fingerprint the file was written with, and
    every recomputed row matches the file (:func:`compare_rows` with :data:`TOLERANCES`:
    label, predicted and target exactly; Y and O within 1e-5; AD and AG within 1e-3
    percentage points plus what the Y/O tolerance propagates to them; Ins and Del within 1
    point; AI equal unless |O - Y| <= 2e-5). The checkpoint file and the weights are each
    hashed once.

    The images are ``sorted(randperm(images in the file, seed)[:n])`` and are recomputed in
    one batch (``batch_size`` default n) with the same method objects as
    :func:`evaluate_run`; ``methods`` (keys or names of
    :data:`interpretable.attribution.METHODS`) checks only some of the file's methods
    (Score-CAM costs one forward per channel: 1280 per image on MobileNet-V2).

    Tolerances: another batch composition changes float32 results by rounding only. Measured
    on the reference ResNet-18 and MobileNet-V2 (64 images computed in batches of 64,
    recomputed in batches of 8 and 1): Y and O within 3e-6, AD and AG within 5e-4, no AI or
    prediction flipped; Ins/Del of the gradient CAMs within 1e-5 on ResNet-18, but up to 0.3
    points for Score-CAM and, on MobileNet-V2, for the gradient CAMs too (the order of nearly
    equal map pixels flips); a batch of 8 reproduced ResNet-18's rows bit for bit.

    Returns:
        A :class:`Verification` (``ok``, ``mismatches``, largest differences, seconds).

    Raises:
        ResultMismatch: (an AssertionError) if anything disagrees and ``raise_on_mismatch``.
        ValueError: the file names a method :data:`interpretable.attribution.METHODS` does not
        know, or ``n`` is not in 1..images in the file. FileNotFoundError: no file,
        checkpoint or provenance.
    """
    start = time.perf_counter()
    from ..models import load_checkpoint

    result_file = Path(result_file)
    try:
        rows, meta = _results.read(result_file)
        meta = _results.with_conventions(meta)
    except FileNotFoundError:
        raise FileNotFoundError(f"result file {str(result_file)!r} does not exist") from None
    prov = _read_json(provenance_path(result_file))
    if checkpoint is None:
        if prov is None or "checkpoint" not in prov:
            raise FileNotFoundError(f"{provenance_path(result_file).name} is missing: pass the "
                                    "checkpoint explicitly")
        checkpoint = result_file.parent / prov["checkpoint"]
    checkpoint = find_checkpoint(checkpoint)
    keys = []
    for m in meta["methods"]:
        try:
            keys.append(method_key(m))
        except ValueError:
            raise ValueError(f"result file {str(result_file)!r} has method {m!r} that "
                             f"verify_results cannot rebuild (it knows "
                             f"{[x.name for x in METHODS.values()]})") from None
    if methods is not None:
        wanted = parse_methods(methods)
        missing = [k for k in wanted if k not in keys]
        if missing:
            raise ValueError(f"methods {missing} are not in {str(result_file)!r} (it has "
                             f"{keys})")
        keys = [k for k in keys if k in wanted]
    images = list(dict.fromkeys(r["index"] for r in rows))
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(images):
        raise ValueError(f"n must be an int in 1..{len(images)} (images in the file), got {n!r}")

    names = [METHODS[k].name for k in keys]

    def fail(problem: str) -> Verification:
        report = Verification(result_file, checkpoint, [], names, 0, {},
                              [{"index": None, "method": None, "problem": problem}],
                              time.perf_counter() - start)
        if raise_on_mismatch:
            raise ResultMismatch(str(report))
        return report

    if prov is not None and prov.get("checkpoint_sha256") not in (None,
                                                                   sha256_file(checkpoint)):
        return fail(f"{checkpoint} is not the checkpoint the provenance names (sha256 differs)")
    from .. import default_device

    device = torch.device(device) if device is not None else default_device()
    model, _ = load_checkpoint(checkpoint, map_location=device)
    if _fingerprint(model) != meta.get("weights_sha1"):
        return fail(f"the weights of {checkpoint} are not those the file was computed with "
                    "(weights_sha1 differs)")
    g = torch.Generator().manual_seed(int(seed))
    pick = sorted(images[i] for i in torch.randperm(len(images), generator=g)[:n].tolist())
    curves = meta.get("curves", True)
    conventions = Conventions(meta["substrate"], meta["blur_kernel"], meta["blur_sigma"]) \
        if curves else "ours"
    with contextlib.ExitStack() as stack:
        fresh = evaluate(model, _dataset(dataset, data_root), _built(model, keys, stack),
                         indices=pick, batch_size=batch_size or n, target=meta["target"],
                         step=meta["step"], conventions=conventions, curves=curves,
                         progress=False, device=device, as_frame=False)
    mismatches, worst = compare_rows(rows, fresh, tolerances)
    report = Verification(result_file, checkpoint, pick, names, len(fresh),
                          worst, mismatches, time.perf_counter() - start)
    if mismatches and raise_on_mismatch:
        raise ResultMismatch(str(report))
    return report

