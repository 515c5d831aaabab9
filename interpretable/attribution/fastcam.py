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

from ..checks import check_input, eval_mode, resolve_layer
from ..inference import BuiltForWeights, split_forward, weights_key
from ..models import cam_layer as default_cam_layer
from ..models import scale_layers
from .cam import GradCAM, GradCAMPlusPlus
from .smoe import (
    NORMS,
    STATISTICS,
    check_choice,
    check_maps,
    normalize_stacks,
    range_norm,
    smoe_scale,
)
from .smoe import statistic as _statistic

__all__ = [
    "check_layer_weights",
    "combine_maps",
    "scale_maps",
    "saliency",
    "FastCAM",
]

# --------------------------------------------------------------------------------------------
# Combination over layers
# --------------------------------------------------------------------------------------------


def check_layer_weights(weights: Any, n_layers: int, name: str = "weights") -> list[float]:
    """Layer weights as floats: None -> all 1; else n_layers finite values >= 0, sum > 0
    (``name``: the argument named in errors)."""
    if weights is None:
        return [1.0] * n_layers
    if isinstance(weights, Tensor):
        weights = weights.detach().flatten().tolist()
    try:
        w = [float(v) for v in weights]
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be a sequence of {n_layers} numbers, got {weights!r}"
        ) from exc
    if len(w) != n_layers:
        raise ValueError(f"{name} must have one weight per layer ({n_layers}), got {len(w)}")
    if not all(math.isfinite(v) for v in w):
        raise ValueError(f"{name} must be finite and non-negative, got {w}")
    if any(v < 0 for v in w):
        raise ValueError(f"{name} must be non-negative, got {w}")
    if sum(w) <= 0:
        raise ValueError(f"{name} must not all be zero, got {w}")
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
    w = check_layer_weights(weights, len(maps))
    if norm is not None:
        check_choice(norm, "norm", NORMS)
    first = check_maps(maps[0], "maps[0]")
    b = first.shape[0]
    out_h, out_w = int(size[0]), int(size[1])
    maps = [check_maps(m, f"maps[{i}]") for i, m in enumerate(maps)]
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
    if norm is not None:
        stacks = normalize_stacks(stacks, norm)
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
               statistic: str = "smoe") -> Iterator[_MapRecorder]:
    """Record the raw per-layer maps of every forward pass run inside the block.

    Yields a recorder; after a forward, ``recorder.result()`` is the list of L raw (B, h, w)
    maps (channel ``statistic`` in ``smoe.STATISTICS``). Hooks are removed on exit, also on
    error. Use it to add SMOE maps to any forward you run anyway (that is how
    :class:`FastCAM` shares Grad-CAM's forward).
    """
    layers = _resolve_layers(model, layers)
    recorder = _MapRecorder(layers, _statistic(statistic))
    handles = []
    try:
        for i, layer in enumerate(layers):
            handles.append(layer.register_forward_hook(recorder.hook(i)))
        yield recorder
    finally:
        for h in handles:
            h.remove()


def saliency(model: nn.Module, x: Tensor, layers: Any = None, weights: Any = None, *,
             norm: str = "gamma", statistic: str = "smoe",
             optimize: bool | str = "auto") -> tuple[Tensor, Tensor]:
    """FastCAM's class-agnostic saliency from one forward pass (METHODS.md section 4).

    Runs ``model(x)`` once in eval mode without gradients, reducing the activation of each of
    ``layers`` to a (B, h, w) map (``statistic`` in ``smoe.STATISTICS``, default SMOE Scale);
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
            ``interpretable.inference``) that hands back the layers' outputs, instead of the
            model with hooks. Building it costs a trace (a few forward passes' worth), so
            ``"auto"`` builds it at the second call with the same model, weights and layers
            and keeps it while they stay the same; ``True`` at the first call; ``False``
            never. Results are equal up to float rounding.

    Returns:
        ``(combined (B, H, W), per_layer (B, L, H, W))``, both in [0, 1], on x's device.
    """
    x = check_input(x)
    layers = _resolve_layers(model, layers)
    w = check_layer_weights(weights, len(layers))
    check_choice(norm, "norm", NORMS)
    if optimize not in (True, False, "auto"):
        raise ValueError(f"optimize must be True, False or 'auto', got {optimize!r}")
    with scale_maps(model, layers, statistic) as rec, eval_mode(model), torch.no_grad():
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
        norm, statistic: as in :func:`saliency`.
        optimize: the CAM's ``optimize`` (see :class:`~interpretable.attribution.BaseCAM`).

    Use as a context manager (``with FastCAM(model) as fc: ...``) to release the CAM's hooks
    on exit (outside a block the CAM hook lives only during each call).
    """

    def __init__(self, model: nn.Module, layers: Any = None, weights: Any = None,
                 cam: str = "gradcam", cam_layer: nn.Module | str | None = None, *,
                 norm: str = "gamma", statistic: str = "smoe", optimize: bool | str = "auto"):
        self.model = model
        self.layers = _resolve_layers(model, layers)
        self.weights = check_layer_weights(weights, len(self.layers))
        self.norm = check_choice(norm, "norm", NORMS)
        self.statistic = check_choice(statistic, "statistic", STATISTICS)
        self.cam_name = check_choice(cam, "cam", _CAMS)
        cls = GradCAM if cam == "gradcam" else GradCAMPlusPlus
        layer = (resolve_layer(model, cam_layer, "cam_layer") if cam_layer is not None
                 else default_cam_layer(model))
        # the CAM's optimized forward (no hooks inside) hands back the SMOE layers' outputs
        self.cam = cls(model, layer, optimize=optimize, taps=self.layers)

    def __call__(self, x: Tensor, target: Any = None, normalize: bool = False,
                 return_parts: bool = False) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """FastCAM maps (B, H, W) in [0, 1] for ``target`` (None, int or LongTensor (B,)).

        ``normalize=True`` also min-max normalizes each product map (a constant map -> 0).
        ``return_parts=True`` returns ``(maps, combined saliency, normalized CAM)``.
        """
        x = check_input(x)
        # the CAM's single forward pass (eval mode, its own grad handling) feeds our hooks too
        with scale_maps(self.model, self.layers, self.statistic) as rec:
            cam, taps = self.cam(x, target, normalize=True, with_taps=True)
            if taps is not None:  # the optimized forward ran: no hook fired
                for i, out in enumerate(taps):
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
