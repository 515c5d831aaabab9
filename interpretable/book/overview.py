"""The book's overview figure: what each family of explanation shows on the same images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .. import data
from ..attribution import FastCAM, GradCAM, gradient, guided_backprop, saliency
from ..viz import lovi, show_grid

__all__ = ["gradient_picture", "overview_figure"]


def gradient_picture(g: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) signed gradients -> (B, H, W, 3) pictures in [0, 1]: grey 0.5 at zero,
    scaled per image by its 99th percentile of |g|."""
    scale = g.flatten(1).abs().quantile(0.99, dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return (0.5 + 0.5 * (g / scale).clamp(-1, 1)).permute(0, 2, 3, 1)


def overview_figure(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    labels: Sequence[str] | None = None, title: str | None = None) -> Any:
    """One row per image (B, 3, H, W normalized; y (B,) classes): the gradient, guided
    backpropagation, Grad-CAM, FastCAM and the LOVI colouring of the per-layer SMOE maps."""
    with GradCAM(model) as cam, FastCAM(model) as fc:
        maps = {
            "gradient": gradient_picture(gradient(model, x, y)),
            "guided backprop": gradient_picture(guided_backprop(model, x, y)),
            "Grad-CAM": cam(x, y, normalize=True),
            "FastCAM": fc(x, y),
        }
    _, per_layer = saliency(model, x)
    maps["LOVI"] = lovi(per_layer, image=data.denormalize(x))
    fig = show_grid(x, maps, row_labels=labels, cell=1.5)
    if title:
        fig.suptitle(title)
    return fig
