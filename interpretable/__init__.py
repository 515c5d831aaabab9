"""interpretable: interpretable gradients by training, CAM methods, FastCAM and their metrics.

Submodules load on first use, so importing the package costs almost nothing beyond torch.
Layers, each importing only from those above it in this list:

- ``itp.data``: CIFAR-100 (offline copy or torchvision download), normalization, batches;
- ``itp.models``: CIFAR ResNet-18 and MobileNet-V2, CAM and scale layers, checkpoints;
  ``itp.checks``: input checks shared by methods and metrics; ``itp.inference``: the
  inference-optimized forward;
- ``itp.attribution``: gradients, guided backprop, SmoothGrad, the Grad-CAM family,
  Score-CAM, FastCAM and SMOE, and the one registry of method names (``METHODS``);
  ``itp.fastcam``: FastCAM's public names; ``itp.viz``: LOVI, heat maps, overlays;
- ``itp.metrics``: AD, AG, AI, insertion, deletion, accuracy, ``evaluate`` over a dataset,
  result files; ``itp.training``: the gradient-alignment regularizer and the training loop;
  ``itp.sanity``: model-randomization checks; ``itp.timing``: interleaved timer;
- ``itp.study``: this repository's experiment (reference runs, the lambda sweep, the
  from-scratch study, the job list and scheduler of the long runs).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "data", "models", "checks", "inference", "attribution", "fastcam", "viz", "metrics",
    "mapstats", "tables", "compare", "training", "sanity", "timing", "stats", "peers", "roar",
    "study", "book",
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
