"""Per-image confidence metrics (AD, AG, AI) and insertion/deletion AUCs (METHODS.md section 5).

Everything here is batched: one call handles a batch of B images with per-image targets and
returns per-image values (B,). Insertion/deletion build all curve points of all images as
one stream of masked inputs and push it through the model in chunks of ``batch_size``; there
is no Python loop over images or steps.

Conventions (METHODS.md section 5, with its Decisions):

* probabilities are ``softmax(model(x))[target]``;
* an explanation map is upsampled bilinearly (``align_corners=False``) to x's size and
  min-max normalized per image to [0, 1]; a constant map becomes all ones if its value is
  positive and all zeros otherwise (so the all-ones map leaves x unchanged);
* masking is ``x * S + (1 - S) * normalize(black)``: pixel-space multiplication by S
  written so that S = 1 returns x bit for bit;
* insertion starts from ``gaussian_blur(denormalize(x), 11, sigma=5)`` (normalized again),
  deletion ends in black; pixels are ranked by a stable descending sort of S, a pixel keeps
  its three channels together, ``step`` pixels change per curve step.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur

from ..attribution._common import (
    check_input,
    check_model,
    check_target,
    eval_mode,
    resolve_target,
)
from ..attribution._inference import BuiltForWeights, checked_inference_forward, weights_key
from ..data import denormalize, normalize

__all__ = [
    "prepare_maps",
    "mask_input",
    "black",
    "blur_substrate",
    "confidence_terms",
    "confidence_scores",
    "insertion_deletion",
    "auc",
    "check_step",
    "check_blur_size",
    "Curves",
    "BLUR_KERNEL",
    "BLUR_SIGMA",
]

#: Insertion substrate: Gaussian blur of the pixel-space image (METHODS.md section 5).
BLUR_KERNEL = 11
BLUR_SIGMA = 5.0
DEFAULT_BATCH_SIZE = 256


class Curves(NamedTuple):
    """Whole insertion/deletion curves of a batch (``return_curves=True``).

    fraction: (T+1,) share of pixels changed at each point, 0 .. 1.
    insertion: (B, T+1) target probability as pixels of x are inserted into the blur.
    deletion: (B, T+1) target probability as pixels are set to black.
    """

    fraction: Tensor
    insertion: Tensor
    deletion: Tensor


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


def blur_substrate(x: Tensor) -> Tensor:
    """Insertion start (B, C, H, W): ``normalize(gaussian_blur(denormalize(x), 11, 5))``."""
    return normalize(gaussian_blur(denormalize(x), [BLUR_KERNEL] * 2, [BLUR_SIGMA] * 2))


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


def check_blur_size(height: int, width: int) -> None:
    """The insertion blur pads by reflection (kernel 11): images need more than 5 pixels."""
    if min(height, width) <= BLUR_KERNEL // 2:
        raise ValueError(
            f"x must be larger than {BLUR_KERNEL // 2} pixels per side for the insertion blur "
            f"(kernel {BLUR_KERNEL}, reflect padding), got {height}x{width}"
        )


def auc(curve: Tensor) -> Tensor:
    """Area under evenly spaced curves (..., P) on [0, 1] (METHODS.md section 5).

    ``(sum of points - (first + last) / 2) / (P - 1)``, the trapezoid rule; no x100.
    """
    points = curve.shape[-1]
    return (curve.sum(-1) - (curve[..., 0] + curve[..., -1]) / 2) / (points - 1)


# --------------------------------------------------------------------------- forwards


class _Scorer:
    """The metric's forward passes: no Python loop over images, chunks of ``batch_size``.

    Every input of a metric goes through :meth:`logits`/:meth:`probs` with the same chunk
    boundaries as x itself, so an input equal to x bit for bit gets the same probability bit
    for bit (batch composition can change float rounding). ``channels_last`` feeds the
    chunks in channels-last memory format (faster convolutions on CPU; the model is not
    touched), which a model that ``.view()``-s its raw input does not accept.

    ``optimize`` runs the chunks through an inference-optimized copy of the forward that
    shares the model's weights (``attribution._inference``: torch.fx trace, batch norm folded
    into the convolutions, oneDNN weight packing on CPU), built on first use, checked once
    against the model on one image and dropped (falling back to the model) if it disagrees
    or the model cannot be traced. It equals the model up to float rounding; hooks
    registered on the model do not fire in it.
    """

    def __init__(self, model: nn.Module, batch_size: int, channels_last: bool = False,
                 optimize: bool = True):
        check_model(model)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
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


def confidence_terms(y: Tensor, o: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image AD, AG, AI terms in percent from Y = p_c(x) and O = p_c(x_masked) (B,).

    ad = 100 * max(0, Y - O) / Y, ag = 100 * max(0, O - Y) / (1 - Y), ai = 100 * 1[O > Y];
    their means over images are the Average Drop, Average Gain and Average Increase of
    METHODS.md section 5. Where a denominator is 0 (Y underflowed to 0, or saturated at 1)
    the numerator is 0 too and the term is 0, not NaN.
    """
    drop = (y - o).clamp(min=0)
    gain = (o - y).clamp(min=0)
    ad = 100 * torch.where(y > 0, drop / torch.where(y > 0, y, 1), 0)
    ag = 100 * torch.where(y < 1, gain / torch.where(y < 1, 1 - y, 1), 0)
    ai = 100 * (o > y).to(y.dtype)
    return ad, ag, ai


