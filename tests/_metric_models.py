"""Small models with known behaviour and run folders for the metric tests (imported as
``from _metric_models import ...``)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from interpretable.data import normalize


class TinyNet(nn.Module):
    """Conv-BN-ReLU-conv-ReLU-pool-linear: small, non-linear, with batch norm."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, classes)
        with torch.no_grad():  # non-trivial running statistics, so eval mode matters
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.fc.weight.mul_(8)

    def forward(self, x):
        h = F.relu(self.bn(self.conv1(x)))
        h = F.relu(self.conv2(h)).mean((2, 3))
        return self.fc(h)


class RegionNet(nn.Module):
    """Two classes: logit 0 is 0, logit 1 = a * sum over a region R of (x - black)[channel 0].

    For x_masked = x * S + (1 - S) * black, (x_masked - black) = S * (x - black), so the logit
    of a masked input is known by hand.
    """

    def __init__(self, region: torch.Tensor, a: float):
        super().__init__()
        self.register_buffer("region", region.double())
        self.a = a

    def forward(self, x):
        u = (x - normalize(torch.zeros(1, 3, 1, 1, dtype=x.dtype)))[:, 0]
        z1 = self.a * (u * self.region).sum((1, 2))
        return torch.stack([torch.zeros_like(z1), z1], dim=1)



def pixel_image(b, h, w, dtype=torch.float64):
    return torch.rand(b, 3, h, w, dtype=dtype)


def tiny_setup():
    """TinyNet in float64, eval mode, and three random 16x16 images (normalized)."""
    model = TinyNet().double().eval()
    x = normalize(pixel_image(3, 16, 16))
    return model, x


def save_run(folder: Path, seed: int = 0, name: str = "final.pt") -> Path:
    """A run folder with a tiny random ResNet-18 checkpoint (random BN statistics)."""
    from _models import randomize_bn

    import interpretable as itp

    torch.manual_seed(seed)
    model = randomize_bn(itp.models.create("resnet18", width=0.125))
    itp.models.save_checkpoint(folder / name, model, meta={"epoch": 3})
    return folder


def copy_run(run: Path, tmp_path: Path) -> Path:
    """A copy of run folder ``run`` (its final.pt) at ``tmp_path / "run"``."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "final.pt").write_bytes((run / "final.pt").read_bytes())
    return folder
