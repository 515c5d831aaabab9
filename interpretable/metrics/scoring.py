"""What every metric shares (METHODS.md section 5): the saliency from a map, pixel-space
masking, the insertion/deletion substrates, the checks of step and blur, the AUC, and the
chunked (optionally inference-optimized) forward passes.

Conventions (METHODS.md section 5, with its Decisions):

* probabilities are ``softmax(model(x))[target]``;
* an explanation map is upsampled bilinearly (``align_corners=False``) to x's size and
  min-max normalized per image to [0, 1]; a constant map becomes all ones if its value is
  positive and all zeros otherwise (so the all-ones map leaves x unchanged);
* masking is ``x * S + (1 - S) * normalize(black)``: pixel-space multiplication by S
  written so that S = 1 returns x bit for bit;
* the insertion/deletion substrates follow a :class:`~.definitions.Conventions` (default:
  insertion from ``gaussian_blur(denormalize(x), 11, sigma=5)``, deletion to black).
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur

from ..checks import check_input, check_target, resolve_target
from ..data import denormalize, normalize
from ..inference import BuiltForWeights, checked_inference_forward, weights_key
from .definitions import CONVENTIONS, Conventions

__all__ = [
    "prepare_maps",
    "mask_input",
    "black",
    "blur_substrate",
    "deletion_substrate",
    "auc",
    "check_step",
    "check_blur_size",
    "BLUR_KERNEL",
    "BLUR_SIGMA",
    "DEFAULT_BATCH_SIZE",
]

#: Our insertion blur (METHODS.md section 5): the ``"ours"`` set of conventions.
BLUR_KERNEL = CONVENTIONS["ours"].blur_kernel
BLUR_SIGMA = CONVENTIONS["ours"].blur_sigma
DEFAULT_BATCH_SIZE = 256


# ----------------------------------------------------------------------------- inputs


def prepare_maps(maps: Tensor, x: Tensor) -> Tensor:
    """Explanation maps -> saliency S (B, H, W) in [0, 1] at x's size (METHODS.md section 5).

    Args:
        maps: (B, h, w) or (B, 1, h, w), any resolution, finite values, on any device.
        x: the input batch (B, C, H, W) the maps explain.

    Returns:
        S (B, H, W) on x's device in x's dtype: bilinear upsampling (``align_corners=False``)
        then per-image min-max normalization. A constant map (decided on the map as given,
        before resizing, so interpolation rounding cannot break the tie) becomes all ones if
        its value is positive and all zeros if it is zero or negative.

    Raises:
        TypeError: maps is not a real-valued tensor.
        ValueError: wrong shape, batch size different from x's, NaN or infinite values.
    """
    if not isinstance(maps, Tensor):
        raise TypeError(f"maps must be a torch.Tensor (B, h, w), got {type(maps).__name__}")
    if maps.is_complex():
        raise TypeError(f"maps must be a real-valued tensor, got dtype {maps.dtype}")
    if maps.dim() == 4:
        if maps.shape[1] != 1:
            raise ValueError(
                f"maps must be (B, h, w) or (B, 1, h, w), got shape {tuple(maps.shape)}; "
                "reduce input-space attributions (B, 3, H, W) over channels first, "
                "e.g. g.abs().amax(1)"
            )
        maps = maps[:, 0]
    if maps.dim() != 3:
        raise ValueError(f"maps must be (B, h, w) or (B, 1, h, w), got shape {tuple(maps.shape)}")
    if maps.shape[0] != x.shape[0]:
        raise ValueError(
            f"maps must hold one map per image of x: x has {x.shape[0]} images, "
            f"maps has shape {tuple(maps.shape)}"
        )
    if maps.shape[1] == 0 or maps.shape[2] == 0:
        raise ValueError(f"maps must not be empty, got shape {tuple(maps.shape)}")
    maps = maps.detach().to(device=x.device, dtype=x.dtype)
    bad = ~torch.isfinite(maps).flatten(1).all(dim=1)
    if bool(bad.any()):
        which = torch.nonzero(bad).flatten().tolist()[:10]
        kind = "NaN" if bool(torch.isnan(maps).any()) else "infinite values"
        raise ValueError(f"maps contain {kind} (images {which} of the batch)")

    flat = maps.flatten(1)
    constant = flat.amax(dim=1) == flat.amin(dim=1)
    fill = (flat[:, 0] > 0).to(x.dtype)  # value of a constant map: ones if positive, else zeros
    size = tuple(x.shape[-2:])
    if tuple(maps.shape[-2:]) != size:
        maps = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    flat = maps.flatten(1)
    lo = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - lo
    span = torch.where(span > 0, span, torch.ones_like(span))
    s = ((flat - lo) / span).clamp_(0, 1)
    s = torch.where(constant[:, None], fill[:, None].expand_as(s), s)
    return s.view(maps.shape[0], *size)


def black(x: Tensor) -> Tensor:
    """``normalize(black)``: the model-space value (1, C, 1, 1) of a black pixel."""
    return normalize(torch.zeros(1, x.shape[1], 1, 1, device=x.device, dtype=x.dtype))


def mask_input(x: Tensor, s: Tensor) -> Tensor:
    """``x * S + (1 - S) * normalize(black)``: pixel-space masking, exact for S = 1.

    x (B, C, H, W) normalized; s (B, H, W) or (B, 1, H, W) in [0, 1]. METHODS.md section 5.
    """
    if s.dim() == 3:
        s = s[:, None]
    return x * s + (1 - s) * black(x)


def blur_substrate(x: Tensor, kernel: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> Tensor:
    """Insertion start (B, C, H, W): ``normalize(gaussian_blur(denormalize(x), kernel, sigma))``
    (reflect padding; default 11 and 5, our conventions)."""
    return normalize(gaussian_blur(denormalize(x), [kernel] * 2, [float(sigma)] * 2))


def deletion_substrate(x: Tensor, conventions: Conventions, blurred: Tensor | None = None
                       ) -> Tensor:
    """What deletion sets pixels to, in model space: ``normalize(black)`` (1, C, 1, 1) for
    ``"black"``, zeros (1, C, 1, 1) for ``"mean"`` (the normalization's mean colour), the
    insertion blur (B, C, H, W) for ``"blur"`` (``blurred`` if given, else computed)."""
    if conventions.substrate == "black":
        return black(x)
    if conventions.substrate == "mean":
        return torch.zeros(1, x.shape[1], 1, 1, device=x.device, dtype=x.dtype)
    if blurred is None:
        blurred = blur_substrate(x, conventions.blur_kernel, conventions.blur_sigma)
    return blurred


def check_step(step: int | None, height: int, width: int) -> int:
    """Validate the insertion/deletion ``step`` (pixels per step; None -> W, one row).

    The AUC formula of METHODS.md section 5 assumes evenly spaced points, so ``step`` must
    divide H * W; at least two steps (three points) are required for a curve that depends on
    the map at all.
    """
    n = height * width
    if step is None:
        step = width
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"step must be an int (pixels per step), got {type(step).__name__}")
    if step < 1:
        raise ValueError(f"step must be a positive number of pixels, got {step}")
    if n % step != 0:
        raise ValueError(
            f"step must divide the {height}x{width} = {n} pixels evenly (the AUC assumes evenly "
            f"spaced points), got step={step}"
        )
    if n // step < 2:
        raise ValueError(
            f"step={step} leaves {n // step} step(s) for {n} pixels: a curve needs at least 2 "
            f"steps (3 points) to depend on the map; use step <= {n // 2}"
        )
    return step


def check_blur_size(height: int, width: int, kernel: int = BLUR_KERNEL) -> None:
    """The insertion blur pads by reflection: images need more than ``kernel // 2`` pixels."""
    if min(height, width) <= kernel // 2:
        raise ValueError(
            f"x must be larger than {kernel // 2} pixels per side for the insertion blur "
            f"(kernel {kernel}, reflect padding), got {height}x{width}"
        )


def auc(curve: Tensor) -> Tensor:
    """Area under evenly spaced curves (..., P) on [0, 1] (METHODS.md section 5).

    ``(sum of points - (first + last) / 2) / (P - 1)``, the trapezoid rule; no x100.
    """
    points = curve.shape[-1]
    return (curve.sum(-1) - (curve[..., 0] + curve[..., -1]) / 2) / (points - 1)


# --------------------------------------------------------------------------- forwards


def check_batch_size(batch_size: int, name: str = "batch_size") -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{name} must be a positive int, got {batch_size!r}")
    return batch_size


class _Scorer:
    """The metric's forward passes: no Python loop over images, chunks of ``batch_size``.

    Every input of a metric goes through :meth:`logits`/:meth:`probs` with the same chunk
    boundaries as x itself, so an input equal to x bit for bit gets the same probability bit
    for bit (batch composition can change float rounding). ``channels_last`` feeds the
    chunks in channels-last memory format (faster convolutions on CPU; the model is not
    touched), which a model that ``.view()``-s its raw input does not accept.

    ``optimize`` runs the chunks through an inference-optimized copy of the forward that
    shares the model's weights (:mod:`interpretable.inference`: torch.fx trace, batch norm
    folded into the convolutions, oneDNN weight packing on CPU), built on first use, checked
    once against the model on one image and dropped (falling back to the model) if it
    disagrees or the model cannot be traced. It equals the model up to float rounding; hooks
    registered on the model do not fire in it.

    The caller checks the model (``check_model``) once; the scorer does not again.
    """

    def __init__(self, model: nn.Module, batch_size: int, channels_last: bool = False,
                 optimize: bool = True):
        check_batch_size(batch_size)
        self.model, self.batch_size, self.channels_last = model, batch_size, bool(channels_last)
        self.optimize = bool(optimize)

    def _forward_for(self, chunk: Tensor):
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        if not self.optimize:
            return self.model, fmt
        # One optimized forward per model, kept while the model lives and its weights,
        # device and requested format stay the same (built once across metric calls).
        key = (weights_key(self.model), chunk.device, fmt)
        cache = _FAST_FORWARDS.setdefault(self.model, BuiltForWeights())
        return cache.get(key, lambda: checked_inference_forward(self.model, chunk, fmt),
                         now=True)

    def forward(self, chunk: Tensor) -> Tensor:
        forward, fmt = self._forward_for(chunk)
        return forward(chunk.contiguous(memory_format=fmt))

    def logits(self, inputs: Tensor) -> Tensor:
        """model(inputs) (N, K), in chunks."""
        b = self.batch_size
        return torch.cat([self.forward(inputs[i:i + b]) for i in range(0, inputs.shape[0], b)])

    def probs(self, inputs: Tensor, classes: Tensor) -> Tensor:
        """softmax(model(inputs))[classes] (N,), in chunks."""
        return _pick(self.logits(inputs), classes)


_FAST_FORWARDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _pick(logits: Tensor, classes: Tensor) -> Tensor:
    """Softmax probability of each row's class: (N, K), (N,) -> (N,)."""
    return torch.softmax(logits, dim=1).gather(1, classes[:, None])[:, 0]


def _setup(scorer: _Scorer, x, target):
    """Checks, then (x detached, logits of x, classes (B,)); call in eval mode and no_grad."""
    check_input(x)
    target = check_target(target, x.shape[0])
    x = x.detach()
    logits = scorer.logits(x)
    return x, logits, resolve_target(target, logits)
