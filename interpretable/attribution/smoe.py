"""SMOE Scale and the other channel statistics of FastCAM, and the per-layer normalizations
(METHODS.md section 4).

A channel statistic reduces a post-ReLU activation (B, K, h, w) to one map (B, h, w)
(:data:`STATISTICS`: SMOE Scale, the default, and the reference code's alternatives); a
normalization maps each (h, w) map to [0, 1] over its own values (:data:`NORMS`: Gamma CDF,
the default, Gaussian CDF, range). Edge cases never give NaN or Inf: all-zero activations,
constant maps (normalized to zeros), a single channel (std, entropy) and a single pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "EPS",
    "STATISTICS",
    "NORMS",
    "smoe_scale",
    "channel_std",
    "channel_mean",
    "channel_max",
    "truncnorm_entropy",
    "statistic",
    "gaussian_norm",
    "gamma_fit",
    "gamma_norm",
    "range_norm",
    "normalize_layer_maps",
    "normalize_stacks",
    "check_choice",
    "check_maps",
]

#: Added before logarithms, as in the reference code (``x + 0.0000001``).
EPS = 1e-7


# --------------------------------------------------------------------------------------------
# Channel statistics: (B, K, h, w) -> (B, h, w)
# --------------------------------------------------------------------------------------------


def _check_float(t: Any, name: str, layout: str) -> Tensor:
    """``t`` must be a floating-point tensor with one dimension per letter of ``layout``
    (e.g. "B, K, h, w") and no empty dimension after the batch."""
    dims = len(layout.split(","))
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape ({layout}), got "
                        f"{type(t).__name__}")
    if t.dim() != dims:
        raise ValueError(f"{name} must be {dims}-D ({layout}), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if any(n == 0 for n in t.shape[1:]):
        raise ValueError(f"{name} has an empty dimension (shape {tuple(t.shape)}, "
                         f"expected ({layout}))")
    return t


def _check_activations(a: Any, name: str = "activations") -> Tensor:
    return _check_float(a, name, "B, K, h, w")


def _work_dtype(a: Tensor) -> Tensor:
    # float16/bfloat16 cannot hold 1e-7 and log2 sums accurately: compute in float32.
    return a.float() if a.dtype in (torch.float16, torch.bfloat16) else a


def smoe_scale(activations: Tensor) -> Tensor:
    """SMOE Scale over the channels, per sample and location (METHODS.md section 4).

    With x = max(A, 0) + 1e-7 (the reference's guard against log 0; negative values are
    clipped, as the reference code applies a ReLU first): m = mean_k x_k and
    ``SMOE = m * (log2 m - mean_k log2 x_k)``, the mean times log2(arithmetic / geometric mean).

    Args:
        activations: (B, K, h, w) float tensor, normally a post-ReLU activation.

    Returns:
        (B, h, w), non-negative up to rounding; 0 where all channels are equal (e.g. all zero).
    """
    a = _work_dtype(_check_activations(activations))
    if a.requires_grad and torch.is_grad_enabled():
        return _smoe(a, inplace=False)
    # No graph: samples in blocks of about _BLOCK_BYTES, so the five passes over each block
    # (clamp, +eps, mean, log2, mean) run in cache (about 10% faster on the early layers).
    n = max(1, _BLOCK_BYTES // max(1, a[0].numel() * a.element_size()))
    if n >= a.shape[0]:
        return _smoe(a, inplace=True)
    return torch.cat([_smoe(a[i:i + n], inplace=True) for i in range(0, a.shape[0], n)])


_BLOCK_BYTES = 4 << 20


def _smoe(a: Tensor, inplace: bool) -> Tensor:
    x = a.clamp(min=0).add_(EPS)
    m = x.mean(1)
    # in place: one (B, K, h, w) allocation fewer on the big early layers
    mean_log = x.log2_().mean(1) if inplace else torch.log2(x).mean(1)
    return m * (torch.log2(m) - mean_log)


def channel_std(activations: Tensor) -> Tensor:
    """Standard deviation over channels (unbiased, as ``torch.std`` in the reference); (B, h, w).

    A single channel has no spread: the result is 0 there, not NaN.
    """
    a = _work_dtype(_check_activations(activations))
    if a.shape[1] == 1:
        return torch.zeros_like(a[:, 0])
    return a.std(1)


def channel_mean(activations: Tensor) -> Tensor:
    """Mean over channels; (B, K, h, w) -> (B, h, w)."""
    return _work_dtype(_check_activations(activations)).mean(1)


def channel_max(activations: Tensor) -> Tensor:
    """Maximum over channels; (B, K, h, w) -> (B, h, w)."""
    return _work_dtype(_check_activations(activations)).amax(1)


_C1 = 1.0 / math.sqrt(2.0 * math.pi)
_C3 = math.sqrt(2.0 * math.pi * math.e)


def truncnorm_entropy(activations: Tensor) -> Tensor:
    """Entropy of a normal (mean m, std s over channels) truncated below at 0; (B, h, w).

    The reference's ``TruncNormalEntMap``: with a = -m/s, Z = 1 - Phi(a) (Phi + 1e-7),
    ``H = log(sqrt(2 pi e) s Z) + a phi(a) / (2 Z)``. ``s`` is floored at 1e-7 so a single
    channel or equal channels give a finite (very negative) entropy instead of NaN.
    """
    a = _work_dtype(_check_activations(activations))
    m = a.mean(1)
    s = channel_std(a).clamp(min=EPS)
    alpha = -m / s
    pdf = _C1 * torch.exp(-0.5 * alpha * alpha)
    z = 1.0 - (0.5 * (1.0 + torch.erf(alpha / math.sqrt(2.0))) + EPS)
    return torch.log(_C3 * s * z) + alpha * pdf / (2.0 * z)


_STATISTICS: dict[str, Callable[[Tensor], Tensor]] = {
    "smoe": smoe_scale,
    "std": channel_std,
    "mean": channel_mean,
    "max": channel_max,
    "entropy": truncnorm_entropy,
}
STATISTICS: tuple[str, ...] = tuple(_STATISTICS)


def statistic(name: str) -> Callable[[Tensor], Tensor]:
    """The channel statistic ``name`` of :data:`STATISTICS`: (B, K, h, w) -> (B, h, w)."""
    return _STATISTICS[check_choice(name, "statistic", STATISTICS)]


# --------------------------------------------------------------------------------------------
# Per-map normalizations: (B, h, w) -> (B, h, w) in [0, 1], each map over its own h*w values
# --------------------------------------------------------------------------------------------


def check_maps(maps: Any, name: str = "maps") -> Tensor:
    return _check_float(maps, name, "B, h, w")


def _spread(v: Tensor) -> Tensor:
    """(B, N) -> (B, 1) bool: the map is not constant (max > min)."""
    return (v.amax(1, keepdim=True) > v.amin(1, keepdim=True))


def gaussian_norm(maps: Tensor) -> Tensor:
    """Gaussian CDF normalization (reference ``GaussNorm2D``): (B, h, w) -> (B, h, w) in [0, 1].

    ``0.5 * (1 + erf((v - mu) / (sigma * sqrt 2)))`` with mu, sigma the mean and (unbiased)
    standard deviation of the map's h*w values. A constant map becomes all zeros.
    """
    maps = check_maps(maps)
    b, h, w = maps.shape
    v = maps.reshape(b, h * w)
    varies = _spread(v)
    mu = v.mean(1, keepdim=True)
    sigma = v.std(1, keepdim=True) if h * w > 1 else torch.ones_like(mu)
    sigma = torch.where(varies, sigma, torch.ones_like(sigma))  # no 0/0 on constant maps
    out = 0.5 * (1.0 + torch.erf((v - mu) / (sigma * math.sqrt(2.0))))
    return torch.where(varies, out, torch.zeros_like(out)).reshape(b, h, w)


def _fit_dtype(device: torch.device) -> torch.dtype:
    # The shape estimate is a difference of logs: float64 where the device has it (not MPS).
    return torch.float32 if device.type == "mps" else torch.float64


def _gamma_shape(s: Tensor, iterations: int = 6) -> Tensor:
    """Maximum-likelihood Gamma shape k from s = log(mean y) - mean(log y) > 0, any shape.

    k solves log k - digamma(k) = s. Start from the Choi-Wette (1969) approximation
    ``(3 - s + sqrt((s - 3)^2 + 24 s)) / (12 s)`` (within 1.5%) and take Newton steps, as the
    reference does (with the exact trigamma instead of its series; convergence is quadratic,
    so 6 steps reach float64 precision where the reference takes 10 approximate ones).
    """
    k = (3.0 - s + torch.sqrt((s - 3.0) ** 2 + 24.0 * s)) / (12.0 * s)
    for _ in range(iterations):
        f = torch.log(k) - torch.digamma(k) - s
        k_new = k - f / (1.0 / k - torch.polygamma(1, k))
        # f is convex and decreasing: a step from the right of the root can overshoot past 0
        k = torch.where(k_new > 0, k_new, 0.5 * k)
    return k.clamp(1e-7, 1e7)


def _gamma_fit_many(maps: Sequence[Tensor]) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Fit every map of several (B_i, h_i, w_i) batches with one Newton solve.

    Returns per batch ``(y, k, theta, varies)``: the shifted data y = v - min + 1e-7 (B, N) in
    the fit dtype, the ML shape and scale (B,), and (B,) False for constant maps (s = 0, where
    no fit exists: there k = 1 and theta = mean(y) are placeholders).
    """
    ys, means, ss = [], [], []
    for m in maps:
        v = m.reshape(m.shape[0], -1).to(_fit_dtype(m.device))
        y = v - v.amin(1, keepdim=True) + EPS
        mean = y.mean(1)
        ys.append(y)
        means.append(mean)
        # >= 0 by Jensen; rounding can push it a hair below
        ss.append((torch.log(mean) - torch.log(y).mean(1)).clamp(min=0))
    s = torch.cat(ss)
    varies = s > 0
    k = torch.where(varies, _gamma_shape(torch.where(varies, s, torch.ones_like(s))),
                    torch.ones_like(s))
    out, start = [], 0
    for y, mean in zip(ys, means, strict=True):
        kb, vb = k[start:start + y.shape[0]], varies[start:start + y.shape[0]]
        out.append((y, kb, mean / kb, vb))
        start += y.shape[0]
    return out


