"""What the training loop measures on the test set after every epoch: top-1 and top-5
accuracy and the alignment cos(g, g~) of the input gradients with its 95% interval."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from interpretable import data as itp_data
from interpretable.metrics.classification import topk_correct
from interpretable.stats import mean_interval
from interpretable.training.losses import GRADIENT_OF, gradient_cosines, input_gradients

__all__ = ["accuracy_and_alignment", "per_image_cosines", "autocast"]



def per_image_cosines(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      gradient_of: tuple[str, ...] = GRADIENT_OF) -> dict[str, torch.Tensor]:
    """cos(g, g~) of each image for each kind of ``gradient_of`` (METHODS.md section 2):
    ``{kind: (B,)}`` for ``x`` (B, 3, H, W) and true classes ``y`` (B,), in the model's
    current mode (callers set eval mode), without a graph for a second derivative."""
    out = {}
    for kind in gradient_of:
        _, g, gg = input_gradients(model, x, y, create_graph=False, gradient_of=kind)
        out[kind] = gradient_cosines(g, gg)
    return out


def accuracy_and_alignment(model: nn.Module, dataset, device: torch.device | None = None,
                           batch_size: int = 500, memory_format=torch.contiguous_format,
                           amp_dtype: torch.dtype | None = None, align_images: int = 0,
                           gradient_of: str | tuple[str, ...] = "logit",
                           ) -> dict[str, Any]:
    """Top-1 / top-5 accuracy (%) on ``dataset`` and gradient alignment on its first
    ``align_images`` images (METHODS.md section 2).

    Alignment is the per-image cos(g, g~) of the true label's logit (``gradient_of="logit"``)
    or cross-entropy (``"loss"``), eval-mode BN. Returns ``test_acc``, ``test_top5``,
    ``test_align`` (1 - mean cos, the cosine L_R), ``test_align_ci`` ([low, high], 95%
    Student-t interval of 1 - mean cos) and ``align_images``; for a tuple of ``gradient_of``
    values the alignment keys get a suffix (``test_align_logit``, ...). No alignment keys but
    ``align_images`` when ``align_images`` is 0. The model's mode is restored afterwards.
    """
    kinds = (gradient_of,) if isinstance(gradient_of, str) else tuple(gradient_of)
    for k in kinds:
        if k not in GRADIENT_OF:
            raise ValueError(f"gradient_of must be one of {GRADIENT_OF}, got {k!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct1 = correct5 = n = 0
    cosines: dict[str, list[float]] = {k: [] for k in kinds}
    taken = 0
    try:
        for x, y in itp_data.batches(dataset, batch_size, device=device):
            x = x.contiguous(memory_format=memory_format)
            with torch.no_grad(), autocast(device, amp_dtype):
                z = model(x).float()
            c1, c5 = topk_correct(z, y, (1, min(5, z.shape[1]))).tolist()
            correct1 += c1
            correct5 += c5
            if taken < align_images:
                k = min(align_images - taken, x.shape[0])
                for kind, c in per_image_cosines(model, x[:k], y[:k], kinds).items():
                    cosines[kind] += c.tolist()
                taken += k
            n += y.shape[0]
    finally:
        model.train(was_training)
    out: dict[str, Any] = {"test_acc": 100.0 * correct1 / n, "test_top5": 100.0 * correct5 / n}
    for kind in kinds:
        if not taken:
            break
        ci = mean_interval(cosines[kind])
        suffix = "" if isinstance(gradient_of, str) else f"_{kind}"
        out[f"test_align{suffix}"] = 1.0 - ci["mean"]
        out[f"test_align{suffix}_ci"] = [1.0 - ci["high"], 1.0 - ci["low"]]
    out["align_images"] = taken
    return out


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


