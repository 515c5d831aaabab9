"""The gradient-alignment regularizer and the regularized loss (METHODS.md section 2).

L = L_C + lambda * L_R. ``g`` is the standard input gradient of the ground-truth logit (or,
with ``gradient_of="loss"``, of the per-sample cross-entropy), taken with
``create_graph=True`` so L_R reaches the weights (double backprop); ``g~`` is the guided
backpropagation gradient of the same quantity, a constant target by default. Both come from ONE
shared forward pass: :func:`~interpretable.attribution.relu_rules.switchable_relus` picks the
ReLU backward rule at backward time.

Cost. The double backward through batch normalisation is what made the naive regularized
step slow (~60% of it on CPU: ``batchnorm_double_backward`` is a chain of channel
reductions). By default (``bn_stats="frozen"``) the two input gradients treat the batch
statistics as constants, so a train-mode BN backpropagates to its input as the per-channel
affine map ``gamma / sqrt(var + eps)``, exactly as it does at inference (where saliency is
computed); the cross-entropy still gets the full BN gradient. ``bn_stats="batch"`` keeps
PyTorch's exact autograd through the batch statistics (slower; gradients then also mix samples
of the batch through the mean and variance).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from interpretable.attribution.relu_rules import switchable_relus

__all__ = [
    "ALIGNMENT_KINDS",
    "BN_STATS",
    "GRADIENT_OF",
    "gradient_cosines",
    "alignment_from_gradients",
    "alignment_loss",
    "input_gradients",
    "regularized_loss",
    "input_gradient_rules",
]

ALIGNMENT_KINDS = ("cosine", "mse", "l1")
BN_STATS = ("frozen", "batch")
#: What the two input gradients differentiate (METHODS.md section 2, "What is differentiated").
GRADIENT_OF = ("logit", "loss")


# --------------------------------------------------------------------------------------------
# Batch norm whose input gradient can treat the batch statistics as constants
# --------------------------------------------------------------------------------------------


class _Rule:
    """Read at backward time: ``input_only`` -> the patched layers use their input-gradient
    rules (conv: a transposed convolution; BN: statistics constant, if ``frozen_bn``)."""

    def __init__(self, frozen_bn: bool = True) -> None:
        self.input_only = False
        self.frozen_bn = frozen_bn


class _FrozenStatsBN(torch.autograd.Function):
    """Train-mode batch norm (native kernels) with a switchable first-order backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, rule):
        y, mean, invstd = torch.ops.aten.native_batch_norm(
            x, weight, bias, running_mean, running_var, True, momentum, eps
        )
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps, ctx.rule = eps, rule
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, mean, invstd = ctx.saved_tensors
        none5 = (None,) * 5
        if ctx.rule.input_only:
            # Statistics constant: the affine map's derivative. Written with torch ops so that
            # a create_graph backward records it and L_R reaches gamma (invstd stays constant).
            shape = (1, -1) + (1,) * (grad.dim() - 2)
            scale = invstd if weight is None else weight * invstd
            return (grad * scale.to(grad.dtype).view(shape), None, None) + none5
        need = ctx.needs_input_grad
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            grad, x, weight, None, None, mean, invstd, True, ctx.eps,
            [need[0], weight is not None and need[1], need[2]],
        )
        return (gx, gw, gb) + none5


