"""Input-space gradients (METHODS.md section 1): plain, guided backpropagation, SmoothGrad.

All return (B, C, H, W) on x's device, computed in eval mode (every module's ``training``
flag restored afterwards), with one ``torch.autograd.grad`` with respect to a detached copy of
x: no parameter ``.grad`` is written and x's own ``requires_grad`` is untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from ..checks import Target, check_input, check_model, check_target, eval_mode, resolve_target
from .relu_rules import switchable_relus

__all__ = ["gradient", "guided_backprop", "smoothgrad"]

GradientMethod = Callable[[nn.Module, Tensor, Target], Tensor]


def _input_gradient(model: nn.Module, x: Tensor, target: Target, guided: bool) -> Tensor:
    check_model(model)
    x = check_input(x)
    tgt = check_target(target, x.shape[0])
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        xin = x.detach()
        xin = (xin.clone() if xin.is_inference() else xin).requires_grad_(True)
        rules = switchable_relus(model, guided=True) if guided else nullcontext()
        with rules:
            logits = model(xin)
        t = resolve_target(tgt, logits)
        score = logits.gather(1, t[:, None]).sum()  # images are independent in eval mode
        (g,) = torch.autograd.grad(score, xin)
    return g


def gradient(model: nn.Module, x: Tensor, target: Target = None) -> Tensor:
    """Standard gradient dy_c/dx (B, C, H, W) of the target logit (METHODS.md section 1).

    ``target``: None (predicted class), an int, or a LongTensor (B,).
    """
    return _input_gradient(model, x, target, guided=False)


def guided_backprop(model: nn.Module, x: Tensor, target: Target = None) -> Tensor:
    """Guided backpropagation [GB] (B, C, H, W) (METHODS.md section 1).

    At every ``nn.ReLU``/``nn.ReLU6`` the backward keeps only positive gradients where the
    input was active; everything else backpropagates normally. In-place ReLUs and ReLU modules
    called several times per forward are handled (see :mod:`.relu_rules`).

    Raises:
        ValueError: the model has no ReLU modules (functional ReLUs cannot be hooked).
    """
    return _input_gradient(model, x, target, guided=True)


def smoothgrad(method: GradientMethod, model: nn.Module, x: Tensor, target: Target = None,
               n: int = 25, noise_level: float = 0.15, squared: bool = False, *,
               batch_size: int = 128, generator: torch.Generator | None = None) -> Tensor:
    """SmoothGrad [SG] (B, C, H, W): mean of ``method`` over n noisy copies (METHODS.md sec. 1).

    Each copy is x + N(0, sigma^2) with sigma = ``noise_level * (x.max() - x.min())`` per
    image; ``squared=True`` averages g^2 instead of g. ``method`` is :func:`gradient`,
    :func:`guided_backprop` or any function ``(model, x, target) -> (B, C, H, W)``. The copies
    go through the model in chunks of about ``batch_size`` images (at least one whole copy of
    the batch); the noise is drawn copy by copy from ``generator`` (default: torch's global
    RNG), so the result does not depend on ``batch_size``. A ``None`` target is the predicted
    class of the clean image, the same for all its copies.
    """
    if not callable(method):
        raise TypeError(f"method must be a gradient function like gradient or guided_backprop, "
                        f"got {type(method).__name__}")
    check_model(model)
    x = check_input(x)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(noise_level, (int, float)) or not noise_level >= 0:
        raise ValueError(f"noise_level must be a non-negative number, got {noise_level!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    x = x.detach()
    batch = x.shape[0]
    tgt = check_target(target, batch)
    if tgt is None:
        with eval_mode(model), torch.no_grad():
            t = resolve_target(None, model(x))
    elif isinstance(tgt, int):
        t = torch.full((batch,), tgt, dtype=torch.long, device=x.device)
    else:
        t = tgt.to(x.device)

    sigma = noise_level * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))
    sigma = sigma.view(1, batch, 1, 1, 1)
    per_chunk = max(1, batch_size // batch)
    total = torch.zeros_like(x)
    for start in range(0, n, per_chunk):
        m = min(per_chunk, n - start)
        noise = torch.stack([
            torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            for _ in range(m)
        ])
        noisy = (x.unsqueeze(0) + sigma * noise).reshape(m * batch, *x.shape[1:])
        g = method(model, noisy, t.repeat(m)).reshape(m, *x.shape)
        total += (g * g if squared else g).sum(dim=0)
    return total / n
