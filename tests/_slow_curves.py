"""A slow, independent insertion/deletion reference for any conventions (METHODS.md section 5):
one image, one curve point per forward, pixels moved one by one in Python loops, the Gaussian
blur written out as loops over the kernel (reflect padding, as torchvision's), Python's stable
``sorted`` for the ranking, numpy's trapezoid. Imported as ``from _slow_curves import ...``."""

from __future__ import annotations

import math

import numpy as np
import torch
from _references import ref_prob, ref_saliency

from interpretable.data import MEAN, denormalize, normalize


def slow_blur(pix: np.ndarray, kernel: int, sigma: float) -> np.ndarray:
    """Gaussian blur of a (C, H, W) pixel image: the kernel exp(-t^2 / (2 sigma^2)) at t =
    -(k-1)/2 .. (k-1)/2, normalized; rows then columns; reflect padding (-1 -> 1)."""
    c, h, w = pix.shape
    half = (kernel - 1) / 2
    weights = [math.exp(-0.5 * ((i - half) / sigma) ** 2) for i in range(kernel)]
    total = sum(weights)
    weights = [v / total for v in weights]
    r = kernel // 2

    def reflect(i: int, n: int) -> int:
        return -i if i < 0 else 2 * (n - 1) - i if i >= n else i

    rows = np.zeros_like(pix)
    for ch in range(c):
        for i in range(h):
            for j in range(w):
                rows[ch, i, j] = sum(weights[k] * pix[ch, i, reflect(j + k - r, w)]
                                     for k in range(kernel))
    out = np.zeros_like(pix)
    for ch in range(c):
        for i in range(h):
            for j in range(w):
                out[ch, i, j] = sum(weights[k] * rows[ch, reflect(i + k - r, h), j]
                                    for k in range(kernel))
    return out


def slow_curves(model, x1: torch.Tensor, map2d: torch.Tensor, c: int, step: int, *,
                substrate: str = "black", kernel: int = 11, sigma: float = 5.0):
    """``(insertion AUC x100, deletion AUC x100, insertion points, deletion points)`` of one
    image x1 (C, H, W, normalized). Deletion moves each pixel, most salient first, to the
    substrate: black (0 in pixel space), mean (the normalization's mean colour) or blur (the
    blurred pixel); insertion moves pixels of x into the blurred image."""
    ch, h, w = x1.shape
    n = h * w
    s = ref_saliency(map2d, (h, w), x1.dtype).flatten().tolist()
    order = sorted(range(n), key=lambda p: -s[p])
    pix = denormalize(x1[None])[0].double().numpy()
    blur = slow_blur(pix, kernel, sigma)
    if substrate == "black":
        sub = np.zeros_like(pix)
    elif substrate == "mean":
        sub = np.stack([np.full((h, w), MEAN[k]) for k in range(ch)])
    elif substrate == "blur":
        sub = blur
    else:
        raise ValueError(substrate)

    def prob(img: np.ndarray) -> float:
        return ref_prob(model, normalize(torch.from_numpy(img)[None].to(x1.dtype))[0], c)

    ins, dele = [], []
    for k in range(n // step + 1):
        deleted, inserted = pix.copy(), blur.copy()
        for p in order[:k * step]:
            i, j = divmod(p, w)
            for q in range(ch):
                deleted[q, i, j] = sub[q, i, j]
                inserted[q, i, j] = pix[q, i, j]
        dele.append(prob(deleted))
        ins.append(prob(inserted))
    frac = np.arange(n // step + 1) * step / n
    return (100 * np.trapezoid(ins, frac), 100 * np.trapezoid(dele, frac),
            np.array(ins), np.array(dele))
