"""Draw the README figure: explanations of CIFAR-100 test images by a reference model.

Run from the repository root: ``python book/figures/make_overview.py`` (writes
``book/figures/overview.png``). Uses the regularized ResNet-18 reference run if present,
else any available one; the figure's title names the checkpoint and its epoch.
"""

from __future__ import annotations

from pathlib import Path

import torch

import interpretable as itp
from interpretable.attribution import GradCAM, gradient, guided_backprop
from interpretable.fastcam import FastCAM, saliency
from interpretable.viz import lovi, show_grid

OUT = Path(__file__).resolve().parent / "overview.png"


def gradient_picture(g: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) gradients -> (B, H, W, 3) pictures: grey 0.5 at zero, per-image scale."""
    scale = g.flatten(1).abs().quantile(0.99, dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return (0.5 + 0.5 * (g / scale).clamp(-1, 1)).permute(0, 2, 3, 1)


def main() -> None:
    names = [n for n in ("resnet18_regularized", "resnet18_baseline") if n in
             itp.reference.available()] or itp.reference.available()
    if not names:
        raise SystemExit("no reference checkpoint: train one first (reference/README.md)")
    model, meta = itp.reference.load(names[0])
    ds = itp.data.cifar100("test")
    idx = [0, 3, 7, 9]
    x, y = ds.tensors(idx)
    maps = {
        "gradient": gradient_picture(gradient(model, x, y)),
        "guided backprop": gradient_picture(guided_backprop(model, x, y)),
        "Grad-CAM": GradCAM(model)(x, y, normalize=True),
        "FastCAM": FastCAM(model)(x, y),
    }
    _, per_layer = saliency(model, x)
    maps["LOVI"] = lovi(per_layer, image=itp.data.denormalize(x))
    fig = show_grid(x, maps, row_labels=[ds.classes[int(c)] for c in y], cell=1.5)
    epoch = meta.get("epoch") or len(itp.reference.log(names[0]))  # last completed epoch
    fig.suptitle(f"{names[0]} (width {meta.get('width')}, epoch {epoch})", fontsize=9)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
