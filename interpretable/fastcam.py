"""FastCAM: SMOE Scale saliency from one forward pass, combined over scales (METHODS.md section 4).

Pipeline [P2], reference code LLNL/fastcam (``maps.py``, ``norm.py``):

1. a forward hook on each layer of ``layers`` (default :func:`interpretable.models.scale_layers`,
   the end of each spatial scale) turns its activations (B, K, h, w) into one map (B, h, w)
   with a channel statistic, by default :func:`smoe_scale`;
2. each map is normalized to [0, 1] over its h*w values (default: Gamma CDF, see below);
3. the maps are upsampled bilinearly to the input's (H, W) and averaged with weights;
4. :class:`FastCAM` multiplies that average with a Grad-CAM or Grad-CAM++ map in [0, 1].

The default normalization is ``"gamma"``: METHODS.md section 4 names it the reference default,
and the current LLNL/fastcam ``SaliencyMap`` uses ``GammaNorm2D`` by default (its docstrings:
"slightly better" ROAR/KAR than the Gaussian CDF, which is cheaper and the older default).
Cost on a CIFAR ResNet-18, batch 64 (one-thread CPU profile): the SMOE hooks add about 5% to
a forward pass, the Gamma normalization about 2% more (``norm="gaussian"``: well under 1%).

Edge cases never give NaN or Inf: all-zero activations, constant maps (normalized to zeros,
as for the CAMs of section 3), a single channel (std, entropy) and a single pixel.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interpretable.attribution import GradCAM, GradCAMPlusPlus, eval_mode
from interpretable.attribution._common import check_input, resolve_layer
from interpretable.attribution._inference import BuiltForWeights, split_forward, weights_key

__all__ = [
    "EPS",
    "METHODS",
    "NORMS",
    "smoe_scale",
    "channel_std",
    "channel_mean",
    "channel_max",
    "truncnorm_entropy",
    "gaussian_norm",
    "gamma_fit",
    "gamma_norm",
    "range_norm",
    "normalize_maps",
    "combine_maps",
    "scale_maps",
    "saliency",
    "FastCAM",
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
METHODS: tuple[str, ...] = tuple(_STATISTICS)


# --------------------------------------------------------------------------------------------
# Per-map normalizations: (B, h, w) -> (B, h, w) in [0, 1], each map over its own h*w values
# --------------------------------------------------------------------------------------------


def _check_maps(maps: Any, name: str = "maps") -> Tensor:
    return _check_float(maps, name, "B, h, w")


def _spread(v: Tensor) -> Tensor:
    """(B, N) -> (B, 1) bool: the map is not constant (max > min)."""
    return (v.amax(1, keepdim=True) > v.amin(1, keepdim=True))


def gaussian_norm(maps: Tensor) -> Tensor:
    """Gaussian CDF normalization (reference ``GaussNorm2D``): (B, h, w) -> (B, h, w) in [0, 1].

    ``0.5 * (1 + erf((v - mu) / (sigma * sqrt 2)))`` with mu, sigma the mean and (unbiased)
    standard deviation of the map's h*w values. A constant map becomes all zeros.
    """
    maps = _check_maps(maps)
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
    _, k, theta, _ = _gamma_fit_many([_check_maps(maps)])[0]
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
    return _gamma_norm_many([_check_maps(maps)])[0]


def range_norm(maps: Tensor) -> Tensor:
    """Min-max normalization per map (reference ``RangeNorm2D``); a constant map becomes zeros."""
    maps = _check_maps(maps)
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


def _check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def normalize_maps(maps: Tensor, norm: str = "gamma") -> Tensor:
    """Normalize each (h, w) map of a (B, h, w) batch to [0, 1] with ``norm`` in :data:`NORMS`."""
    return _NORMS[_check_choice(norm, "norm", NORMS)](maps)


# --------------------------------------------------------------------------------------------
# Combination over layers
# --------------------------------------------------------------------------------------------


def _check_weights(weights: Any, n_layers: int) -> list[float]:
    """Layer weights as floats: None -> all 1; else n_layers finite values >= 0, sum > 0."""
    if weights is None:
        return [1.0] * n_layers
    if isinstance(weights, Tensor):
        weights = weights.detach().flatten().tolist()
    try:
        w = [float(v) for v in weights]
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"weights must be a sequence of {n_layers} numbers, got {weights!r}"
        ) from exc
    if len(w) != n_layers:
        raise ValueError(f"weights must have one value per layer ({n_layers}), got {len(w)}")
    if not all(math.isfinite(v) for v in w):
        raise ValueError(f"weights must be finite, got {w}")
    if any(v < 0 for v in w):
        raise ValueError(f"weights must be non-negative, got {w}")
    if sum(w) <= 0:
        raise ValueError(f"weights must not all be zero, got {w}")
    return w


def combine_maps(maps: Sequence[Tensor], size: tuple[int, int], weights: Any = None,
                 norm: str | None = "gamma") -> tuple[Tensor, Tensor]:
    """Normalize, upsample and average per-layer maps (METHODS.md section 4, "Combination").

    Args:
        maps: L raw maps, map i of shape (B, h_i, w_i).
        size: the output (H, W).
        weights: L non-negative weights (default all 1); C = sum_i w_i S_i / sum_i w_i.
        norm: per-map normalization in :data:`NORMS`, or None if the maps are already in [0,1].

    Returns:
        ``(combined (B, H, W), per_layer (B, L, H, W))``, both in [0, 1]; ``per_layer`` holds
        the normalized, upsampled, unweighted maps (earliest layer first).
    """
    if len(maps) == 0:
        raise ValueError("maps must hold at least one (B, h, w) map")
    w = _check_weights(weights, len(maps))
    if norm is not None:
        _check_choice(norm, "norm", NORMS)
    first = _check_maps(maps[0], "maps[0]")
    b = first.shape[0]
    out_h, out_w = int(size[0]), int(size[1])
    maps = [_check_maps(m, f"maps[{i}]") for i, m in enumerate(maps)]
    for i, m in enumerate(maps):
        if m.shape[0] != b:
            raise ValueError(f"maps[{i}] has batch size {m.shape[0]}, maps[0] has {b}")
    # Layers of one size are normalized and resized together: fewer, larger tensor ops (each
    # map is still normalized over its own h*w values only).
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, m in enumerate(maps):
        groups.setdefault(tuple(m.shape[1:]), []).append(i)
    stacks = [torch.cat([maps[i] for i in idx]) if len(idx) > 1 else maps[idx[0]]
              for idx in groups.values()]
    if norm == "gamma":  # also one shape fit for all layers
        stacks = _gamma_norm_many(stacks)
    elif norm is not None:
        stacks = [_NORMS[norm](st) for st in stacks]
    per_layer = first.new_empty(b, len(maps), out_h, out_w)
    for idx, st in zip(groups.values(), stacks, strict=True):
        if st.shape[1:] != (out_h, out_w):
            st = F.interpolate(st[:, None], size=(out_h, out_w), mode="bilinear",
                               align_corners=False)[:, 0]
        st = st.view(len(idx), b, out_h, out_w).transpose(0, 1)
        if len(idx) == 1:
            per_layer[:, idx[0]] = st[:, 0]
        else:
            per_layer[:, idx] = st
    wt = torch.tensor(w, device=per_layer.device, dtype=per_layer.dtype)
    combined = torch.einsum("blhw,l->bhw", per_layer, wt / wt.sum())
    # rounding in the weighted mean may step a hair outside [0, 1]
    return combined.clamp_(0.0, 1.0), per_layer


# --------------------------------------------------------------------------------------------
# Hooks: per-layer maps from whatever forward pass runs while they are registered
# --------------------------------------------------------------------------------------------


def _resolve_layers(model: nn.Module, layers: Any) -> list[nn.Module]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if layers is None:
        from interpretable.models import scale_layers

        layers = scale_layers(model)
    if isinstance(layers, (nn.Module, str)):
        raise TypeError("layers must be a list of nn.Modules (or module names), not a single one")
    layers = list(layers)
    if not layers:
        raise ValueError("layers must not be empty: give at least one layer of the model")
    return [resolve_layer(model, layer, f"layers[{i}]") for i, layer in enumerate(layers)]


class _MapRecorder:
    """Forward hooks that reduce each layer's output to a raw (B, h, w) map right away.

    Computing in the hook (not after the forward) frees the activation early and is immune to
    later in-place ops on it. The map is computed without gradient, so the hooks also serve a
    forward that records a graph for a CAM. If a layer runs several times, the last call wins.
    """

    def __init__(self, layers: list[nn.Module], statistic: Callable[[Tensor], Tensor]):
        self.layers = layers
        self.statistic = statistic
        self.maps: list[Tensor | None] = [None] * len(layers)

    def hook(self, index: int) -> Callable:
        def fn(module: nn.Module, inputs: Any, output: Any) -> None:
            self.record(index, output)
        return fn

    def record(self, index: int, output: Any) -> None:
        """Reduce layer ``index``'s output (B, K, h, w) to its raw map (B, h, w)."""
        if not isinstance(output, Tensor) or output.dim() != 4:
            shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise ValueError(
                f"layers[{index}] ({type(self.layers[index]).__name__}) must output a 4-D "
                f"activation (B, K, h, w), got {shape}"
            )
        with torch.no_grad():
            a = output.detach()
            # the reference applies a ReLU before every statistic (smoe_scale clips itself)
            if self.statistic is not smoe_scale:
                a = a.clamp(min=0)
            self.maps[index] = self.statistic(a)

    def result(self) -> list[Tensor]:
        missing = [i for i, m in enumerate(self.maps) if m is None]
        if missing:
            raise ValueError(
                f"layers {missing} produced no output during the forward pass: they are not "
                "used by model.forward"
            )
        return list(self.maps)  # type: ignore[arg-type]


