"""Full-test-set results of a trained run: evaluate, write the result file and its provenance,
read result files (METHODS.md section 5).

:func:`evaluate_run` is what ``python -m interpretable evaluate RUN`` does: load a run's
checkpoint, score the CAM methods on the CIFAR-100 test set with :func:`evaluate` (one tidy
row per image x method, resumable result file) and write a provenance record beside the
result file. Checking a result file against its weights is :mod:`.verification`.

Files, for ``out = RUN/metrics.csv.gz`` (the default; ``metrics_authors.csv.gz`` for the
paper authors' conventions, ``metrics_custom.csv.gz`` for other ones):

- ``metrics.csv.gz``: the rows (columns :data:`COLUMNS`; any of ``.csv``, ``.csv.gz``,
  ``.json``), rewritten atomically after every batch;
- ``metrics.csv.gz.meta.json``: the file's settings, which :func:`evaluate` writes first and
  checks on resume (methods, target, step and conventions, images, weights fingerprint);
- ``metrics.csv.gz.provenance.json`` (:func:`provenance_path`): where the rows come from,
  written atomically when the file is complete (fields in :func:`evaluate_run`).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_text, sha256_file
from ..attribution import CAM_METHODS, DEFAULT_CAMS, METHODS, build_method, parse_methods
from ..provenance import command_line, git_info, now_utc
from . import _results
from .curves import curve_settings
from .definitions import Conventions, conventions_name
from .evaluation import evaluate

__all__ = [
    "find_checkpoint",
    "default_out",
    "provenance_path",
    "evaluate_run",
    "RunResult",
    "read_results",
]

_CHECKPOINTS = ("final.pt", "last.pt")
PROVENANCE_FORMAT = "interpretable-evaluate-provenance-v1"


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


def default_out(source: str | os.PathLike, conventions: str = "ours") -> Path:
    """``RUN/metrics.csv.gz`` (in the run folder, or beside a checkpoint file) for our
    conventions, ``RUN/metrics_<name>.csv.gz`` for others (``"authors"``, ``"custom"``)."""
    path = Path(source)
    name = "metrics.csv.gz" if conventions == "ours" else f"metrics_{conventions}.csv.gz"
    return (path if path.is_dir() else path.parent) / name


def provenance_path(out: str | os.PathLike) -> Path:
    """The provenance record of result file ``out``: ``<out>.provenance.json``."""
    out = Path(out)
    return out.with_name(out.name + ".provenance.json")


def read_results(path: str | os.PathLike, as_frame: bool | None = None):
    """The rows of a result file (``.csv``, ``.csv.gz``, ``.json``) as :func:`evaluate` returns
    them (a DataFrame when pandas is installed, unless ``as_frame=False``)."""
    path = Path(path)
    try:
        rows, _ = _results.read(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"result file {str(path)!r} does not exist") from None
    return _results.as_table(rows, as_frame)


def _check_count(n_images: int | None, n_total: int) -> int | None:
    if n_images is None:
        return None
    if isinstance(n_images, bool) or not isinstance(n_images, int) or not \
            1 <= n_images <= n_total:
        raise ValueError(f"images must be 'all' or a whole number in 1..{n_total} (the test "
                         f"set), got {n_images!r}")
    return n_images


def _dataset(dataset, data_root):
    if dataset is not None:
        return dataset
    from ..data import cifar100

    return cifar100("test", root=data_root)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _built(model, keys: Sequence[str], stack: contextlib.ExitStack) -> dict[str, Any]:
    """``{display name: method}`` bound to ``model`` for :func:`evaluate`, hooks removed when
    ``stack`` closes. Every CAM runs its inference-optimized forward from the first call
    (``optimize=True``, not ``"auto"``): all batches then take the same code path, so a
    resumed run computes the same numbers as an uninterrupted one."""
    return {METHODS[k].name: stack.enter_context(build_method(k, model, optimize=True))
            for k in keys}


# --------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------


def _provenance(*, out: Path, checkpoint: Path, checkpoint_sha256: str, ckpt_meta: dict,
                meta: dict, keys: list[str], command: str, device: torch.device,
                seconds: float, computed: int, seed: int | None, batch_size: int,
                data_file: Path | None, git: dict[str, Any] | None) -> dict[str, Any]:
    import interpretable

    summary = {k: ckpt_meta[k] for k in ("arch", "width", "num_classes", "weights_dtype",
                                         "epoch", "test_acc", "test_top5") if k in ckpt_meta}
    return {
        "format": PROVENANCE_FORMAT,
        "results": out.name,
        "checkpoint": os.path.relpath(checkpoint.resolve(), out.resolve().parent),
        "checkpoint_sha256": checkpoint_sha256,
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
        "date_utc": now_utc(),
        "seconds": round(seconds, 3),
        "images": meta["n_images"],
        "images_computed": computed,
        "images_resumed": meta["n_images"] - computed,
        "seed": seed,
        "methods": keys,
        "method_names": [METHODS[k].name for k in keys],
        "target": meta["target"],
        "step": meta["step"],
        "conventions": meta["conventions"],
        "substrate": meta["substrate"],
        "blur_kernel": meta["blur_kernel"],
        "blur_sigma": meta["blur_sigma"],
        "batch_size": batch_size,
        "data": None if data_file is None else {"file": data_file.name,
                                                "sha256": sha256_file(data_file)},
    }


# --------------------------------------------------------------------------------------------
# Evaluate a run
# --------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What :func:`evaluate_run` did: the table (as :func:`evaluate` returns it), the files,
    the checkpoint it read."""

    table: Any
    out: Path
    provenance_file: Path
    provenance: dict[str, Any]
    images_computed: int
    checkpoint: Path