def gamma_fit(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Maximum-likelihood Gamma parameters ``(k, theta)``, each (B,), as :func:`gamma_norm` fits.

    The data of map b are ``y = v - min(v) + 1e-7`` over its h*w values (the reference's shift
    that makes every value positive). float64 (float32 on MPS). A constant map has no fit:
    there k = 1 and theta = mean(y) are returned, and :func:`gamma_norm` outputs zeros.
    """
    _, k, theta, _ = _gamma_fit_many([check_maps(maps)])[0]
    return k, theta


def _gamma_norm_many(maps: Sequence[Tensor]) -> list[Tensor]:
    out = []
    for m, (y, k, theta, varies) in zip(maps, _gamma_fit_many(maps), strict=True):
        # the fit needs float64; the CDF is accurate to ~1e-6 in float32 and twice as fast
        dt = torch.promote_types(m.dtype, torch.float32)
        cdf = torch.special.gammainc(k[:, None].to(dt), (y / theta[:, None]).to(dt))
        # k > 0 and y / theta > 0 keep the CDF finite; constant maps (no fit) become 0
        out.append(torch.where(varies[:, None], cdf, 0.0).to(m.dtype).reshape(m.shape))
    return out


def gamma_norm(maps: Tensor) -> Tensor:
    """Gamma CDF normalization (reference ``GammaNorm2D``): (B, h, w) -> (B, h, w) in [0, 1].

    Each map is shifted to ``y = v - min + 1e-7``, a Gamma(k, theta) is fitted by maximum
    likelihood (:func:`gamma_fit`) and ``P(k, y / theta)`` (the regularized lower incomplete
    gamma function, ``torch.special.gammainc``) is returned. All batched tensor math.
    Differences from the reference, which change nothing but accuracy: the CDF is exact
    instead of an 8-term series (so no clamp of k at 18 is needed), and the fitted data carry
    one 1e-7 offset, not two. A constant map becomes all zeros.
    """
    return _gamma_norm_many([check_maps(maps)])[0]


def range_norm(maps: Tensor) -> Tensor:
    """Min-max normalization per map (reference ``RangeNorm2D``); a constant map becomes zeros."""
    maps = check_maps(maps)
    b, h, w = maps.shape
    v = maps.reshape(b, h * w)
    lo = v.amin(1, keepdim=True)
    rng = v.amax(1, keepdim=True) - lo
    out = (v - lo) / torch.where(rng > 0, rng, torch.ones_like(rng))
    return out.reshape(b, h, w)


_NORMS: dict[str, Callable[[Tensor], Tensor]] = {
    "gamma": gamma_norm,
    "gaussian": gaussian_norm,
    "range": range_norm,
}
NORMS: tuple[str, ...] = tuple(_NORMS)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def normalize_layer_maps(maps: Tensor, norm: str = "gamma") -> Tensor:
    """Normalize each (h, w) map of a (B, h, w) batch to [0, 1] with ``norm`` in :data:`NORMS`."""
    return _NORMS[check_choice(norm, "norm", NORMS)](maps)


def normalize_stacks(stacks: Sequence[Tensor], norm: str = "gamma") -> list[Tensor]:
    """:func:`normalize_layer_maps` of several (B_i, h_i, w_i) batches; with ``"gamma"`` the
    shape fits of all of them run as one batched iteration (fewer, larger tensor ops)."""
    check_choice(norm, "norm", NORMS)
    return _gamma_norm_many(stacks) if norm == "gamma" else [_NORMS[norm](s) for s in stacks]


