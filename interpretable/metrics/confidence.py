"""Per-image Average Drop, Average Gain and Average Increase (METHODS.md section 5), batched:
one call handles B images with per-image targets and returns per-image values (B,)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..checks import check_model, eval_mode
from .scoring import DEFAULT_BATCH_SIZE, _pick, _Scorer, _setup, mask_input, prepare_maps

__all__ = ["confidence_terms", "confidence_scores"]


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
        The masking is pixel-space multiplication by the saliency whatever the
        insertion/deletion conventions.
    """
    check_model(model)
    scorer = _Scorer(model, batch_size, channels_last, optimize)
    with eval_mode(model), torch.no_grad():
        x, logits, classes = _setup(scorer, x, target)
        s = prepare_maps(maps, x)
        y = _pick(logits, classes)
        o = scorer.probs(mask_input(x, s), classes)
    ad, ag, ai = confidence_terms(y, o)
    return (ad, ag, ai, y, o) if return_probs else (ad, ag, ai)