class _InputGradConv(torch.autograd.Function):
    """conv2d whose input-gradient pass is a differentiable ``conv_transpose2d``.

    Same values as ``nn.Conv2d``. Why: the double backward of PyTorch's native convolution
    backward (``_convolution_double_backward``) loops over groups for grouped convolutions
    (one tiny convolution per channel of a depthwise layer: 60% of a MobileNet-V2 step); the
    backward of a transposed convolution is two native kernels for any group count.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, rule):
        device = x.device.type
        if torch.is_autocast_enabled(device):  # cast as autocast would, save what was used
            dtype = torch.get_autocast_dtype(device)
            x, weight = x.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None
        ctx.rule = rule
        with torch.autocast(device, enabled=False):
            return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        none5 = (None,) * 5
        if ctx.rule.input_only:
            if not ctx.needs_input_grad[0]:
                return (None, None, None) + none5
            k = weight.shape[2:]
            extra = tuple(
                x.shape[2 + i] - ((grad.shape[2 + i] - 1) * stride[i] - 2 * padding[i]
                                  + dilation[i] * (k[i] - 1) + 1)
                for i in range(2)
            )
            gx = F.conv_transpose2d(grad, weight.to(grad.dtype), None, stride, padding, extra,
                                    groups, dilation)
            return (gx, None, None) + none5
        need = ctx.needs_input_grad
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad, x, weight, [weight.shape[0]] if ctx.has_bias else None, list(stride),
            list(padding), list(dilation), False, [0, 0], groups,
            [need[0], need[1], ctx.has_bias and need[2]],
        )
        return (gx, gw, gb if ctx.has_bias else None) + none5


def _bn_forward(module: _BatchNorm, rule: _Rule):
    def forward(x: torch.Tensor) -> torch.Tensor:
        if not module.training:  # inference BN is already a fixed affine map
            return type(module).forward(module, x)
        module._check_input_dim(x)
        momentum = 0.0 if module.momentum is None else module.momentum
        if module.track_running_stats and module.num_batches_tracked is not None:
            module.num_batches_tracked.add_(1)
            if module.momentum is None:  # cumulative moving average, as nn.BatchNorm
                momentum = 1.0 / float(module.num_batches_tracked)
        return _FrozenStatsBN.apply(x, module.weight, module.bias, module.running_mean,
                                    module.running_var, momentum, module.eps, rule)

    return forward


def _conv_forward(module: nn.Conv2d, rule: _Rule):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return _InputGradConv.apply(x, module.weight, module.bias, module.stride,
                                    module.padding, module.dilation, module.groups, rule)

    return forward


def _patchable_conv(m: nn.Module) -> bool:
    return (type(m) is nn.Conv2d and m.padding_mode == "zeros"
            and not isinstance(m.padding, str))


@contextmanager
def input_gradient_rules(model: nn.Module, frozen_bn: bool = True) -> Iterator[_Rule]:
    """Within the block, convolutions (and, if ``frozen_bn``, train-mode BN layers) record a
    backward whose input-gradient pass is cheap to differentiate again.

    Yields a rule object; set ``rule.input_only = True`` around the input-gradient
    computations and back to ``False`` before the loss backward, which then uses PyTorch's
    native backward kernels. Forward values are unchanged (same kernels, same running-statistics
    update). With ``frozen_bn`` the input gradient treats BN batch statistics as constants.
    Patches are removed on exit, also on error.
    """
    rule = _Rule(frozen_bn)
    patched: list[nn.Module] = []
    try:
        for m in model.modules():
            if frozen_bn and isinstance(m, _BatchNorm):
                m.forward = _bn_forward(m, rule)
                patched.append(m)
            elif _patchable_conv(m):
                m.forward = _conv_forward(m, rule)
                patched.append(m)
        yield rule
    finally:
        for m in patched:
            m.__dict__.pop("forward", None)


# --------------------------------------------------------------------------------------------
# Gradients and the alignment term
# --------------------------------------------------------------------------------------------


def check_gradient_of(gradient_of: str) -> str:
    """``gradient_of`` itself, or a ValueError naming the argument and the choices."""
    if gradient_of not in GRADIENT_OF:
        raise ValueError(f"gradient_of must be one of {GRADIENT_OF}, got {gradient_of!r}")
    return gradient_of


def _check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str, bn_stats: str,
           gradient_of: str = "logit") -> None:
    check_gradient_of(gradient_of)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a float image batch (B, C, H, W), got {_describe(x)}")
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0] \
            or y.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"y must be integer labels of shape ({x.shape[0]},), got {_describe(y)}")
    if kind not in ALIGNMENT_KINDS:
        raise ValueError(f"kind must be one of {ALIGNMENT_KINDS}, got {kind!r}")
    if bn_stats not in BN_STATS:
        raise ValueError(f"bn_stats must be one of {BN_STATS}, got {bn_stats!r}")


def _describe(t) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} tensor of shape {tuple(t.shape)}"
    return type(t).__name__


def gradient_cosines(g: torch.Tensor, guided: torch.Tensor) -> torch.Tensor:
    """Per-sample cos(vec g_i, vec g~_i), shape (B,), in at least float32 (0 for a zero
    gradient, never NaN). ``1 - gradient_cosines(g, gg).mean()`` is the cosine L_R."""
    dtype = torch.promote_types(g.dtype, torch.float32)  # at least float32 (fp16/bf16 AMP)
    a = g.flatten(1).to(dtype)
    b = guided.flatten(1).to(dtype)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


def alignment_from_gradients(g: torch.Tensor, guided: torch.Tensor,
                             kind: str = "cosine") -> torch.Tensor:
    """L_R from the two gradients (B, C, H, W): a mean over samples (METHODS.md section 2).

    ``cosine``: mean_i 1 - cos(vec g_i, vec g~_i); ``mse`` / ``l1``: mean over samples of the
    summed squared / absolute difference of the two gradients each scaled to unit L2 norm.
    Computed in at least float32; an all-zero gradient has cosine 0 with anything (loss 1),
    never NaN.
    """
    if kind not in ALIGNMENT_KINDS:
        raise ValueError(f"kind must be one of {ALIGNMENT_KINDS}, got {kind!r}")
    if kind == "cosine":
        return (1 - gradient_cosines(g, guided)).mean()
    dtype = torch.promote_types(g.dtype, torch.float32)
    a = g.flatten(1).to(dtype)
    b = guided.flatten(1).to(dtype)
    eps = 1e-12
    a = a / a.norm(dim=1, keepdim=True).clamp_min(eps)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(eps)
    d = a - b
    return (d.square() if kind == "mse" else d.abs()).sum(1).mean()


def input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    detach_guided: bool = True, bn_stats: str = "frozen",
                    grad_scale: float = 1.0, create_graph: bool = True,
                    gradient_of: str = "logit",
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward, then the guided and the standard input gradient of the label logits.

    ``gradient_of="loss"`` differentiates the per-sample cross-entropy CE(f(x_i), y_i) (no
    label smoothing) instead of the logit y_i (METHODS.md section 2): the same two backward
    passes, started from ``softmax - onehot`` at the logits instead of ``onehot``.

    Returns ``(logits (B, K), g (B, C, H, W), g_guided (B, C, H, W))``; ``g`` carries a graph
    to the weights (``create_graph=True``), ``g_guided`` too when ``detach_guided`` is false.
    ``grad_scale`` multiplies the logits before differentiating (keeps fp16 gradients out of
    underflow; every alignment kind is scale invariant). Only input gradients are computed:
    no weight gradient work happens in these two passes. ``create_graph=False`` gives plain
    detached gradients (evaluation of L_R without training).
    """
    xx = x.detach().requires_grad_(True)
    with torch.enable_grad():  # also usable inside torch.no_grad() (evaluation of L_R)
        with input_gradient_rules(model, bn_stats == "frozen") as rule, \
                switchable_relus(model) as switch:
            logits = model(xx)
        if check_gradient_of(gradient_of) == "logit":
            target = logits.gather(1, y[:, None].long()).sum()
        else:  # a sum of per-sample losses: sample i's input gradient is d CE_i / d x_i
            wide = logits.to(torch.promote_types(logits.dtype, torch.float32))  # AMP: >= fp32
            target = F.cross_entropy(wide, y.long(), reduction="sum")
        if grad_scale != 1.0:
            target = target * grad_scale
        rule.input_only = True
        try:
            switch.guided = True
            (guided,) = torch.autograd.grad(target, xx, retain_graph=True,
                                            create_graph=create_graph and not detach_guided)
            switch.guided = False
            (g,) = torch.autograd.grad(target, xx, create_graph=create_graph)
        finally:
            rule.input_only = False
            switch.guided = False
    return logits, g, guided.detach() if detach_guided else guided