@contextmanager
def scale_maps(model: nn.Module, layers: Any = None,
               method: str = "smoe") -> Iterator[_MapRecorder]:
    """Record the raw per-layer maps of every forward pass run inside the block.

    Yields a recorder; after a forward, ``recorder.result()`` is the list of L raw (B, h, w)
    maps (channel statistic ``method`` in :data:`METHODS`). Hooks are removed on exit, also
    on error. Use it to add SMOE maps to any forward you run anyway (that is how
    :class:`FastCAM` shares Grad-CAM's forward).
    """
    layers = _resolve_layers(model, layers)
    recorder = _MapRecorder(layers, _STATISTICS[_check_choice(method, "method", METHODS)])
    handles = []
    try:
        for i, layer in enumerate(layers):
            handles.append(layer.register_forward_hook(recorder.hook(i)))
        yield recorder
    finally:
        for h in handles:
            h.remove()


def saliency(model: nn.Module, x: Tensor, layers: Any = None, weights: Any = None, *,
             norm: str = "gamma", method: str = "smoe",
             optimize: bool | str = "auto") -> tuple[Tensor, Tensor]:
    """FastCAM's class-agnostic saliency from one forward pass (METHODS.md section 4).

    Runs ``model(x)`` once in eval mode without gradients, reducing the activation of each of
    ``layers`` to a (B, h, w) map (``method`` in :data:`METHODS`, default SMOE Scale);
    normalizes each map (``norm`` in :data:`NORMS`, default ``"gamma"``, see the module
    docstring), upsamples it bilinearly to (H, W) and averages with ``weights``.

    Args:
        model: the network; its train/eval flags and hooks are as before afterwards.
        x: (B, C, H, W) model input on any device.
        layers: modules (or names) of ``model``; default ``interpretable.models.scale_layers``.
        weights: one non-negative weight per layer, default all 1 (the reference's current
            default; its older prior weights were [0.18, 0.15, 0.37, 0.4, 0.72]).
        optimize: on CPU in float32, run the forward up to the last layer as an
            inference-optimized graph (BN folded, oneDNN weights packed; see
            ``attribution._inference``) that hands back the layers' outputs, instead of the
            model with hooks. Building it costs a trace (a few forward passes' worth), so
            ``"auto"`` builds it at the second call with the same model, weights and layers
            and keeps it while they stay the same; ``True`` at the first call; ``False``
            never. Results are equal up to float rounding.

    Returns:
        ``(combined (B, H, W), per_layer (B, L, H, W))``, both in [0, 1], on x's device.
    """
    x = check_input(x)
    layers = _resolve_layers(model, layers)
    w = _check_weights(weights, len(layers))
    _check_choice(norm, "norm", NORMS)
    if optimize not in (True, False, "auto"):
        raise ValueError(f"optimize must be True, False or 'auto', got {optimize!r}")
    with scale_maps(model, layers, method) as rec, eval_mode(model), torch.no_grad():
        pre = _saliency_forward(model, layers, x, optimize)
        if pre is None:
            model(x)
        else:  # the graph returns the layers' outputs last; no hook fires inside it
            outs = pre(x)
            for i, out in enumerate(outs[len(outs) - len(layers):]):
                rec.record(i, out)
        raw = rec.result()
    return combine_maps(raw, x.shape[-2:], w, norm)


