"""Slow one-image references of the metrics (METHODS.md section 5), shared by test files
(imported as ``from _references import ...``): one curve point per forward, pixel-space
masking, Python's stable ``sorted`` for the ranking, numpy's trapezoid."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from interpretable.data import denormalize, normalize


def ref_saliency(map2d: torch.Tensor, size, dtype=torch.float64) -> torch.Tensor:
    """METHODS.md section 5 for one map (h, w): upsample, min-max, constant-map rule.

    Computed in the image's dtype: rounding decides near-ties of the ranking, so a float64
    reference of a float32 run could order equal-looking pixels differently.
    """
    m = map2d.to(dtype)
    if m.max() == m.min():
        return torch.full(size, 1.0 if float(m.max()) > 0 else 0.0, dtype=dtype)
    up = F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return (up - up.min()) / (up.max() - up.min())


def ref_prob(model, x1: torch.Tensor, c: int) -> float:
    with torch.no_grad():
        return float(torch.softmax(model(x1[None]), dim=1)[0, c])


def ref_probs(model, x1, map2d, c):
    """One image: Y, O with the pixel-space definition normalize(denormalize(x) * S)."""
    s = ref_saliency(map2d, x1.shape[-2:], x1.dtype)
    masked = normalize(denormalize(x1) * s)
    return ref_prob(model, x1, c), ref_prob(model, masked, c)


def ref_confidence(model, x1, map2d, c):
    """One image: AD, AG, AI (percentages) from :func:`ref_probs`."""
    y, o = ref_probs(model, x1, map2d, c)
    ad = 100 * max(0.0, y - o) / y
    ag = 100 * max(0.0, o - y) / (1 - y)
    ai = 100.0 if o > y else 0.0
    return ad, ag, ai


def ref_curves(model, x1, map2d, c, step):
    """One image, one curve point per forward; Python's stable sort ranks the pixels."""
    h, w = x1.shape[-2:]
    n = h * w
    s = ref_saliency(map2d, (h, w), x1.dtype).flatten().tolist()
    order = sorted(range(n), key=lambda p: -s[p])  # stable: ties keep raster order
    pix = denormalize(x1)
    blur = gaussian_blur(pix, [11, 11], [5.0, 5.0])
    ins, dele = [], []
    for k in range(n // step + 1):
        chosen = torch.zeros(n, dtype=torch.bool)
        chosen[order[:k * step]] = True
        chosen = chosen.view(1, h, w)
        dele.append(ref_prob(model, normalize(torch.where(chosen, 0.0, pix)), c))
        ins.append(ref_prob(model, normalize(torch.where(chosen, pix, blur)), c))
    frac = np.arange(n // step + 1) * step / n
    return (100 * np.trapezoid(ins, frac), 100 * np.trapezoid(dele, frac),
            np.array(ins), np.array(dele))
