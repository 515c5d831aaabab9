"""Pixel ranks of every training and test image by a saliency method, cached in one file.

METHODS.md section 5 ("ROAR / KAR"; the maps of section 4: SMOE Scale, FastCAM). For each image
the explained model (default ``reference/resnet18_baseline/final.pt``) gives a map for the
true class; the map is upsampled bilinearly to the image size and min-max normalized
(:func:`interpretable.metrics.prepare_maps`, as for insertion / deletion) and its pixels are
ranked by a stable descending sort: 0 = most salient, ties keep raster order, a pixel's three
channels share one rank (the tie rule of the insertion / deletion metric).

Methods (:data:`interpretable.roar.METHODS`): ``random`` (a seeded random permutation per
image, no model), ``smoe`` (FastCAM's combined SMOE Scale saliency alone,
``interpretable.fastcam.saliency(model, x)[0]``), ``gradcam`` and ``fastcam``.

Rank file ``cache/<method>.npy``: uint16 (N_train + N_test, H*W), the training images then
the test images (CIFAR-100: 60,000 x 1,024, 123 MB), written atomically once per method in one
batched pass, read with ``allow_pickle=False``; beside it ``<method>.json`` records the file's
sha256, the checkpoint's sha256, a fingerprint of the images and labels, versions, git commit
and time. A rank file is used again only if all of these match.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from interpretable import data as itp_data
from interpretable._io import atomic_open, sha256_file

from ._common import (
    DEFAULT_CACHE,
    DEFAULT_CHECKPOINT,
    check_method,
    git_info,
    now_utc,
    read_json,
    write_json,
)
from .plan import rank_path

__all__ = ["RANKS_FORMAT", "SPLITS", "ranks_of", "pixel_ranks", "compute_ranks",
           "data_fingerprint", "rank_file", "ranks"]

RANKS_FORMAT = "interpretable-roar-ranks-v1"
#: Order of the splits in a rank file.
SPLITS = ("train", "test")
_MAX_PIXELS = 1 << 16  # uint16 ranks

Explainer = Callable[[Tensor, Tensor], Tensor]


def ranks_of(values: Tensor) -> Tensor:
    """Ranks (B, P) int64 of values (B, P): 0 = largest; ties keep index order (stable)."""
    order = torch.argsort(values, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(values.shape[1], device=values.device).expand_as(order))
    return ranks


def pixel_ranks(maps: Tensor, x: Tensor) -> Tensor:
    """Pixel ranks (B, H*W) int64 of maps (B, h, w) explaining x (B, C, H, W).

    The map is prepared as for insertion / deletion (bilinear to (H, W), per-image min-max;
    :func:`interpretable.metrics.prepare_maps`), then :func:`ranks_of` (raster order).
    """
    from interpretable.metrics import prepare_maps

    return ranks_of(prepare_maps(maps, x).flatten(1))


@contextmanager
def _explainer(method: str, model: nn.Module) -> Iterator[Explainer]:
    """``explain(x, y) -> maps (B, h, w)`` for the true classes y; hooks released on exit."""
    import interpretable.fastcam as fc
    from interpretable.attribution import GradCAM

    if method == "smoe":
        yield lambda x, y: fc.saliency(model, x)[0]
    elif method == "gradcam":
        with GradCAM(model) as cam:
            yield lambda x, y: cam(x, y)
    elif method == "fastcam":
        with fc.FastCAM(model) as fast:
            yield lambda x, y: fast(x, y)
    else:
        raise ValueError(f"method {method!r} has no map (random needs none)")


def _progress_bar(total: int, desc: str, on: bool):
    if not on:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def compute_ranks(method: str, model: nn.Module | None, dataset: itp_data.CIFAR100, *,
                  seed: int = 0, stream: int = 0, batch_size: int = 256,
                  device: torch.device | str | None = None,
                  progress: bool = False) -> np.ndarray:
    """Ranks (N, H*W) uint16 of every image of ``dataset`` by ``method``, in batches.

    ``random`` ignores ``model`` and draws float64 uniforms from
    ``np.random.default_rng([seed, stream])`` batch after batch (the result does not depend
    on ``batch_size``); the other methods explain the true class with ``model`` on
    ``device`` (default: the model's device).
    """
    check_method(method)
    n, h, w = dataset.images.shape[:3]
    if h * w > _MAX_PIXELS:
        raise ValueError(f"images of {h}x{w} pixels have too many ranks for uint16")
    out = np.empty((n, h * w), dtype=np.uint16)
    steps = -(-n // batch_size)
    bar = _progress_bar(steps, f"{method} ranks, {dataset.split}", progress)
    try:
        if method == "random":
            rng = np.random.default_rng([seed, stream])
            for start in range(0, n, batch_size):
                b = min(batch_size, n - start)
                out[start:start + b] = ranks_of(torch.from_numpy(rng.random((b, h * w)))).numpy()
                if bar is not None:
                    bar.update(1)
            return out
        if model is None:
            raise ValueError(f"method {method!r} needs a model")
        if device is None:
            device = next(model.parameters()).device
        model = model.to(device).eval()
        start = 0
        with _explainer(method, model) as explain:
            for x, y in itp_data.batches(dataset, batch_size, device=device):
                r = pixel_ranks(explain(x, y), x)
                out[start:start + len(y)] = r.to(torch.int32).numpy(force=True)
                start += len(y)
                if bar is not None:
                    bar.update(1)
        return out
    finally:
        if bar is not None:
            bar.close()


def data_fingerprint(train: itp_data.CIFAR100, test: itp_data.CIFAR100) -> str:
    """sha256 of the images and labels of both splits (uint8 and int64 bytes, train first)."""
    h = hashlib.sha256()
    for ds in (train, test):
        h.update(np.ascontiguousarray(ds.images).data)
        h.update(np.ascontiguousarray(ds.targets, dtype=np.int64).data)
    return h.hexdigest()


def _datasets(datasets, data_root) -> tuple[itp_data.CIFAR100, itp_data.CIFAR100]:
    if datasets is not None:
        train, test = datasets
        return train, test
    return itp_data.cifar100("train", root=data_root), itp_data.cifar100("test", root=data_root)


def _check_info(path: Path, info: dict[str, Any], expect: dict[str, Any]) -> None:
    """Raise ValueError if the rank file's record differs from what is asked for."""
    for key, want in expect.items():
        if info.get(key) != want:
            raise ValueError(
                f"rank file {str(path)!r} does not fit: its {key} is {info.get(key)!r}, this run "
                f"needs {want!r}; delete it (and {path.with_suffix('.json').name}) to compute "
                "it again, or use another cache folder")


def _load(path: Path, n: int, pixels: int, expect: dict[str, Any]) -> tuple[np.ndarray, dict]:
    try:
        head = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"rank file {str(path)!r} cannot be read ({exc})") from exc
    if head.shape != (n, pixels) or head.dtype != np.uint16:
        raise ValueError(f"rank file {str(path)!r} holds {head.dtype} {head.shape}; expected "
                         f"uint16 ({n}, {pixels}) (train + test images x pixels); delete it")
    del head
    info = read_json(path.with_suffix(".json")) or {}
    if info.get("format") != RANKS_FORMAT:
        raise ValueError(f"{path.with_suffix('.json')}: not a rank-file record")
    _check_info(path, info, expect)
    if sha256_file(path) != info.get("sha256"):
        raise ValueError(f"rank file {str(path)!r} changed since it was written (sha256 differs "
                         "from its record); delete it to compute it again")
    return np.load(path, allow_pickle=False), info