def confidence_scores(
    model: nn.Module,
    x: Tensor,
    maps: Tensor,
    target: int | Tensor | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    return_probs: bool = False,
    channels_last: bool = False,
    optimize: bool = True,
) -> tuple[Tensor, ...]:
    """Per-image Average Drop / Gain / Increase terms, percent (METHODS.md section 5).

    Args:
        model: classifier returning logits (B, K); run in eval mode (restored afterwards)
            and without gradients.
        x: normalized images (B, 3, H, W).
        maps: explanations (B, h, w) or (B, 1, h, w), any resolution (see :func:`prepare_maps`).
        target: None = each image's predicted class, an int = the same class for all, or a
            LongTensor (B,). (:func:`evaluate` passes the ground-truth labels by default.)
        batch_size: images per forward call.
        return_probs: also return Y and O.
        channels_last: feed the forwards in channels-last memory format (faster CNNs on CPU;
            not for models that ``.view()`` their input).
        optimize: run the forwards through an inference-optimized copy of the model's
            forward (torch.fx, batch norm folded, oneDNN on CPU; same weights, equal up to
            float rounding, checked once; falls back to the model when it cannot be traced).
            Hooks on the model do not fire then: pass False if the model's hooks matter.

    Returns:
        ``ad, ag, ai``, each (B,) on x's device:
        ad = 100 * max(0, Y - O) / Y (relative drop in percent),
        ag = 100 * max(0, O - Y) / (1 - Y) (relative gain in percent),
        ai = 100 if O > Y else 0;
        so ``ad.mean()``, ``ag.mean()``, ``ai.mean()`` are AD, AG and AI in percent.
        With ``return_probs=True``: ``ad, ag, ai, y, o`` with Y = p_c(x), O = p_c(x_masked).
    """
    scorer = _Scorer(model, batch_size, channels_last, optimize)
    with eval_mode(model), torch.no_grad():
        x, logits, classes = _setup(scorer, x, target)
        s = prepare_maps(maps, x)
        y = _pick(logits, classes)
        o = scorer.probs(mask_input(x, s), classes)
    ad, ag, ai = confidence_terms(y, o)
    return (ad, ag, ai, y, o) if return_probs else (ad, ag, ai)


def _ranks(s: Tensor) -> Tensor:
    """Rank of each pixel (B, H*W): 0 = most salient; ties keep raster order (stable sort)."""
    flat = s.flatten(1)
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=s.device).expand_as(order))
    return ranks


def _interior_points(
    scorer: _Scorer,
    x: Tensor,
    blurred: Tensor,
    ranks: Tensor,
    classes: Tensor,
    step: int,
    steps: int,
) -> tuple[Tensor, Tensor]:
    """Points 1 .. T-1 of both curves (B, T-1) each, all images and steps in one stream.

    Job j stands for (image, point k, curve); its input keeps x where ``rank < k * step``
    (insertion) or where ``rank >= k * step`` (deletion) and takes the substrate elsewhere.
    Jobs are generated chunk by chunk, so memory stays at ``scorer.batch_size`` images.
    """
    b, c, h, w = x.shape
    batch_size = scorer.batch_size
    inner = steps - 1
    if inner == 0:
        empty = x.new_empty(b, 0)
        return empty, empty
    n_jobs = 2 * b * inner
    dark = black(x)
    probs = x.new_empty(n_jobs)
    jobs = torch.arange(n_jobs, device=x.device)
    for start in range(0, n_jobs, batch_size):
        j = jobs[start:start + batch_size]
        img = j // (2 * inner)
        rest = j % (2 * inner)
        is_del = rest >= inner
        k = rest % inner + 1
        changed = ranks[img] < (k * step)[:, None]  # (n, H*W) pixels already moved
        take_x = (changed ^ is_del[:, None]).view(-1, 1, h, w)
        substrate = torch.where(is_del.view(-1, 1, 1, 1), dark, blurred[img])
        inputs = torch.where(take_x, x[img], substrate)
        probs[start:start + batch_size] = _pick(scorer.forward(inputs), classes[img])
    probs = probs.view(b, 2, inner)
    return probs[:, 0], probs[:, 1]


