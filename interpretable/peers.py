"""Our methods' counterparts in the peer libraries: pytorch-grad-cam, torchcam and captum.

One adapter per (library, method key of :data:`interpretable.attribution.METHODS`), so the
benchmarks, the speed chapter and anyone comparing numbers call every peer the same way:
``fn = peer("torchcam", "gradcam", model, layer)`` then ``fn(x, target)`` with ``target`` a
LongTensor (B,), returning a torch tensor on x's device: maps (B, H, W) for the CAMs (as the
library gives them: pytorch-grad-cam's are min-max normalized, torchcam's are at the layer's
resolution), input gradients (B, C, H, W) for captum's gradient methods.

Each call builds the peer's object and removes its hooks before returning (pytorch-grad-cam
and torchcam are context managers), so a peer never slows a later call of ours. The peers are
optional: :func:`installed` says which are importable.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .models import cam_layer

__all__ = ["LIBRARIES", "PEER_NAMES", "installed", "supported", "peer"]

#: library -> the module it installs
LIBRARIES = {"pytorch-grad-cam": "pytorch_grad_cam", "torchcam": "torchcam", "captum": "captum"}
#: (library, our method key) -> the peer's class
PEER_NAMES: dict[tuple[str, str], str] = {
    ("pytorch-grad-cam", "gradcam"): "GradCAM",
    ("pytorch-grad-cam", "gradcam++"): "GradCAMPlusPlus",
    ("pytorch-grad-cam", "xgradcam"): "XGradCAM",
    ("pytorch-grad-cam", "layercam"): "LayerCAM",
    ("pytorch-grad-cam", "scorecam"): "ScoreCAM",
    ("torchcam", "gradcam"): "GradCAM",
    ("torchcam", "gradcam++"): "GradCAMpp",
    ("torchcam", "xgradcam"): "XGradCAM",
    ("torchcam", "layercam"): "LayerCAM",
    ("torchcam", "scorecam"): "ScoreCAM",
    ("captum", "gradient"): "Saliency",
    ("captum", "guided"): "GuidedBackprop",
    ("captum", "smoothgrad"): "NoiseTunnel",
    ("captum", "gradcam"): "LayerGradCam",
}


def installed() -> dict[str, bool]:
    """``{library: importable}`` for each of :data:`LIBRARIES`."""
    return {lib: importlib.util.find_spec(mod) is not None for lib, mod in LIBRARIES.items()}


def supported(library: str) -> list[str]:
    """Our method keys that ``library`` has an adapter for."""
    if library not in LIBRARIES:
        raise ValueError(f"library must be one of {list(LIBRARIES)}, got {library!r}")
    return [key for lib, key in PEER_NAMES if lib == library]


def peer(library: str, key: str, model: nn.Module, layer: nn.Module | None = None,
         **options: Any) -> Callable[[Tensor, Tensor], Tensor]:
    """``fn(x, target)`` computing method ``key`` with ``library`` (see the module docstring).

    ``layer``: the CAM layer (default :func:`interpretable.models.cam_layer`). ``options``:
    ``batch_size`` for pytorch-grad-cam's and torchcam's Score-CAM; ``n`` and
    ``noise_level`` (std as a fraction of each batch's value range, as our
    :func:`~interpretable.attribution.smoothgrad`) for captum's SmoothGrad.
    """
    if (library, key) not in PEER_NAMES:
        raise ValueError(f"no {library} adapter for method {key!r}; "
                         f"{library} has {supported(library)}")
    if layer is None and key not in ("gradient", "guided", "smoothgrad"):
        layer = cam_layer(model)
    name = PEER_NAMES[library, key]
    build = {"pytorch-grad-cam": _pytorch_grad_cam, "torchcam": _torchcam,
             "captum": _captum}[library]
    return build(name, model, layer, **options)


def _pytorch_grad_cam(name: str, model: nn.Module, layer: nn.Module,
                      batch_size: int | None = None) -> Callable[[Tensor, Tensor], Tensor]:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def run(x: Tensor, target: Tensor) -> Tensor:
        with getattr(pgc, name)(model, [layer]) as cam:
            if batch_size:
                cam.batch_size = batch_size
            with contextlib.redirect_stderr(io.StringIO()):  # its Score-CAM draws tqdm bars
                maps = cam(x, [ClassifierOutputTarget(int(c)) for c in target])
        return torch.from_numpy(maps).to(x.device)
    return run


def _torchcam(name: str, model: nn.Module, layer: nn.Module,
              batch_size: int | None = None) -> Callable[[Tensor, Tensor], Tensor]:
    import torchcam.methods as tcm

    kwargs = {"batch_size": batch_size} if batch_size else {}

    def run(x: Tensor, target: Tensor) -> Tensor:
        # torchcam's documented use: the caller's forward, then extractor(class_idx, scores)
        with getattr(tcm, name)(model, layer, **kwargs) as extractor:
            return extractor(target.tolist(), model(x))[0]
    return run


def _captum(name: str, model: nn.Module, layer: nn.Module | None, n: int = 25,
            noise_level: float = 0.15) -> Callable[[Tensor, Tensor], Tensor]:
    import captum.attr as ca

    def run(x: Tensor, target: Tensor) -> Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # captum's notes on requires_grad and ReLU hooks
            if name == "Saliency":
                return ca.Saliency(model).attribute(x, target=target, abs=False)
            if name == "GuidedBackprop":
                return ca.GuidedBackprop(model).attribute(x, target=target)
            if name == "LayerGradCam":
                return ca.LayerGradCam(model, layer).attribute(x, target=target)[:, 0]
            # captum takes one absolute std for the whole batch
            sigma = noise_level * float(x.amax() - x.amin())
            return ca.NoiseTunnel(ca.Saliency(model)).attribute(
                x, target=target, nt_type="smoothgrad", nt_samples=n, stdevs=sigma, abs=False)
    return run
