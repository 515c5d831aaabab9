"""Per-image statistics of attribution maps, as the book's chapters measure them: edges of
the image, agreement of two maps (Pearson, Spearman, SSIM, cosine), the alignment of gradient
and guided gradient, roughness, lattice concentration, negative share, empty maps.

Every function takes batches and returns one value per image, shape (B,), on the input's
device. Maps are (B, H, W) or (B, C, H, W); "per image" means over all remaining axes.
(Statistics of result tables: :mod:`interpretable.tables`.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SOBEL",
    "edge_strength",
    "correlation",
    "spearman",
    "ssim",
    "cosine",
    "gradient_cosine",
    "roughness",
    "lattice_concentration",
    "negative_share",
    "is_empty",
]

SOBEL = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])


def _batch(t: Tensor, name: str, min_dim: int = 2) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() < min_dim:
        raise ValueError(f"{name} must have a batch axis and at least {min_dim - 1} more, got "
                         f"shape {tuple(t.shape)}")
    return t


def _pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    _batch(a, "a")
    _batch(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    return a.flatten(1), b.flatten(1)


def _wide(t: Tensor) -> Tensor:
    # float64 for sums over many pixels, except on Apple MPS, which has no float64
    return t.float() if t.device.type == "mps" else t.double()


def edge_strength(x: Tensor, denormalize: bool = True) -> Tensor:
    """Sobel gradient magnitude of the grey image: (B, 3, H, W) -> (B, H, W).

    ``x`` are model inputs (normalized; ``denormalize=False`` for pixel values in [0, 1]).
    Grey is the mean over colour channels; borders are replicated before the 3x3 filters.
    """
    _batch(x, "x", 4)
    if denormalize:
        from .data import denormalize as _denormalize

        x = _denormalize(x)
    grey = x.mean(1, keepdim=True)
    k = torch.stack([SOBEL, SOBEL.T])[:, None].to(grey)
    return F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), k).norm(dim=1)


def correlation(a: Tensor, b: Tensor, flat: float = float("nan")) -> Tensor:
    """Pearson correlation over pixels, per image: (B, ...) x 2 -> (B,).

    ``flat`` is returned for an image where either map is constant (no correlation defined).
    """
    a, b = _pair(a, b)
    a, b = _wide(a), _wide(b)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    r = (a * b).sum(1) / den.clamp_min(1e-300)
    return torch.where(den > 0, r, torch.full_like(r, flat)).float()


def _average_ranks(v: Tensor) -> Tensor:
    # Ranks 1..N per row, ties get their average rank (as scipy.stats.rankdata "average").
    s = v.sort(dim=1).values
    lo = torch.searchsorted(s, v, right=False)
    hi = torch.searchsorted(s, v, right=True)
    return _wide(lo + hi + 1) / 2


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation over pixels, per image: (B, ...) x 2 -> (B,).

    The Pearson correlation of the average ranks (ties share their mean rank). Two identical
    maps give 1 (also two identical constant maps); a constant map against a different one
    gives 0: it has no ranking left.
    """
    a, b = _pair(a, b)
    a, b = a.contiguous(), b.contiguous()
    rho = correlation(_average_ranks(a), _average_ranks(b), flat=0.0)
    return torch.where((a == b).all(1), torch.ones_like(rho), rho)


