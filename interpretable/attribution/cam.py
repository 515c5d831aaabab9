"""Gradient class activation maps (METHODS.md section 3): one hook mechanism, one formula each.

:class:`BaseCAM` owns everything but the formula: argument checks, the forward hook on the
layer, targets, eval mode, the backward, upsampling and normalization. A method only says how
the activations A (B, K, h, w) and their gradients G = dy_c/dA become a low-resolution map.

Why the backward stops at the layer: the forward runs under ``torch.no_grad()`` up to the
layer; the hook then turns autograd on, swaps the layer's output for a fresh leaf that
requires grad, and so only the part of the network after the layer is recorded. One
``torch.autograd.grad`` with respect to that leaf is the whole backward: no parameter
gradients, no ``.grad`` left anywhere, and it works when the caller is inside
``torch.no_grad()``.

Faster still on CPU (``optimize``): the model is cut at the layer with ``torch.fx``; the
part before it, which needs no gradient, runs as an inference-optimized forward (conv+BN
folded, oneDNN packed weights and blocked layout, see :mod:`interpretable.inference`), the
part after it on the model's own modules with autograd. The cut is checked against the model
once and kept while the model's weights stay the same; any model it cannot handle uses the
hook.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..checks import (
    Target,
    check_input,
    check_model,
    check_target,
    eval_mode,
    resolve_layer,
    resolve_target,
)
from ..inference import BuiltForWeights, split_forward, weights_key
from ..models import cam_layer
from .maps import normalize_maps, upsample

__all__ = ["BaseCAM", "GradCAM", "GradCAMPlusPlus", "XGradCAM", "LayerCAM"]


class _Capture:
    """What the hook records during one call."""

    __slots__ = ("need_grad", "activation")

    def __init__(self, need_grad: bool):
        self.need_grad = need_grad
        self.activation: Tensor | None = None


def _module_name(model: nn.Module, layer: nn.Module) -> str:
    for name, module in model.named_modules():
        if module is layer:
            return name or "<the model itself>"
    raise ValueError(
        f"layer ({type(layer).__name__}) is not a submodule of model ({type(model).__name__}); "
        "pass one of model.modules() or its name"
    )


class BaseCAM:
    """A class activation map of ``layer``'s output; subclasses give the formula.

    Args:
        model: any CNN returning logits (B, num_classes).
        layer: the ``nn.Module`` of ``model`` whose output A (B, K, h, w) is used, or its
            dotted name in ``model.named_modules()`` (``"layer4"``, ``"features.18"``, as in
            torchcam); default :func:`interpretable.models.cam_layer`. An unknown name is a
            ValueError listing a few valid ones. If the module runs several times in one
            forward pass, its last call is used.
        optimize: use the inference-optimized forward up to the layer (CPU, float32; same
            maps to float rounding). ``"auto"`` builds it (a trace and a weight copy, about
            the cost of a few forward passes) when this object is called a second time with
            unchanged weights, so one-off calls never pay for it; ``True`` at the first call;
            ``False`` never.
        taps: further modules of ``model`` whose outputs the optimized forward also returns
            (FastCAM's SMOE layers, which forward hooks cannot see inside it); see
            ``with_taps`` of ``__call__``.

    Call ``cam(x, target=None, normalize=False)`` for maps (B, H, W), non-negative, at x's
    resolution and on x's device. Used as a context manager (``with GradCAM(model) as cam:``)
    the hook stays on the layer inside the block and is removed on exit, also on error;
    otherwise it lives only during each call. Other forward passes of the model inside the
    block are not affected. The model is left as found: eval mode is used during the call and
    every module's ``training`` flag restored, no parameter ``requires_grad`` is touched.
    """

    #: whether the formula needs G = dy_c/dA
    uses_gradients: bool = True

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, *,
                 optimize: bool | str = "auto", taps: Sequence[nn.Module] = ()):
        check_model(model)
        if optimize not in (True, False, "auto"):
            raise ValueError(f"optimize must be True, False or 'auto', got {optimize!r}")
        if layer is None:
            layer = cam_layer(model)
        layer = resolve_layer(model, layer, "layer")
        self.layer_name = _module_name(model, layer)
        self.model = model
        self.layer = layer
        self.optimize = optimize
        self._handle: torch.utils.hooks.RemovableHandle | None = None
        self._capture: _Capture | None = None
        # the optimized (pre, post) pair for the current weights and taps
        self._split = BuiltForWeights()
        self.taps = tuple(resolve_layer(model, t, f"taps[{i}]") for i, t in enumerate(taps))
        # after a call: the taps' outputs, or None if the model's own forward ran (then the
        # caller's forward hooks on the taps saw them)
        self._tap_outputs: list[Tensor] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layer={self.layer_name!r})"

    # -- hooks ---------------------------------------------------------------------------
    def __enter__(self):
        self._attach()
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove_hooks()

    def _attach(self) -> None:
        if self._handle is None:
            self._handle = self.layer.register_forward_hook(self._hook)

    def remove_hooks(self) -> None:
        """Remove the layer hook (``__exit__`` does this)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module: nn.Module, inputs, output):
        cap = self._capture
        if cap is None:  # a forward pass that is not ours
            return None
        if not isinstance(output, Tensor) or output.dim() != 4:
            got = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise ValueError(
                f"layer {self.layer_name!r} gives {got}; a CAM needs a 4-D activation (B, K, h, w)"
            )
        if not cap.need_grad:
            # a copy, in case a later in-place op (e.g. ReLU(inplace=True)) changes the output
            cap.activation = output.detach().clone()
            return None
        # Record autograd from here on only; the caller's grad mode is restored when the
        # surrounding torch.no_grad() block of _forward exits.
        torch.set_grad_enabled(True)
        leaf = output.detach().requires_grad_(True)
        cap.activation = leaf
        # A non-leaf copy goes on, so later in-place ops neither fail on a leaf nor change A.
        return leaf.clone()

    # -- one call ------------------------------------------------------------------------
    def __call__(self, x: Tensor, target: Target = None, normalize: bool = False,
                 with_taps: bool = False) -> Tensor | tuple[Tensor, list[Tensor] | None]:
        """Maps (B, H, W) >= 0 for x (B, C, H, W); ``normalize=True`` scales each to [0, 1].

        ``with_taps=True`` returns ``(maps, tap outputs)``: the outputs of ``taps`` from the
        optimized forward, or None when the model's own forward ran (forward hooks on the
        taps then saw them).
        """
        x = check_input(x)
        tgt = check_target(target, x.shape[0])
        attached_here = self._handle is None
        self._attach()
        try:
            with eval_mode(self.model), torch.inference_mode(False):
                xin = x.detach()
                if xin.is_inference():  # caller in inference_mode: autograd needs a normal tensor
                    xin = xin.clone()
                A, G, t = self._forward(xin, tgt)
                cam = self._cam(xin, A, G, t)
        finally:
            self._capture = None
            if attached_here:
                self.remove_hooks()
        cam = upsample(cam, tuple(x.shape[-2:]))
        cam = normalize_maps(cam) if normalize else cam
        return (cam, self._tap_outputs) if with_taps else cam

    def _split_forward(self, x: Tensor):
        """The optimized (pre, post) pair for this model's current weights, or None."""
        if (not self.optimize or not self.uses_gradients or x.device.type != "cpu"
                or x.dtype != torch.float32):
            return None
        key = (weights_key(self.model), tuple(id(t) for t in self.taps))
        return self._split.get(key, lambda: split_forward(self.model, self.layer, x[:1],
                                                          self.taps),
                               now=self.optimize is True)

    def _forward(self, x: Tensor, tgt: int | Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        """One forward pass (and the backward to the layer): A, G (or None), targets (B,)."""
        self._tap_outputs = None
        split = self._split_forward(x)
        if split is not None:
            return self._forward_split(x, tgt, *split)
        cap = _Capture(self.uses_gradients)
        self._capture = cap
        try:
            with torch.no_grad():
                logits = self.model(x)
        finally:
            self._capture = None
        if cap.activation is None:
            raise ValueError(
                f"layer {self.layer_name!r} was not called during the forward pass of the model"
            )
        t = resolve_target(tgt, logits)
        A = cap.activation
        if not self.uses_gradients:
            return A, None, t
        G = None
        if logits.requires_grad:
            with torch.enable_grad():
                score = logits.gather(1, t[:, None]).sum()
            (G,) = torch.autograd.grad(score, A, allow_unused=True)
        if G is None:  # the logits do not depend on the layer
            G = torch.zeros_like(A)
        return A.detach(), G, t

    def _forward_split(self, x: Tensor, tgt, pre, post):
        with torch.no_grad():
            outs = pre(x)
        if self.taps:
            n = len(outs) - len(self.taps)
            outs, self._tap_outputs = outs[:n], list(outs[n:])
        A = outs[0]
        if not isinstance(A, Tensor) or A.dim() != 4:
            got = tuple(A.shape) if isinstance(A, Tensor) else type(A).__name__
            raise ValueError(
                f"layer {self.layer_name!r} gives {got}; a CAM needs a 4-D activation (B, K, h, w)"
            )
        leaf = A.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = post(leaf.clone(), *outs[1:])  # a copy: in-place ops after the cut
            t = resolve_target(tgt, logits)
            score = logits.gather(1, t[:, None]).sum()
        (G,) = torch.autograd.grad(score, leaf, allow_unused=True) if score.requires_grad \
            else (None,)
        return A.detach(), (torch.zeros_like(A) if G is None else G), t

    # -- the formula ---------------------------------------------------------------------
    def weights(self, A: Tensor, G: Tensor) -> Tensor:
        """Channel weights alpha (B, K) from A and G, both (B, K, h, w)."""
        raise NotImplementedError

    def _cam(self, x: Tensor, A: Tensor, G: Tensor | None, t: Tensor) -> Tensor:
        """Low-resolution map (B, h, w): ReLU(sum_k alpha_k A_k)."""
        alpha = self.weights(A, G)
        return torch.einsum("bk,bkhw->bhw", alpha, A).clamp_(min=0)


class GradCAM(BaseCAM):
    """Grad-CAM [GC] (METHODS.md section 3): alpha_k = mean over (h, w) of G_k."""

    def weights(self, A: Tensor, G: Tensor) -> Tensor:
        return G.mean(dim=(2, 3))


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++ [GCPP], closed form (METHODS.md section 3), as pytorch-grad-cam/torchcam.

    a = G^2 / (2 G^2 + sum_ab(A_k) G^3 + eps), 0 where G == 0; alpha_k = sum_ab a ReLU(G).
    eps = 1e-6 as in pytorch-grad-cam.
    """

    eps: float = 1e-6

    def weights(self, A: Tensor, G: Tensor) -> Tensor:
        g2 = G * G
        a = g2 / (2 * g2 + A.sum(dim=(2, 3), keepdim=True) * g2 * G + self.eps)
        a = torch.where(G != 0, a, 0)
        return (a * G.clamp(min=0)).sum(dim=(2, 3))


class XGradCAM(BaseCAM):
    """XGrad-CAM (METHODS.md section 3): alpha_k = sum_ab(G_k A_k) / (sum_ab A_k + eps).

    eps = 1e-7 as in pytorch-grad-cam.
    """

    eps: float = 1e-7

    def weights(self, A: Tensor, G: Tensor) -> Tensor:
        return (G * A).sum(dim=(2, 3)) / (A.sum(dim=(2, 3)) + self.eps)


class LayerCAM(BaseCAM):
    """Layer-CAM (METHODS.md section 3): map = ReLU(sum_k ReLU(G_k) * A_k), element-wise."""

    def _cam(self, x: Tensor, A: Tensor, G: Tensor | None, t: Tensor) -> Tensor:
        return (G.clamp(min=0) * A).sum(dim=1).clamp_(min=0)
