"""Attribution methods: input gradients, class activation maps, FastCAM (METHODS.md 1, 3, 4).

Input-space gradients (B, C, H, W): :func:`gradient`, :func:`guided_backprop`,
:func:`smoothgrad`. Class activation maps (B, H, W): :class:`GradCAM`,
:class:`GradCAMPlusPlus`, :class:`XGradCAM`, :class:`LayerCAM`, :class:`ScoreCAM`, all built on
:class:`BaseCAM`. FastCAM: :func:`saliency` (SMOE Scale maps of one forward pass, combined
over scales) and :class:`FastCAM` (that saliency times Grad-CAM); the channel statistics and
per-layer normalizations are in :mod:`.smoe`. :func:`normalize_maps` is the per-image
min-max to [0, 1]. :data:`METHODS` is the one registry of method names
(:mod:`.registry`); reading it imports no torch, everything else loads on first use.
"""

from __future__ import annotations

from .._lazy import lazy_names
from .registry import (
    CAM_METHODS,
    DEFAULT_CAMS,
    GRADIENT_CAMS,
    METHODS,
    Method,
    build_method,
    method_key,
    parse_methods,
)

# public name -> submodule that defines it (loaded on first access)
_LAZY = {
    "gradient": "gradients", "guided_backprop": "gradients", "smoothgrad": "gradients",
    "BaseCAM": "cam", "GradCAM": "cam", "GradCAMPlusPlus": "cam", "XGradCAM": "cam",
    "LayerCAM": "cam", "ScoreCAM": "score_cam",
    "FastCAM": "fastcam", "saliency": "fastcam", "combine_maps": "fastcam",
    "scale_maps": "fastcam", "smoe_scale": "smoe",
    "normalize_maps": "maps", "upsample": "maps",
    "ReLUSwitch": "relu_rules", "relu_modules": "relu_rules", "switchable_relus": "relu_rules",
}

__all__ = ["METHODS", "CAM_METHODS", "GRADIENT_CAMS", "DEFAULT_CAMS", "Method", "build_method",
           "method_key", "parse_methods", *_LAZY]

__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
