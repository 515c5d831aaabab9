"""Full-test-set results of a trained run: evaluate, record provenance, verify (METHODS.md sec. 5).

:func:`evaluate_run` is what ``python -m interpretable evaluate RUN`` does: load a run's
checkpoint, score the CAM methods on the CIFAR-100 test set with :func:`evaluate` (one tidy
row per image x method, resumable result file) and write a provenance record beside the
result file. :func:`verify_results` recomputes a seeded sample of a result file's rows from
the weights and checks them, so a committed table can be trusted without rerunning it.

Files, for ``out = RUN/metrics.csv.gz`` (the default):

- ``metrics.csv.gz``: the rows (columns :data:`COLUMNS`; any of ``.csv``, ``.csv.gz``,
  ``.json``), rewritten atomically after every batch;
- ``metrics.csv.gz.meta.json``: the settings :func:`evaluate` checks on resume (methods,
  target, step, images, weights fingerprint);
- ``metrics.csv.gz.provenance.json`` (:func:`provenance_path`): where the rows come from,
  written atomically when the file is complete (fields in :func:`evaluate_run`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_write_text, sha256_file
from . import _results
from .evaluation import _fingerprint, evaluate
from .summary import PAPER_COLUMNS, paper_table

__all__ = [
    "METHOD_NAMES",
    "DEFAULT_METHODS",
    "TOLERANCES",
    "parse_methods",
    "build_methods",
    "find_checkpoint",
    "default_out",
    "provenance_path",
    "evaluate_run",
    "RunResult",
    "read_results",
    "summary_lines",
    "verify_results",
    "compare_rows",
    "Verification",
    "ResultMismatch",
]

#: Method keys of the command line -> the names the result files and the book use.
METHOD_NAMES = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "layercam": "Layer-CAM",
    "scorecam": "Score-CAM",
    "fastcam": "FastCAM",
}
DEFAULT_METHODS = ("gradcam", "gradcam++", "scorecam", "fastcam")
_KEYS = {v: k for k, v in METHOD_NAMES.items()}
_CHECKPOINTS = ("final.pt", "last.pt")
PROVENANCE_FORMAT = "interpretable-evaluate-provenance-v1"


class ResultMismatch(AssertionError):
    """A result file disagrees with what its checkpoint gives (see :func:`verify_results`)."""


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


def parse_methods(methods: str | Sequence[str]) -> list[str]:
    """Method keys from ``"gradcam,scorecam"`` or a list; ValueError naming unknown ones.

    Keys are those of :data:`METHOD_NAMES` (case-insensitive); duplicates are dropped, the
    order is kept.
    """
    items = methods.split(",") if isinstance(methods, str) else list(methods)
    keys = [str(m).strip().lower() for m in items if str(m).strip()]
    if not keys:
        raise ValueError(f"methods must name at least one of {', '.join(METHOD_NAMES)}")
    bad = [k for k in keys if k not in METHOD_NAMES]
    if bad:
        raise ValueError(f"methods: unknown method {', '.join(map(repr, bad))}; choose from "
                         f"{', '.join(METHOD_NAMES)}")
    return list(dict.fromkeys(keys))


def build_methods(model: nn.Module, methods: str | Sequence[str] = DEFAULT_METHODS
                  ) -> dict[str, Any]:
    """``{display name: method object}`` bound to ``model``, for :func:`evaluate`.

    Every CAM runs its inference-optimized forward from the first call (``optimize=True``)
    rather than from the second (``"auto"``): all batches then take the same code path, so a
    resumed run computes the same numbers as an uninterrupted one.
    """
    from ..attribution import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM
    from ..fastcam import FastCAM

    classes = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM,
               "layercam": LayerCAM, "scorecam": ScoreCAM}
    out: dict[str, Any] = {}
    for key in parse_methods(methods):
        if key == "fastcam":
            obj = FastCAM(model)
            obj.cam.optimize = True  # FastCAM has no optimize argument; its CAM does
        else:
            obj = classes[key](model, optimize=True)
        out[METHOD_NAMES[key]] = obj
    return out


def find_checkpoint(source: str | os.PathLike) -> Path:
    """The checkpoint of ``source``: a checkpoint file, or a run folder (final.pt, else last.pt).

    Raises FileNotFoundError naming what was looked for.
    """
    path = Path(source)
    if path.is_dir():
        for name in _CHECKPOINTS:
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"run folder {str(path)!r} has no checkpoint (looked for "
                                f"{' and '.join(_CHECKPOINTS)})")
    if path.is_file():
        return path
    raise FileNotFoundError(f"{str(path)!r} is neither a run folder nor a checkpoint file")


def default_out(source: str | os.PathLike) -> Path:
    """``RUN/metrics.csv.gz``: in the run folder, or beside a checkpoint file."""
    path = Path(source)
    return (path if path.is_dir() else path.parent) / "metrics.csv.gz"


def provenance_path(out: str | os.PathLike) -> Path:
    """The provenance record of result file ``out``: ``<out>.provenance.json``."""
    out = Path(out)
    return out.with_name(out.name + ".provenance.json")


def _check_count(n_images: int | None, n_total: int) -> int | None:
    if n_images is None:
        return None
    if isinstance(n_images, bool) or not isinstance(n_images, int) or not \
            1 <= n_images <= n_total:
        raise ValueError(f"images must be 'all' or a whole number in 1..{n_total} (the test "
                         f"set), got {n_images!r}")
    return n_images


# --------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------


def _git(folder: Path) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout holding ``folder``, or None."""
    def run(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()

    try:
        commit = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def _command(command: Sequence[str] | str | None) -> str:
    if command is None:
        command = [Path(sys.executable).name, *sys.argv]
    return command if isinstance(command, str) else shlex.join(list(command))


def _provenance(*, out: Path, checkpoint: Path, ckpt_meta: dict, meta: dict, keys: list[str],
                command: str, device: torch.device, seconds: float, n_images: int,
                computed: int, seed: int | None, target: str, batch_size: int,
                data_file: Path | None, git: dict[str, Any] | None) -> dict[str, Any]:
    import interpretable

    summary = {k: ckpt_meta[k] for k in ("arch", "width", "num_classes", "weights_dtype",
                                         "epoch", "test_acc", "test_top5") if k in ckpt_meta}
    return {
        "format": PROVENANCE_FORMAT,
        "results": out.name,
        "checkpoint": os.path.relpath(checkpoint.resolve(), out.resolve().parent),
        "checkpoint_sha256": sha256_file(checkpoint),
        "checkpoint_meta": summary,
        "weights_sha1": meta["weights_sha1"],
        "package": "interpretable",
        "version": interpretable.__version__,
        "git": git,
        "command": command,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": round(seconds, 3),
        "images": n_images,
        "images_computed": computed,
        "images_resumed": n_images - computed,
        "seed": seed,
        "methods": keys,
        "method_names": [METHOD_NAMES[k] for k in keys],
        "target": target,
        "step": meta["step"],
        "batch_size": batch_size,
        "data": None if data_file is None else {"file": data_file.name,
                                                "sha256": sha256_file(data_file)},
    }


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --------------------------------------------------------------------------------------------
# Evaluate a run
# --------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What :func:`evaluate_run` did: the table (as :func:`evaluate` returns it), the files."""

    table: Any
    out: Path
    provenance_file: Path
    provenance: dict[str, Any]
    images_computed: int


def _dataset(dataset, data_root):
    if dataset is not None:
        return dataset
    from ..data import cifar100

    return cifar100("test", root=data_root)


def evaluate_run(
    source: str | os.PathLike,
    methods: str | Sequence[str] = DEFAULT_METHODS,
    n_images: int | None = None,
    *,
    seed: int = 0,
    target: str = "label",
    batch_size: int = 64,
    out: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    command: Sequence[str] | str | None = None,
    dataset=None,
) -> RunResult:
    """Score ``methods`` of a run's checkpoint on the CIFAR-100 test set (METHODS.md sec. 5).

    Args:
        source: a run folder (its ``final.pt``, else ``last.pt``) or a checkpoint file.
        methods: keys of :data:`METHOD_NAMES` (a list or ``"gradcam,scorecam"``); the rows
            use the display names (``"Grad-CAM"``, ...).
        n_images: None for every test image, else a seeded random sample of this many
            (sorted; ``seed``), as :func:`evaluate`'s ``seed``.
        target, batch_size: as :func:`evaluate` (insertion/deletion step: its default W).
        out: the result file (default :func:`default_out`: ``RUN/metrics.csv.gz``). Rerunning
            the same call after an interruption resumes from it and gives the same rows.
        data_root: where ``cifar100.npz`` is (default: searched, see
            :func:`interpretable.data.find_cifar100`); ``dataset`` replaces the test set
            (tests only; its provenance has no data hash).
        device: default :func:`interpretable.default_device`.
        progress: a tqdm bar with images/s and the time left.
        command: the command line to record (default ``sys.argv``).

    Returns:
        A :class:`RunResult`. Provenance (``<out>.provenance.json``, written atomically once
        the file is complete; kept as it is when a rerun has nothing left to compute):
        ``format``, ``results`` (file name), ``checkpoint`` (path relative to the result
        file's folder), ``checkpoint_sha256``, ``checkpoint_meta`` (arch, width, accuracy,
        ...), ``weights_sha1`` (the fingerprint :func:`evaluate` checks on resume),
        ``package``, ``version``, ``git`` (``{"commit", "dirty"}`` of the package's checkout
        with tracked files only, read when the invocation starts, or null outside git),
        ``command``, ``python``, ``torch``,
        ``device``, ``threads``, ``date_utc``, ``seconds`` (wall time of the invocation that
        completed the file), ``images``, ``images_computed`` and ``images_resumed`` (by that
        invocation / from an earlier one), ``seed`` (null when every image is scored),
        ``methods`` (keys), ``method_names``,
        ``target``, ``step``, ``batch_size``, ``data`` (``{"file", "sha256"}`` of the test set
        archive).

    Raises:
        FileNotFoundError: no checkpoint; ValueError: bad methods, counts, target, batch size,
        or a result file from other settings; CheckpointError: unreadable checkpoint.
    """
    start = time.perf_counter()
    import interpretable

    from .. import default_device
    from ..models import load_checkpoint

    # the code that computes the rows: the checkout as this invocation starts
    git = _git(Path(interpretable.__file__).resolve().parent)
    keys = parse_methods(methods)
    if target not in ("label", "predicted"):
        raise ValueError(f"target must be 'label' or 'predicted', got {target!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    checkpoint = find_checkpoint(source)
    out = Path(out) if out is not None else default_out(source)
    _results.check_suffix(out)
    data = _dataset(dataset, data_root)
    n_images = _check_count(n_images, len(data))
    device = torch.device(device) if device is not None else default_device()
    model, ckpt_meta = load_checkpoint(checkpoint, map_location=device)

    finished = _finished_images(out, [METHOD_NAMES[k] for k in keys])
    table = evaluate(model, data, build_methods(model, keys), n_images=n_images,
                     batch_size=batch_size, target=target, out=out, progress=progress,
                     seed=None if n_images is None else seed, device=device)
    meta = json.loads(_results.meta_path(out).read_text()) if _results.kind(out) != "json" \
        else json.loads(out.read_text())["meta"]
    computed = meta["n_images"] - finished
    prov_file = provenance_path(out)
    old = _read_json(prov_file)
    if computed == 0 and old is not None and old.get("weights_sha1") == meta["weights_sha1"] \
            and old.get("checkpoint_sha256") == sha256_file(checkpoint):
        return RunResult(table, out, prov_file, old, 0)
    data_file = None
    if dataset is None:
        from ..data import find_cifar100

        data_file = find_cifar100(data_root, download=False)
    prov = _provenance(out=out, checkpoint=checkpoint, ckpt_meta=ckpt_meta, meta=meta,
                       keys=keys, command=_command(command), device=device,
                       seconds=time.perf_counter() - start, n_images=meta["n_images"],
                       computed=computed, seed=seed if n_images is not None else None,
                       target=target, batch_size=batch_size, data_file=data_file, git=git)
    atomic_write_text(prov_file, json.dumps(prov, indent=1) + "\n")
    return RunResult(table, out, prov_file, prov, computed)


def _finished_images(out: Path, names: list[str]) -> int:
    """Images with a row for every method in an existing result file (0 if none/unreadable;
    whether it may be resumed is :func:`evaluate`'s check)."""
    if not out.exists():
        return 0
    try:
        rows, _ = _results.read(out)
    except Exception:  # evaluate reports what is wrong with it
        return 0
    return len({r["index"] for r in _results.complete_rows(rows, names)})


# --------------------------------------------------------------------------------------------
# Reading and summarizing
# --------------------------------------------------------------------------------------------


def read_results(path: str | os.PathLike, as_frame: bool | None = None):
    """The rows of a result file (``.csv``, ``.csv.gz``, ``.json``) as :func:`evaluate` returns
    them (a DataFrame when pandas is installed, unless ``as_frame=False``)."""
    path = Path(path)
    try:
        rows, _ = _results.read(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"result file {str(path)!r} does not exist") from None
    return _results.as_table(rows, as_frame)


def summary_lines(table, digits: int = 2) -> list[str]:
    """A plain-text table: a header, then one line per method with the means of AD, AG, AI,
    Ins, Del (percent; :func:`paper_table`)."""
    rows = _results.rows_of(table)
    cells = paper_table(list(rows))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["method"]] = counts.get(r["method"], 0) + 1
    width = max([len("method")] + [len(m) for m in cells])
    cols = list(PAPER_COLUMNS)
    lines = [f"{'method':<{width}}  " + "  ".join(f"{c:>7}" for c in cols) + "   images"]
    for method, values in cells.items():
        lines.append(f"{method:<{width}}  " + "  ".join(f"{values[c]:7.{digits}f}" for c in cols)
                     + f"  {counts[method]:7d}")
    return lines


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------

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

    The settings come from the file itself (methods, target, step: its ``.meta.json`` or
    JSON ``meta``); the checkpoint from ``checkpoint`` (a file or run folder) or else from
    the provenance record. Checked: the checkpoint file is the one in the provenance
    (sha256), its weights have the fingerprint the file was written with, and every
    recomputed row matches the file (:func:`compare_rows` with :data:`TOLERANCES`: label,
    predicted and target exactly; Y and O within 1e-5; AD and AG within 1e-3 percentage
    points plus what the Y/O tolerance propagates to them; Ins and Del within 1 point; AI
    equal unless |O - Y| <= 2e-5).

    The images are ``sorted(randperm(images in the file, seed)[:n])`` and are recomputed in
    one batch (``batch_size`` default n) with the same method objects as
    :func:`evaluate_run`; ``methods`` (keys of :data:`METHOD_NAMES`) checks only some of the
    file's methods (Score-CAM costs one forward per channel: 1280 per image on MobileNet-V2).

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
        ValueError: the file names a method :data:`METHOD_NAMES` does not know, or ``n`` is
        not in 1..images in the file. FileNotFoundError: no file, checkpoint or provenance.
    """
    start = time.perf_counter()
    from ..models import load_checkpoint

    result_file = Path(result_file)
    try:
        rows, meta = _results.read(result_file)
    except FileNotFoundError:
        raise FileNotFoundError(f"result file {str(result_file)!r} does not exist") from None
    prov = _read_json(provenance_path(result_file))
    if checkpoint is None:
        if prov is None or "checkpoint" not in prov:
            raise FileNotFoundError(f"{provenance_path(result_file).name} is missing: pass the "
                                    "checkpoint explicitly")
        checkpoint = result_file.parent / prov["checkpoint"]
    checkpoint = find_checkpoint(checkpoint)
    unknown = [m for m in meta["methods"] if m not in _KEYS]
    if unknown:
        raise ValueError(f"result file {str(result_file)!r} has methods {unknown} that "
                         f"verify_results cannot rebuild (it knows {list(_KEYS)})")
    keys = [_KEYS[m] for m in meta["methods"]]
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

    names = [METHOD_NAMES[k] for k in keys]

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
    fresh = evaluate(model, _dataset(dataset, data_root), build_methods(model, keys),
                     indices=pick, batch_size=batch_size or n, target=meta["target"],
                     step=meta["step"], curves=meta.get("curves", True), progress=False,
                     device=device, as_frame=False)
    mismatches, worst = compare_rows(rows, fresh, tolerances)
    report = Verification(result_file, checkpoint, pick, names, len(fresh),
                          worst, mismatches, time.perf_counter() - start)
    if mismatches and raise_on_mismatch:
        raise ResultMismatch(str(report))
    return report

