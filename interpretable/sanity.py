"""Model-randomization sanity check (Adebayo et al. 2018, cascading randomization).

An explanation that explains the *model* must change when the model's weights are replaced
by random ones. The cascade re-initializes the weight blocks from the top (classifier)
down, one more block per step, and compares each step's maps with the trained model's.
Every function here works on copies: the model passed in is never modified.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from .attribution import METHODS, build_method, normalize_maps, parse_methods
from .mapstats import spearman, ssim

__all__ = ["blocks", "randomize_", "randomized", "cascade", "explain", "similarity",
           "SANITY_METHODS"]


def blocks(model: nn.Module, split: int = 3) -> list[tuple[str, nn.Module]]:
    """The weight blocks of ``model`` in forward order: ``[(qualified name, module), ...]``.

    The top-level children that hold parameters; an ``nn.Sequential`` child of more than
    ``split`` modules (MobileNet-V2's ``features``) contributes its children instead.
    """
    out = []
    for name, child in model.named_children():
        if next(child.parameters(), None) is None:
            continue
        if isinstance(child, nn.Sequential) and len(child) > split:
            out += [(f"{name}.{n}", c) for n, c in child.named_children()
                    if next(c.parameters(), None) is not None]
        else:
            out.append((name, child))
    return out


def randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Re-initialize ``module`` in place with PyTorch's default initialization; returns it.

    Every submodule with ``reset_parameters`` (convolutions, linear layers, batch norms,
    whose running statistics reset too) draws fresh weights from a generator seeded with
    ``seed``; the global random state is left as it was.
    """
    devices = [p.device for p in module.parameters() if p.device.type == "cuda"]
    with torch.random.fork_rng(devices=sorted(set(devices), key=str)):
        torch.manual_seed(seed)
        with torch.no_grad():
            for m in module.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
    return module


def _top_down(model: nn.Module, split: int) -> list[str]:
    return [name for name, _ in blocks(model, split)][::-1]


def randomized(model: nn.Module, k: int, seed: int = 0, split: int = 3) -> nn.Module:
    """A copy of ``model`` with its top ``k`` blocks (see :func:`blocks`) re-initialized.

    The i-th block from the top (i = 1..k) is re-initialized with seed ``seed + i``, so the
    result equals step k of :func:`cascade` with the same ``seed``.
    """
    names = _top_down(model, split)
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= len(names):
        raise ValueError(f"k must be an int in [0, {len(names)}], got {k!r}")
    net = copy.deepcopy(model)
    modules = dict(net.named_modules())
    for i, name in enumerate(names[:k], start=1):
        randomize_(modules[name], seed + i)
    return net


def cascade(model: nn.Module, seed: int = 0, split: int = 3,
            steps: int | None = None) -> Iterator[tuple[str, nn.Module]]:
    """Cascading randomization: yields ``(name, copy)`` for k = 0, 1, ... blocks randomized.

    The first item is ``("none", copy of model)``; item k names the k-th block from the top,
    randomized together with all blocks above it. ``steps`` limits the number of randomized
    blocks (default all). Each yielded model is a separate copy; ``model`` stays untouched.
    """
    names = _top_down(model, split)
    if steps is not None:
        names = names[:steps]
    net = copy.deepcopy(model)
    modules = dict(net.named_modules())
    yield "none", copy.deepcopy(net)
    for i, name in enumerate(names, start=1):
        randomize_(modules[name], seed + i)
        yield name, copy.deepcopy(net)


#: The methods of the book's sanity check (keys of :data:`interpretable.attribution.METHODS`).
SANITY_METHODS: tuple[str, ...] = ("gradient", "guided", "gradcam", "fastcam")


def explain(model: nn.Module, x: Tensor, target=None,
            methods: Sequence[str] = SANITY_METHODS) -> dict[str, Tensor]:
    """``{method display name: (B, H, W) maps}`` scaled to [0, 1] per image.

    ``methods``: keys or display names of :data:`interpretable.attribution.METHODS`; default
    :data:`SANITY_METHODS`: |gradient| and |guided gradient| summed over colour channels,
    Grad-CAM and FastCAM. ``target`` as in :func:`interpretable.attribution.gradient`.
    """
    out = {}
    for key in parse_methods(methods):
        with build_method(key, model) as method:
            out[METHODS[key].name] = normalize_maps(method(x, target).detach())
    return out


def similarity(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Per image: (Spearman rank correlation, SSIM) of two map batches (B, H, W) in [0, 1].

    See :func:`interpretable.mapstats.spearman` and :func:`interpretable.mapstats.ssim`
    (data range 1); both are 1 for identical maps.
    """
    return spearman(a, b), ssim(a, b, data_range=1.0)