def rank_file(method: str, *, checkpoint: str | os.PathLike = DEFAULT_CHECKPOINT,
              cache: str | os.PathLike = DEFAULT_CACHE, path: str | os.PathLike | None = None,
              seed: int = 0, datasets: tuple | None = None,
              data_root: str | os.PathLike | None = None, batch_size: int = 256,
              device: torch.device | str | None = None,
              progress: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """All ranks of ``method`` (N_train + N_test, H*W) uint16 and the file's record.

    Reads ``path`` (default :func:`interpretable.roar.rank_path` ``(cache, method, seed)``)
    if it and its ``.json`` record exist and fit (method, seed, checkpoint sha256, data
    fingerprint, shape, file sha256; otherwise a ValueError says what differs); computes and
    writes both otherwise. ``datasets``: ``(train, test)`` CIFAR100s instead of CIFAR-100.
    """
    method = check_method(method)
    path = Path(path) if path is not None else rank_path(cache, method, seed)
    train, test = _datasets(datasets, data_root)
    h, w = train.images.shape[1:3]
    n = len(train) + len(test)
    ckpt_sha = None if method == "random" else sha256_file(checkpoint)
    expect = {"method": method, "seed": seed if method == "random" else None,
              "checkpoint_sha256": ckpt_sha, "data_sha256": data_fingerprint(train, test)}
    if path.is_file() and path.with_suffix(".json").is_file():
        return _load(path, n, h * w, expect)
    t0 = time.perf_counter()
    model = None
    if method != "random":
        from interpretable.models import load_checkpoint

        dev = torch.device(device) if device is not None else _default_device()
        model, _ = load_checkpoint(checkpoint, map_location=dev)
    parts = [compute_ranks(method, model, ds, seed=seed, stream=i, batch_size=batch_size,
                           device=device, progress=progress) for i, ds in enumerate((train, test))]
    out = np.concatenate(parts)
    with atomic_open(path, "wb") as f:
        np.save(f, out, allow_pickle=False)
    info = {
        "format": RANKS_FORMAT, **expect, "file": path.name, "sha256": sha256_file(path),
        "shape": list(out.shape), "dtype": "uint16", "image_size": [h, w],
        "splits": {"train": [0, len(train)], "test": [len(train), n]},
        "ranking": "rank of each pixel in raster order (its 3 channels together), 0 = most "
                   "salient; maps of the true class, bilinear to the image size and min-max "
                   "normalized (interpretable.metrics.prepare_maps), stable descending sort",
        "checkpoint": None if method == "random" else str(checkpoint),
        "data": str(getattr(train, "path", "in memory")),
        "batch_size": batch_size,
        "device": None if model is None else str(next(model.parameters()).device),
        "threads": torch.get_num_threads(), "seconds": round(time.perf_counter() - t0, 1),
        "git": git_info(), "date_utc": now_utc(), "python": platform.python_version(),
        "torch": torch.__version__, "numpy": np.__version__,
    }
    write_json(path.with_suffix(".json"), info)
    return out, info


def _default_device() -> torch.device:
    from interpretable import default_device

    return default_device()


def ranks(method: str, split: str, **kwargs: Any) -> np.ndarray:
    """The (N, H*W) uint16 ranks of ``split`` ("train" or "test") by ``method``.

    Keyword arguments as :func:`rank_file` (which computes the file for both splits on the
    first call and reads it afterwards).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    out, info = rank_file(method, **kwargs)
    lo, hi = info["splits"][split]
    return out[lo:hi]
