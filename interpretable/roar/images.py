"""ROAR / KAR images: the top-t pixels (or all others) replaced by the training-set mean.

METHODS.md section 5 ("ROAR / KAR"). Everything works on whole uint8 arrays (N, H, W, 3) with
numpy, a few thousand images at a time; there is no Python loop over images or pixels.

Conventions:

* a pixel is ranked with its three channels together; ``ranks[i, p]`` is the rank of pixel
  ``p`` (raster order, ``p = row * W + col``) of image ``i``, 0 = most salient, each row a
  permutation of ``0 .. H*W - 1``;
* the top-t fraction is the ``k = floor(t * H * W + 0.5)`` pixels of rank < k
  (:func:`interpretable.roar._common.top_count`);
* ROAR replaces those k pixels, KAR replaces the other ``H*W - k``;
* the replacement colour is the per-channel mean of the *training* set computed in uint8
  pixel space and rounded to the nearest integer (:func:`train_mean`; CIFAR-100:
  (129, 124, 112)), so the modified images stay uint8 and go through the usual
  normalization and augmentation of :func:`interpretable.data.batches`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from interpretable.data import CIFAR100

from ._common import check_fraction, check_mode, top_count

__all__ = ["ImageSet", "train_mean", "check_ranks", "modified"]

_CHUNK = 4096  # images per vectorized step (bounds the temporaries to a few tens of MB)


class ImageSet(CIFAR100):
    """A :class:`interpretable.data.CIFAR100` whose images are given in memory.

    Used for ROAR / KAR's modified splits and for synthetic data in tests; it works
    everywhere a CIFAR100 does (``interpretable.data.batches``, ``training.train``).

    Args:
        images: uint8 array (N, H, W, 3), HWC RGB.
        targets: integer labels (N,).
        split: ``"train"`` or ``"test"`` (informative only).
        classes: class names (default ``"0" .. "99"``); coarse_targets: (N,) or None (-1).
        source: a description kept in ``path`` (shown by ``repr``).
    """

    def __init__(self, images: np.ndarray, targets: np.ndarray, *, split: str = "train",
                 classes: list[str] | None = None, coarse_targets: np.ndarray | None = None,
                 source: str | os.PathLike = "in memory"):
        # CIFAR100.__init__ reads the archive: deliberately not called.
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"images must be uint8 of shape (N, H, W, 3), got {images.dtype} "
                             f"{images.shape}")
        targets = np.asarray(targets)
        if targets.shape != (len(images),) or not np.issubdtype(targets.dtype, np.integer):
            raise ValueError(f"targets must be {len(images)} integer labels, got {targets.dtype} "
                             f"{targets.shape}")
        self.split = split
        self.augment = False
        self.path = source
        self.images = images
        self.targets = targets.astype(np.int64, copy=False)
        self.coarse_targets = (np.full(len(images), -1, dtype=np.int64) if coarse_targets is None
                               else np.asarray(coarse_targets, dtype=np.int64))
        self.classes = list(classes) if classes is not None else [str(i) for i in range(100)]


def train_mean(dataset: CIFAR100) -> np.ndarray:
    """Per-channel mean of ``dataset.images`` in uint8 pixel space, rounded: (3,) uint8.

    Computed in float64 over all N*H*W pixels, then ``np.rint`` (halves to even).
    """
    images = _images_of(dataset)
    mean = images.reshape(-1, images.shape[-1]).mean(axis=0, dtype=np.float64)
    return np.rint(mean).astype(np.uint8)


def check_ranks(ranks: Any, n: int, pixels: int, name: str = "ranks") -> np.ndarray:
    """``ranks`` as an integer array (n, pixels) whose every row is a permutation of
    ``0 .. pixels - 1``; otherwise a ValueError naming ``name``, the expected and the actual
    shape, or the first bad rows."""
    r = np.asarray(ranks)
    if r.shape != (n, pixels):
        raise ValueError(f"{name} must have shape ({n}, {pixels}) (one rank per pixel of each "
                         f"of {n} images), got {r.shape}")
    if not np.issubdtype(r.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {r.dtype}")
    want = np.arange(pixels)
    for start in range(0, n, _CHUNK):
        ok = (np.sort(r[start:start + _CHUNK], axis=1) == want).all(axis=1)
        if not ok.all():
            bad = (start + np.flatnonzero(~ok)[:5]).tolist()
            raise ValueError(f"{name}: rows {bad} are not permutations of 0..{pixels - 1} "
                             "(every pixel needs exactly one rank)")
    return r


def _fill(mean: Any) -> np.ndarray:
    m = np.asarray(mean, dtype=np.float64)
    if m.shape != (3,) or not np.isfinite(m).all() or m.min() < 0 or m.max() > 255:
        raise ValueError(f"mean must be 3 per-channel values in 0..255 (uint8 pixel space), "
                         f"got {mean!r}")
    return np.rint(m).astype(np.uint8)


def _images_of(dataset: Any) -> np.ndarray:
    if not isinstance(dataset, CIFAR100):
        raise TypeError(f"dataset must be an interpretable.data.CIFAR100 (or ImageSet), got "
                        f"{type(dataset).__name__}; a Subset is not accepted (ranks are per row)")
    return dataset.images


def modified(dataset: CIFAR100, ranks: Any, fraction: float, mode: str,
             mean: Any) -> ImageSet:
    """ROAR / KAR images of ``dataset`` (METHODS.md section 5).

    Args:
        dataset: a CIFAR100 (or :class:`ImageSet`) with ``images`` (N, H, W, 3) uint8.
        ranks: (N, H*W) integers, row i a permutation: the rank of each pixel of image i
            (0 = most salient), e.g. a split of :func:`interpretable.roar.ranks`.
        fraction: t, strictly between 0 and 1; ``k = floor(t * H*W + 0.5)`` pixels.
        mode: ``"roar"`` replaces the k pixels of rank < k; ``"kar"`` keeps them and
            replaces the other H*W - k.
        mean: the replacement colour, 3 values in uint8 pixel space (rounded to integers):
            the training set's :func:`train_mean`, also for the test split.

    Returns:
        A new :class:`ImageSet` (N, H, W, 3) uint8 with ``dataset``'s targets, classes and
        split; ``dataset`` is not changed.
    """
    images = _images_of(dataset)
    mode = check_mode(mode)
    t = check_fraction(fraction)
    n, h, w, _ = images.shape
    r = check_ranks(ranks, n, h * w)
    fill = _fill(mean)
    k = top_count(t, h * w)
    out = np.empty_like(images)
    for start in range(0, n, _CHUNK):
        top = r[start:start + _CHUNK] < k                           # (b, H*W)
        replace = top if mode == "roar" else ~top
        out[start:start + _CHUNK] = np.where(replace.reshape(-1, h, w, 1), fill,
                                             images[start:start + _CHUNK])
    return ImageSet(out, dataset.targets.copy(), split=dataset.split, classes=dataset.classes,
                    coarse_targets=dataset.coarse_targets.copy(),
                    source=f"{mode} t={t:g} ({k} of {h * w} pixels ranked top) of {dataset.path}")