def ssim(a: Tensor, b: Tensor, data_range: float = 1.0, win_size: int = 7) -> Tensor:
    """Mean structural similarity of two map batches: (B, H, W) x 2 -> (B,).

    The definition of ``skimage.metrics.structural_similarity`` with its defaults: local
    means, variances (sample, N - 1) and covariance in ``win_size`` x ``win_size`` uniform
    windows, K1 = 0.01, K2 = 0.03, averaged over the windows that fit inside the image.
    """
    _pair(a, b)
    if a.dim() != 3:
        raise ValueError(f"a and b must be (B, H, W) maps, got shape {tuple(a.shape)}")
    if min(a.shape[-2:]) < win_size:
        raise ValueError(f"maps must be at least win_size={win_size} pixels high and wide")
    x, y = _wide(a)[:, None], _wide(b)[:, None]

    def mean(t: Tensor) -> Tensor:
        return F.avg_pool2d(t, win_size, stride=1)

    n = win_size * win_size
    unbias = n / (n - 1)
    ux, uy = mean(x), mean(y)
    vx = unbias * (mean(x * x) - ux * ux)
    vy = unbias * (mean(y * y) - uy * uy)
    vxy = unbias * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).float()


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of two map batches, per image: (B, ...) x 2 -> (B,)."""
    a, b = _pair(a, b)
    return F.cosine_similarity(a, b, dim=1)


def gradient_cosine(model: nn.Module, x: Tensor, target=None, batch: int = 100) -> Tensor:
    """cos(gradient, guided gradient) per image: (B, 3, H, W) -> (B,).

    ``1 - gradient_cosine(...).mean()`` is the alignment loss L_R of METHODS.md section 2,
    measured without building the double-backward graph. ``target`` as in
    :func:`interpretable.attribution.gradient`; images go through in chunks of ``batch``.
    """
    from .attribution import gradient, guided_backprop

    _batch(x, "x", 4)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if isinstance(target, Tensor) and target.shape != (len(x),):
        raise ValueError(f"target must be None, an int or a (B,) tensor with B={len(x)}, got "
                         f"shape {tuple(target.shape)}")
    out = []
    for i in range(0, len(x), batch):
        # None (predicted class) and an int mean the same for every chunk
        xb, tb = x[i:i + batch], target[i:i + batch] if isinstance(target, Tensor) else target
        out.append(cosine(gradient(model, xb, tb), guided_backprop(model, xb, tb)))
    return torch.cat(out)


def roughness(g: Tensor) -> Tensor:
    """Mean |difference of neighbouring pixels| over mean |value|: (B, ..., H, W) -> (B,).

    The average of the horizontal and the vertical term; 0 for a constant map, about
    1.41 (sqrt 2) for Gaussian white noise, small for smooth maps whatever their scale.
    """
    _batch(g, "g", 3)
    dx = (g[..., :, 1:] - g[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (g[..., 1:, :] - g[..., :-1, :]).abs().flatten(1).mean(1)
    return 0.5 * (dx + dy) / g.abs().flatten(1).mean(1).clamp_min(1e-12)


def lattice_concentration(g: Tensor, period: int = 2) -> Tensor:
    """How much of a map's magnitude sits on one pixel lattice: (B, ..., H, W) -> (B,).

    The pixels split into ``period**2`` lattices {(i, j): i = a, j = b (mod period)}; the
    value is ``period**2`` times the largest share of the total |g| that one lattice holds.
    1 when the magnitude is spread evenly over the lattices (a little above 1 for noise: the
    largest of ``period**2`` shares), ``period**2`` when all of it lies on one lattice: the
    grid of dots that strided layers can leave in an input gradient. Rows and columns beyond
    the last whole period are left out.
    """
    _batch(g, "g", 3)
    if not isinstance(period, int) or not 1 <= period <= min(g.shape[-2:]):
        raise ValueError(f"period must be an int from 1 to min(H, W) = {min(g.shape[-2:])}, "
                         f"got {period!r}")
    h, w = (g.shape[-2] // period) * period, (g.shape[-1] // period) * period
    # (B, C, H/p, p, W/p, p) -> the total of each of the p*p lattices, (B, p*p)
    a = g[..., :h, :w].abs().reshape(len(g), -1, h // period, period, w // period, period)
    shares = a.sum((1, 2, 4)).flatten(1)
    return period**2 * shares.amax(1) / shares.sum(1).clamp_min(1e-12)


def negative_share(g: Tensor) -> Tensor:
    """Share of the total |g| carried by negative entries, in [0, 1]: (B, ...) -> (B,)."""
    a = _batch(g, "g").flatten(1)
    return (-a).clamp_min(0).sum(1) / a.abs().sum(1).clamp_min(1e-12)


def is_empty(maps: Tensor) -> Tensor:
    """Whether a map has no positive value (no location with evidence): (B, ...) -> (B,) bool."""
    return _batch(maps, "maps").flatten(1).amax(1) <= 0
