"""Insertion and deletion curves and their AUCs (RISE; METHODS.md section 5), batched.

All curve points of all images are built from cumulative rank masks as one stream of masked
inputs and pushed through the model in chunks of ``batch_size``: there is no Python loop
over images or steps. The substrates and the step follow a
:class:`~.definitions.Conventions` (default ``"ours"``; ``"authors"`` for the paper authors'
code; see :data:`~.definitions.CONVENTIONS`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..checks import check_input, check_model, eval_mode
from .definitions import Conventions, resolve_conventions
from .scoring import (
    DEFAULT_BATCH_SIZE,
    _pick,
    _Scorer,
    _setup,
    auc,
    blur_substrate,
    check_blur_size,
    check_step,
    deletion_substrate,
    prepare_maps,
)

__all__ = ["Curves", "insertion_deletion", "curve_settings"]


class Curves(NamedTuple):
    """Whole insertion/deletion curves of a batch (``return_curves=True``).

    fraction: (T+1,) share of pixels changed at each point, 0 .. 1.
    insertion: (B, T+1) target probability as pixels of x are inserted into the blur.
    deletion: (B, T+1) target probability as pixels are set to the deletion substrate.
    """

    fraction: Tensor
    insertion: Tensor
    deletion: Tensor


class _Ends(NamedTuple):
    """The map-independent parts of a batch's curves, shared by all maps of x."""

    blurred: Tensor          # (B, C, H, W) insertion start
    blur_probs: Tensor       # (B,) p_c(blur): insertion's first point
    deleted: Tensor          # (1, C, 1, 1) constant substrate, or (B, C, H, W) per image
    deleted_probs: Tensor    # (B,) p_c(substrate): deletion's last point
    per_image: bool          # whether ``deleted`` is per image


def curve_settings(conventions: str | Conventions, step: int | None, height: int, width: int,
                   **overrides) -> tuple[Conventions, int]:
    """``(conventions, step)`` checked for images ``height`` x ``width``: the conventions with
    any of ``substrate``, ``blur_kernel``, ``blur_sigma`` in ``overrides`` that is not None,
    and ``step`` (default the conventions' ``step_rows * width``) checked by
    :func:`check_step`; the image must fit the blur (:func:`check_blur_size`)."""
    conv = resolve_conventions(conventions, **overrides)
    step = check_step(conv.step(width) if step is None else step, height, width)
    check_blur_size(height, width, conv.blur_kernel)
    return conv, step


def _ranks(s: Tensor) -> Tensor:
    """Rank of each pixel (B, H*W): 0 = most salient; ties keep raster order (stable sort)."""
    flat = s.flatten(1)
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=s.device).expand_as(order))
    return ranks


def _end_points(scorer: _Scorer, x: Tensor, classes: Tensor, conv: Conventions) -> _Ends:
    """The blurred x and p_c(blur) (insertion's first point), the deletion substrate and
    p_c(substrate) (deletion's last point). A constant substrate (black, mean colour) is the
    same for every image: one forward per batch; the blur substrate is the insertion blur."""
    blurred = blur_substrate(x, conv.blur_kernel, conv.blur_sigma)
    blur_probs = scorer.probs(blurred, classes)
    if conv.substrate == "blur":
        return _Ends(blurred, blur_probs, blurred, blur_probs, True)
    deleted = deletion_substrate(x, conv)
    image = deleted.expand(1, *x.shape[1:])
    deleted_probs = torch.softmax(scorer.forward(image), dim=1)[0, classes]
    return _Ends(blurred, blur_probs, deleted, deleted_probs, False)


def _interior_points(scorer: _Scorer, x: Tensor, ends: _Ends, ranks: Tensor, classes: Tensor,
                     step: int, steps: int) -> tuple[Tensor, Tensor]:
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
        deleted = ends.deleted[img] if ends.per_image else ends.deleted
        substrate = torch.where(is_del.view(-1, 1, 1, 1), deleted, ends.blurred[img])
        inputs = torch.where(take_x, x[img], substrate)
        probs[start:start + batch_size] = _pick(scorer.forward(inputs), classes[img])
    probs = probs.view(b, 2, inner)
    return probs[:, 0], probs[:, 1]


