"""Top-k classification accuracy over a dataset or loader, batched (METHODS.md section 5,
"Accuracy")."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..checks import check_model, eval_mode
from ._loading import iter_batches, model_device

__all__ = ["accuracy", "topk_correct"]


def topk_correct(logits: torch.Tensor, y: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
    """How many rows of ``logits`` (B, K) have ``y`` (B,) among their top k, for each k of
    ``ks``: a LongTensor (len(ks),) on the logits' device (the one counting rule of the
    package: :func:`accuracy` and the training loop's evaluation use it)."""
    top = logits.topk(max(ks), dim=1).indices  # (B, kmax), best first
    hit = top == y.view(-1, 1)
    return torch.stack([hit[:, :k].any(dim=1).sum() for k in ks])


def accuracy(
    model: nn.Module,
    data,
    topk: Sequence[int] = (1, 5),
    batch_size: int = 256,
    *,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Top-k accuracies in percent over all of ``data``.

    Args:
        model: classifier returning logits (B, K); evaluated in eval mode (restored after)
            without gradients.
        data: a dataset of (x, label) items (CIFAR-100 or a Subset of it is read in fast
            uint8 batches), a DataLoader, or any iterable of (x (B,3,H,W), y (B,)) batches.
        topk: the k values, e.g. (1, 5).
        batch_size: images per forward call when ``data`` is a dataset.
        device: where to run; default the model's device.

    Returns:
        ``{"top1": 71.2, "top5": 91.0, "n": 10000}``: one ``f"top{k}"`` percentage per k and
        the number of images.
    """
    check_model(model)
    ks = tuple(topk)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"topk must be a non-empty sequence of positive ints, got {topk!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = torch.device(device) if device is not None else model_device(model)
    correct = torch.zeros(len(ks), dtype=torch.long, device=device)
    n = 0
    with eval_mode(model), torch.no_grad():
        for x, y in iter_batches(data, batch_size, device):
            logits = model(x)
            if max(ks) > logits.shape[1]:
                raise ValueError(f"topk={ks} exceeds the {logits.shape[1]} classes of the model")
            correct += topk_correct(logits, y, ks)
            n += y.shape[0]
    if n == 0:
        raise ValueError("data yielded no images")
    out = {f"top{k}": 100.0 * c / n for k, c in zip(ks, correct.tolist(), strict=True)}
    out["n"] = n
    return out