#: model -> its optimized forward up to the last scale layer (kept while the model lives)
_SALIENCY_FORWARDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _saliency_forward(model: nn.Module, layers: list[nn.Module], x: Tensor,
                      optimize: bool | str) -> Callable | None:
    """The cached optimized forward for :func:`saliency`, or None for the hooked model."""
    if optimize is False or x.device.type != "cpu" or x.dtype != torch.float32:
        return None

    def build():
        built = split_forward(model, layers[-1], x[:1], layers)
        return None if built is None else built[0]

    key = (weights_key(model), tuple(id(layer) for layer in layers))
    cache = _SALIENCY_FORWARDS.setdefault(model, BuiltForWeights())
    return cache.get(key, build, now=optimize is True)


# --------------------------------------------------------------------------------------------
# FastCAM = combined saliency x CAM
# --------------------------------------------------------------------------------------------


_CAMS = ("gradcam", "gradcam++")


class FastCAM:
    """FastCAM [P2]: the combined SMOE saliency times a Grad-CAM (or Grad-CAM++) map.

    ``FastCAM(model)(x, target)`` -> (B, H, W) in [0, 1] (METHODS.md section 4). The SMOE hooks
    ride along on the CAM's own forward pass, so the whole costs one forward and one (short)
    backward: about the price of the CAM alone.

    Args:
        model: the network.
        layers: SMOE layers (default ``scale_layers(model)``), modules of ``model`` or their
            dotted names (``["stem", "layer1", ...]``); weights: one per layer.
        cam: ``"gradcam"`` or ``"gradcam++"``; cam_layer: its layer, a module or a dotted
            name (default :func:`interpretable.models.cam_layer`).
        norm, method: as in :func:`saliency`.

    Use as a context manager (``with FastCAM(model) as fc: ...``) to release the CAM's hooks
    on exit (outside a block the CAM hook lives only during each call).
    """

    def __init__(self, model: nn.Module, layers: Any = None, weights: Any = None,
                 cam: str = "gradcam", cam_layer: nn.Module | str | None = None, *,
                 norm: str = "gamma", method: str = "smoe"):
        self.model = model
        self.layers = _resolve_layers(model, layers)
        self.weights = _check_weights(weights, len(self.layers))
        self.norm = _check_choice(norm, "norm", NORMS)
        self.method = _check_choice(method, "method", METHODS)
        self.cam_name = _check_choice(cam, "cam", _CAMS)
        from interpretable.models import cam_layer as default_cam_layer

        cls = GradCAM if cam == "gradcam" else GradCAMPlusPlus
        layer = (resolve_layer(model, cam_layer, "cam_layer") if cam_layer is not None
                 else default_cam_layer(model))
        self.cam = cls(model, layer)
        # the CAM's optimized forward (no hooks inside) hands back the SMOE layers' outputs
        self.cam._taps = tuple(self.layers)

    def __call__(self, x: Tensor, target: Any = None, normalize: bool = False,
                 return_parts: bool = False) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """FastCAM maps (B, H, W) in [0, 1] for ``target`` (None, int or LongTensor (B,)).

        ``normalize=True`` also min-max normalizes each product map (a constant map -> 0).
        ``return_parts=True`` returns ``(maps, combined saliency, normalized CAM)``.
        """
        x = check_input(x)
        # the CAM's single forward pass (eval mode, its own grad handling) feeds our hooks too
        with scale_maps(self.model, self.layers, self.method) as rec:
            cam = self.cam(x, target, normalize=True)
            if self.cam.tap_outputs is not None:  # the optimized forward ran: no hook fired
                for i, out in enumerate(self.cam.tap_outputs):
                    rec.record(i, out)
            raw = rec.result()
        combined, _ = combine_maps(raw, x.shape[-2:], self.weights, self.norm)
        cam = cam.detach().to(combined.dtype)
        maps = combined * cam
        if normalize:
            maps = range_norm(maps)
        return (maps, combined, cam) if return_parts else maps

    def remove_hooks(self) -> None:
        """Remove the CAM's layer hook (the SMOE hooks only exist during a call)."""
        self.cam.remove_hooks()

    def __enter__(self) -> FastCAM:
        self.cam.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.cam.__exit__(*exc_info)