def _curves(scorer: _Scorer, x: Tensor, s: Tensor, classes: Tensor, step: int, y: Tensor,
            ends: _Ends) -> Curves:
    """Both curves of a batch, given the map-independent points ``ends`` (see _end_points)."""
    h, w = x.shape[-2:]
    steps = h * w // step
    ins_mid, del_mid = _interior_points(scorer, x, ends, _ranks(s), classes, step, steps)
    insertion = torch.cat([ends.blur_probs[:, None], ins_mid, y[:, None]], dim=1)
    deletion = torch.cat([y[:, None], del_mid, ends.deleted_probs[:, None]], dim=1)
    fraction = torch.arange(steps + 1, device=x.device, dtype=x.dtype) * step / (h * w)
    return Curves(fraction, insertion, deletion)


def insertion_deletion(
    model: nn.Module,
    x: Tensor,
    maps: Tensor,
    target: int | Tensor | None = None,
    step: int | None = None,
    *,
    conventions: str | Conventions = "ours",
    substrate: str | None = None,
    blur_kernel: int | None = None,
    blur_sigma: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    return_curves: bool = False,
    channels_last: bool = False,
    optimize: bool = True,
) -> tuple[Tensor, ...]:
    """Per-image insertion and deletion AUCs x100 (RISE; METHODS.md section 5, Decision).

    Pixels are ranked by the saliency S (:func:`prepare_maps`; stable descending sort, so
    ties keep raster order). Deletion sets the ``step`` top-ranked pixels per step to the
    deletion substrate; insertion copies them from x into a Gaussian blur of x (pixel space,
    reflect padding). Each curve has T + 1 = H*W/step + 1 points of the target's softmax
    probability; AUC = (sum - (first + last) / 2) / T.

    All B * (T + 1) * 2 curve points are built from cumulative rank masks and run through the
    model in chunks of ``batch_size`` images (the memory knob); the map-independent points
    (x itself, the blur, a constant substrate: one forward for the whole batch) are computed
    once.

    Args:
        model: classifier returning logits; run in eval mode (restored) without gradients.
        x: normalized images (B, 3, H, W).
        maps: (B, h, w) or (B, 1, h, w) at any resolution.
        target: None = predicted class, int, or LongTensor (B,).
        step: pixels changed per step; default the conventions' (ours: W, one row's worth, H
            steps; authors: 8 W); must divide H*W and leave at least 2 steps.
        conventions: ``"ours"`` (default: deletion to black, blur kernel 11 sigma 5, step W),
            ``"authors"`` (deletion to the mean colour, blur 5 / sigma 5, step 8 W), or a
            :class:`~interpretable.metrics.Conventions` (see :data:`CONVENTIONS`).
        substrate: overrides the conventions' deletion substrate: ``"black"`` (pixel value
            0), ``"mean"`` (zeros of the normalized tensor: the mean colour) or ``"blur"``
            (the insertion blur).
        blur_kernel, blur_sigma: override the conventions' insertion blur (odd kernel size,
            sigma > 0).
        batch_size: images per forward call.
        return_curves: also return :class:`Curves` (fraction (T+1,), insertion and deletion
            (B, T+1) probabilities) for plots.
        channels_last, optimize: as in :func:`confidence_scores`.

    Returns:
        ``ins, dele`` each (B,) in [0, 100] on x's device (higher insertion and lower deletion
        are better); with ``return_curves=True``: ``ins, dele, curves``.
    """
    check_model(model)
    scorer = _Scorer(model, batch_size, channels_last, optimize)
    check_input(x)
    h, w = x.shape[-2:]
    conv, step = curve_settings(conventions, step, h, w, substrate=substrate,
                                blur_kernel=blur_kernel, blur_sigma=blur_sigma)
    with eval_mode(model), torch.no_grad():
        x, logits, classes = _setup(scorer, x, target)
        s = prepare_maps(maps, x)
        curves = _curves(scorer, x, s, classes, step, _pick(logits, classes),
                         _end_points(scorer, x, classes, conv))
    ins, dele = 100 * auc(curves.insertion), 100 * auc(curves.deletion)
    return (ins, dele, curves) if return_curves else (ins, dele)
