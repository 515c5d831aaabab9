"""Test models shared by several test files (imported as ``from _models import ...``)."""

from __future__ import annotations

import torch
from torch import nn


def randomize_bn(model: nn.Module) -> nn.Module:
    """Random BN statistics/affines, in eval mode: a freshly initialised net has near-degenerate
    maps (every BN an identity), which would hide mistakes in how BN is handled."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = 0.2 * torch.randn(n, generator=g)
            m.running_mean.data = 0.2 * torch.randn(n, generator=g)
            m.running_var.data = torch.rand(n, generator=g) + 0.5
    return model.eval()