def alignment_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str = "cosine",
                   detach_guided: bool = True, bn_stats: str = "frozen",
                   gradient_of: str = "logit") -> torch.Tensor:
    """L_R (scalar), differentiable w.r.t. the weights (METHODS.md section 2).

    x: (B, C, H, W) normalized images; y: (B,) ground-truth labels whose logits
    (``gradient_of="logit"``) or per-sample cross-entropies (``"loss"``) are differentiated.
    ``kind``: ``cosine`` (default), ``mse`` or ``l1``. Runs its own forward;
    the model's mode is used as is (train mode: BN batch statistics; see ``bn_stats`` in the
    module docstring).
    """
    _check(model, x, y, kind, bn_stats, gradient_of)
    _, g, guided = input_gradients(model, x, y, detach_guided, bn_stats, gradient_of=gradient_of)
    return alignment_from_gradients(g, guided, kind)


def regularized_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lam: float = 7.5e-3,
                     kind: str = "cosine", detach_guided: bool = True, reg_fraction: float = 1.0,
                     generator: torch.Generator | None = None, bn_stats: str = "frozen",
                     label_smoothing: float = 0.0, grad_scale: float = 1.0,
                     gradient_of: str = "logit",
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
    """L = L_C + lam * L_R from one shared forward pass (METHODS.md section 2).

    ``gradient_of``: ``"logit"`` (the true-class logit is differentiated) or ``"loss"`` (the
    per-sample cross-entropy, without label smoothing); the same cost either way.

    Returns ``(loss, parts)``: ``parts["ce"]`` (scalar, detached), ``parts["align"]`` (scalar
    L_R, detached; ``None`` when ``lam == 0``), ``parts["logits"]`` (B, K) detached, in the
    order of ``x``.

    ``lam == 0`` is exactly the plain cross-entropy step: one forward, no gradient work.
    ``reg_fraction`` < 1 regularizes a random subset of ``round(reg_fraction * B)`` samples
    (at least one; chosen with ``generator``): L_R is a mean over samples, so the subset
    estimates it without bias. The subset then has its own forward (with the switchable
    rules) and the rest a plain one, so the double-backward cost shrinks with the fraction;
    train-mode BN normalizes each part with its own statistics and updates its running
    statistics once per part.
    """
    _check(model, x, y, kind, bn_stats, gradient_of)
    if not 0.0 <= float(lam) < float("inf"):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    if not 0.0 < float(reg_fraction) <= 1.0:
        raise ValueError(f"reg_fraction must lie in (0, 1], got {reg_fraction!r}")
    b = x.shape[0]
    if lam == 0:
        logits = model(x)
        ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        return ce, {"ce": ce.detach(), "align": None, "logits": logits.detach()}

    k = max(1, int(round(reg_fraction * b)))
    if k >= b:
        logits, g, guided = input_gradients(model, x, y, detach_guided, bn_stats, grad_scale,
                                            gradient_of=gradient_of)
        align = alignment_from_gradients(g, guided, kind)
        ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    else:
        perm = torch.randperm(b, generator=generator).to(x.device)
        sel, rest = perm[:k], perm[k:]
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) \
            and not x.is_contiguous() else torch.contiguous_format
        x_reg = x.index_select(0, sel).contiguous(memory_format=fmt)
        x_rest = x.index_select(0, rest).contiguous(memory_format=fmt)
        logits_reg, g, guided = input_gradients(model, x_reg, y[sel], detach_guided, bn_stats,
                                                grad_scale, gradient_of=gradient_of)
        logits_rest = model(x_rest)
        align = alignment_from_gradients(g, guided, kind)
        logits = torch.empty((b,) + logits_reg.shape[1:], dtype=logits_reg.dtype,
                             device=logits_reg.device)
        logits = logits.index_copy(0, sel, logits_reg).index_copy(0, rest, logits_rest)
        ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    loss = ce + lam * align
    return loss, {"ce": ce.detach(), "align": align.detach(), "logits": logits.detach()}