def evaluate_run(
    source: str | os.PathLike,
    methods: str | Sequence[str] = DEFAULT_CAMS,
    n_images: int | None = None,
    *,
    seed: int = 0,
    target: str = "label",
    batch_size: int = 64,
    step: int | None = None,
    conventions: str | Conventions = "ours",
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
        methods: CAM keys of :data:`interpretable.attribution.METHODS` (a list or
            ``"gradcam,scorecam"``; default :data:`~interpretable.attribution.DEFAULT_CAMS`);
            the rows use the display names (``"Grad-CAM"``, ...).
        n_images: None for every test image, else a seeded random sample of this many
            (sorted; ``seed``), as :func:`evaluate`'s ``seed``.
        target, batch_size: as :func:`evaluate`.
        step, conventions: the insertion/deletion conventions, as :func:`evaluate` (default
            ``"ours"``).
        out: the result file (default :func:`default_out`: ``RUN/metrics.csv.gz`` for our
            conventions, ``RUN/metrics_authors.csv.gz`` for the authors', else
            ``RUN/metrics_custom.csv.gz``). Rerunning the same call after an interruption
            resumes from it and gives the same rows; other settings are refused.
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
        ``command``, ``python``, ``torch``, ``device``, ``threads``, ``date_utc``,
        ``seconds`` (wall time of the invocation that completed the file), ``images``,
        ``images_computed`` and ``images_resumed`` (by that invocation / from an earlier
        one), ``seed`` (null when every image is scored), ``methods`` (keys),
        ``method_names``, ``target``, ``step``, ``conventions`` (``"ours"``, ``"authors"``
        or ``"custom"``), ``substrate``, ``blur_kernel``, ``blur_sigma``, ``batch_size``,
        ``data`` (``{"file", "sha256"}`` of the test set archive). The checkpoint file is
        hashed once per call.

    Raises:
        FileNotFoundError: no checkpoint; ValueError: bad methods, counts, target, batch size,
        conventions, or a result file from other settings; CheckpointError: unreadable
        checkpoint.
    """
    start = time.perf_counter()

    from .. import default_device
    from ..models import load_checkpoint

    # the code that computes the rows: the checkout as this invocation starts
    git = git_info()
    keys = parse_methods(methods, allowed=CAM_METHODS)
    if target not in ("label", "predicted"):
        raise ValueError(f"target must be 'label' or 'predicted', got {target!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    checkpoint = find_checkpoint(source)
    if out is not None:
        _results.check_suffix(Path(out))
    data = _dataset(dataset, data_root)
    n_images = _check_count(n_images, len(data))
    height, width = data[0][0].shape[-2:]
    conv, step = curve_settings(conventions, step, int(height), int(width))
    out = Path(out) if out is not None else default_out(source, conventions_name(conv, step,
                                                                                 int(width)))
    device = torch.device(device) if device is not None else default_device()
    model, ckpt_meta = load_checkpoint(checkpoint, map_location=device)

    with contextlib.ExitStack() as stack:
        ev = evaluate(model, data, _built(model, keys, stack), n_images=n_images,
                      batch_size=batch_size, target=target, step=step, conventions=conv,
                      out=out, progress=progress, seed=None if n_images is None else seed,
                      device=device, return_meta=True)
    checkpoint_sha256 = sha256_file(checkpoint)
    prov_file = provenance_path(out)
    old = _read_json(prov_file)
    if ev.images_computed == 0 and old is not None \
            and old.get("weights_sha1") == ev.meta["weights_sha1"] \
            and old.get("checkpoint_sha256") == checkpoint_sha256:
        return RunResult(ev.table, out, prov_file, old, 0, checkpoint)
    data_file = None
    if dataset is None:
        from ..data import find_cifar100

        data_file = find_cifar100(data_root, download=False)
    prov = _provenance(out=out, checkpoint=checkpoint, checkpoint_sha256=checkpoint_sha256,
                       ckpt_meta=ckpt_meta, meta=ev.meta, keys=keys, command=command_line(command),
                       device=device, seconds=time.perf_counter() - start,
                       computed=ev.images_computed,
                       seed=seed if n_images is not None else None, batch_size=batch_size,
                       data_file=data_file, git=git)
    atomic_write_text(prov_file, json.dumps(prov, indent=1) + "\n")
    return RunResult(ev.table, out, prov_file, prov, ev.images_computed, checkpoint)
