"""Attribution methods: input gradients and class activation maps (METHODS.md sections 1, 3).

Input-space gradients (B, C, H, W): :func:`gradient`, :func:`guided_backprop`,
:func:`smoothgrad`. Class activation maps (B, H, W): :class:`GradCAM`,
:class:`GradCAMPlusPlus`, :class:`XGradCAM`, :class:`LayerCAM`, :class:`ScoreCAM`, all built on
:class:`BaseCAM`. :func:`normalize_maps` is the shared per-image min-max to [0, 1].
"""

from ._common import eval_mode, normalize_maps, resolve_target, upsample
from .cam import BaseCAM, GradCAM, GradCAMPlusPlus, LayerCAM, XGradCAM
from .gradients import gradient, guided_backprop, smoothgrad
from .relu_rules import ReLUSwitch, relu_modules, switchable_relus
from .score_cam import ScoreCAM

__all__ = [
    "gradient",
    "guided_backprop",
    "smoothgrad",
    "BaseCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "XGradCAM",
    "LayerCAM",
    "ScoreCAM",
    "normalize_maps",
    "upsample",
    "eval_mode",
    "resolve_target",
    "ReLUSwitch",
    "relu_modules",
    "switchable_relus",
]
