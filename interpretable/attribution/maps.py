"""Finishing a map: bilinear upsampling to the input's size and per-image min-max scaling
(METHODS.md section 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["upsample", "normalize_maps"]


def upsample(maps: Tensor, size: tuple[int, int], align_corners: bool = False) -> Tensor:
    """Bilinear resize of (B, h, w) or (B, K, h, w) maps to ``size`` (METHODS.md section 3)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    squeeze = maps.dim() == 3
    out = F.interpolate(maps[:, None] if squeeze else maps, size=tuple(size), mode="bilinear",
                        align_corners=align_corners)
    return out[:, 0] if squeeze else out


def normalize_maps(maps: Tensor) -> Tensor:
    """Per-image min-max scaling to [0, 1] of maps (B, H, W) or (B, K, H, W) (last two dims).

    A constant map becomes all zeros (never NaN). Returns a new tensor.
    """
    if not isinstance(maps, Tensor) or maps.dim() < 2:
        raise ValueError("maps must be a tensor of shape (..., H, W)")
    flat = maps.flatten(-2)
    lo = flat.amin(dim=-1, keepdim=True)
    span = flat.amax(dim=-1, keepdim=True) - lo
    out = torch.where(span > 0, (flat - lo) / torch.where(span > 0, span, 1), 0)
    return out.reshape(maps.shape)