def _curves(
    scorer: _Scorer,
    x: Tensor,
    s: Tensor,
    classes: Tensor,
    step: int,
    y: Tensor,
    ends: tuple[Tensor, Tensor, Tensor],
) -> Curves:
    """Both curves of a batch, given the map-independent points ``ends`` (see _end_points)."""
    blurred, blur_probs, black_probs = ends
    h, w = x.shape[-2:]
    steps = h * w // step
    ins_mid, del_mid = _interior_points(scorer, x, blurred, _ranks(s), classes, step, steps)
    insertion = torch.cat([blur_probs[:, None], ins_mid, y[:, None]], dim=1)
    deletion = torch.cat([y[:, None], del_mid, black_probs[:, None]], dim=1)
    fraction = torch.arange(steps + 1, device=x.device, dtype=x.dtype) * step / (h * w)
    return Curves(fraction, insertion, deletion)


def _end_points(scorer: _Scorer, x: Tensor, classes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Map-independent curve ends, shared by all maps of x: the blurred x, p_c(blur) (B,)
    (insertion's first point) and p_c(black image) (B,) (deletion's last point; the black
    image is the same for every image, so it costs one forward per batch)."""
    blurred = blur_substrate(x)
    blur_probs = scorer.probs(blurred, classes)
    dark = black(x).expand(1, *x.shape[1:])
    black_probs = torch.softmax(scorer.forward(dark), dim=1)[0, classes]
    return blurred, blur_probs, black_probs


def insertion_deletion(
    model: nn.Module,
    x: Tensor,
    maps: Tensor,
    target: int | Tensor | None = None,
    step: int | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    return_curves: bool = False,
    channels_last: bool = False,
    optimize: bool = True,
) -> tuple[Tensor, ...]:
    """Per-image insertion and deletion AUCs x100 (RISE; METHODS.md section 5, Decision).

    Pixels are ranked by the saliency S (:func:`prepare_maps`; stable descending sort, so
    ties keep raster order). Deletion sets the ``step`` top-ranked pixels per step to black;
    insertion copies them from x into a Gaussian blur of x (kernel 11, sigma 5, pixel
    space). Each curve has T + 1 = H*W/step + 1 points of the target's softmax probability;
    AUC = (sum - (first + last) / 2) / T.

    All B * (T + 1) * 2 curve points are built from cumulative rank masks and run through the
    model in chunks of ``batch_size`` images (the memory knob); the map-independent points
    (x itself, the blur, the black image: one forward for the whole batch) are computed once.

    Args:
        model: classifier returning logits; run in eval mode (restored) without gradients.
        x: normalized images (B, 3, H, W).
        maps: (B, h, w) or (B, 1, h, w) at any resolution.
        target: None = predicted class, int, or LongTensor (B,).
        step: pixels changed per step, default W (one row's worth: H steps); must divide H*W
            and leave at least 2 steps.
        batch_size: images per forward call.
        return_curves: also return :class:`Curves` (fraction (T+1,), insertion and deletion
            (B, T+1) probabilities) for plots.
        channels_last, optimize: as in :func:`confidence_scores`.

    Returns:
        ``ins, dele`` each (B,) in [0, 100] on x's device (higher insertion and lower deletion
        are better); with ``return_curves=True``: ``ins, dele, curves``.
    """
    scorer = _Scorer(model, batch_size, channels_last, optimize)
    check_input(x)
    h, w = x.shape[-2:]
    step = check_step(step, h, w)
    check_blur_size(h, w)
    with eval_mode(model), torch.no_grad():
        x, logits, classes = _setup(scorer, x, target)
        s = prepare_maps(maps, x)
        curves = _curves(scorer, x, s, classes, step, _pick(logits, classes),
                         _end_points(scorer, x, classes))
    ins, dele = 100 * auc(curves.insertion), 100 * auc(curves.deletion)
    return (ins, dele, curves) if return_curves else (ins, dele)
