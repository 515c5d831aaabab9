"""interpretable: interpretable gradients by training, CAM methods, FastCAM and their metrics.

Submodules load on first use (``itp.data``, ``itp.models``, ``itp.attribution``,
``itp.fastcam``, ``itp.viz``, ``itp.metrics``, ``itp.training``), so importing the package
costs almost nothing beyond torch itself.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "data", "models", "attribution", "fastcam", "viz", "metrics", "training", "reference",
    "analysis", "timing", "sanity",
)
__all__ = list(_SUBMODULES) + ["__version__", "default_device"]


def default_device():
    """The device to use when none is given: CUDA if available, else Apple MPS, else CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
