"""The one list of attribution methods: command-line key, display name, kind, and how to build
each one for a model.

Every caller that names methods (the ``evaluate`` command, :func:`interpretable.metrics.evaluate`,
the sanity checks, the benchmarks, the job list and the book) uses :data:`METHODS`, so a method
is added in one place. Reading the registry imports no torch: the classes are imported when a
method is built.

A built method is called as ``maps = m(x, target)`` -> (B, H, W) on x's device and can be used
as a context manager (``with build_method("gradcam", model) as m: ...``: hooks removed on exit).
Input-gradient methods give |g| summed over the colour channels, so every method returns one
map per image.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Method", "METHODS", "CAM_METHODS", "GRADIENT_CAMS", "DEFAULT_CAMS", "parse_methods",
           "build_method", "method_key"]


@dataclass(frozen=True)
class Method:
    """One attribution method.

    ``key``: command-line name (``"gradcam"``); ``name``: display name used in result files,
    tables and figures (``"Grad-CAM"``); ``kind``: ``"gradient"`` (input gradients, METHODS.md
    section 1), ``"cam"`` (class activation maps, section 3) or ``"saliency"`` (FastCAM's
    forward-pass saliency, section 4); ``factory``: ``"module:attribute"`` of the class or
    function that builds it; ``backward``: whether it needs a backward pass (all gradient
    methods; not Score-CAM, not SMOE); ``class_specific``: whether the map depends on the
    target; ``color``: its colour in every figure of the book (Okabe-Ito palette).
    """

    key: str
    name: str
    kind: str
    factory: str
    backward: bool = True
    class_specific: bool = True
    color: str = "#888888"


METHODS: dict[str, Method] = {m.key: m for m in (
    Method("gradient", "gradient", "gradient", "gradients:gradient", color="#888888"),
    Method("guided", "guided backprop", "gradient", "gradients:guided_backprop",
           color="#000000"),
    Method("smoothgrad", "SmoothGrad", "gradient", "gradients:smoothgrad", color="#F0E442"),
    Method("gradcam", "Grad-CAM", "cam", "cam:GradCAM", color="#0072B2"),
    Method("gradcam++", "Grad-CAM++", "cam", "cam:GradCAMPlusPlus", color="#56B4E9"),
    Method("xgradcam", "XGrad-CAM", "cam", "cam:XGradCAM", color="#009E73"),
    Method("layercam", "Layer-CAM", "cam", "cam:LayerCAM", color="#CC79A7"),
    Method("scorecam", "Score-CAM", "cam", "score_cam:ScoreCAM", backward=False,
           color="#E69F00"),
    Method("fastcam", "FastCAM", "cam", "fastcam:FastCAM", color="#D55E00"),
    Method("smoe", "SMOE saliency", "saliency", "fastcam:saliency", backward=False,
           class_specific=False, color="#7A4F9A"),
)}
#: The class activation maps (FastCAM included: a CAM times SMOE saliency).
CAM_METHODS: tuple[str, ...] = tuple(k for k, m in METHODS.items() if m.kind == "cam")
#: The CAMs whose weights come from the gradient at the layer (one forward, one backward).
GRADIENT_CAMS: tuple[str, ...] = tuple(k for k in CAM_METHODS if METHODS[k].backward
                                       and METHODS[k].factory.startswith("cam:"))
#: The CAMs the study scores by default (``evaluate``), as in the paper plus FastCAM.
DEFAULT_CAMS: tuple[str, ...] = ("gradcam", "gradcam++", "scorecam", "fastcam")

_BY_NAME = {m.name.lower(): k for k, m in METHODS.items()}


def method_key(name: str) -> str:
    """The key of a method given its key or display name (``"Grad-CAM"`` -> ``"gradcam"``)."""
    text = str(name).strip().lower()
    if text in METHODS:
        return text
    if text in _BY_NAME:
        return _BY_NAME[text]
    raise ValueError(f"method: unknown method {name!r}; choose from {', '.join(METHODS)}")


def parse_methods(methods: str | Sequence[str], allowed: Sequence[str] | None = None
                  ) -> list[str]:
    """Method keys from ``"gradcam,scorecam"`` or a list of keys or display names.

    Case-insensitive; duplicates dropped, order kept. ValueError naming the unknown ones, or
    those outside ``allowed`` (default: every key of :data:`METHODS`).
    """
    allowed = list(METHODS) if allowed is None else list(allowed)
    items = methods.split(",") if isinstance(methods, str) else list(methods)
    names = [str(m).strip() for m in items if str(m).strip()]
    if not names:
        raise ValueError(f"methods must name at least one of {', '.join(allowed)}")
    keys, bad = [], []
    for n in names:
        try:
            keys.append(method_key(n))
        except ValueError:
            bad.append(n)
    bad += [k for k in keys if k not in allowed]
    if bad:
        raise ValueError(f"methods: unknown method {', '.join(map(repr, bad))}; choose from "
                         f"{', '.join(allowed)}")
    return list(dict.fromkeys(keys))


class _InputGradientMap:
    """|g| summed over colour channels, (B, H, W), for a gradient function of section 1."""

    def __init__(self, fn: Any, model: Any, smooth: bool = False, **options: Any):
        self.fn, self.model, self.smooth, self.options = fn, model, smooth, options

    def __call__(self, x, target=None):
        if self.smooth:  # smoothgrad(gradient_fn, model, x, target, ...)
            from .gradients import gradient

            g = self.fn(gradient, self.model, x, target, **self.options)
        else:
            g = self.fn(self.model, x, target, **self.options)
        return g.abs().sum(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None


class _SaliencyMap:
    """FastCAM's class-agnostic combined SMOE map (B, H, W); the target is ignored."""

    def __init__(self, fn: Any, model: Any, **options: Any):
        self.fn, self.model, self.options = fn, model, options

    def __call__(self, x, target=None):
        return self.fn(self.model, x, **self.options)[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None


def build_method(key: str, model: Any, **options: Any) -> Any:
    """Method ``key`` (or display name) bound to ``model``: ``m(x, target)`` -> (B, H, W).

    ``options`` go to the class or function (e.g. ``layer=``, ``optimize=`` for the CAMs,
    ``n=`` and ``noise_level=`` for SmoothGrad, ``weights=`` for FastCAM and SMOE).
    """
    m = METHODS[method_key(key)]
    module, attr = m.factory.split(":")
    obj = getattr(importlib.import_module(f"{__package__}.{module}"), attr)
    if m.kind == "gradient":
        return _InputGradientMap(obj, model, smooth=m.key == "smoothgrad", **options)
    if m.kind == "saliency":
        return _SaliencyMap(obj, model, **options)
    return obj(model, **options)
