"""interpretable: interpretable gradients by training, CAM methods, FastCAM and their metrics.

Submodules load on first use, so importing the package costs almost nothing beyond torch:

- ``itp.data``: CIFAR-100 (offline copy or torchvision download), normalization, batches;
- ``itp.models``: CIFAR ResNet-18 and MobileNet-V2, CAM and scale layers, checkpoints;
- ``itp.attribution``: gradients, guided backprop, SmoothGrad, the Grad-CAM family, Score-CAM;
- ``itp.fastcam``: SMOE Scale saliency and FastCAM; ``itp.viz``: LOVI and overlays;
- ``itp.metrics``: AD, AG, AI, insertion, deletion, accuracy, ``evaluate`` over a dataset;
- ``itp.training``: the gradient-alignment regularizer and the training loop;
- ``itp.reference``: the book's reference checkpoints; ``itp.analysis``: per-image map
  statistics; ``itp.sanity``: model-randomization checks; ``itp.timing``: interleaved timer.
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
