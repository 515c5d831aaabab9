"""Batches of (x, y) from whatever the metrics are given: CIFAR100, a Subset, any dataset."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from ..data import CIFAR100, batches

__all__ = ["model_device", "dataset_length", "index_batches", "iter_batches"]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameter-free model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _is_cifar(dataset) -> bool:
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return isinstance(dataset, CIFAR100)


def dataset_length(dataset) -> int:
    """len(dataset), with a clear error for objects that are not map-style datasets."""
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise TypeError(
            "dataset must be a map-style dataset of (x (3, H, W), label) items "
            f"(e.g. interpretable.data.cifar100('test')), got {type(dataset).__name__}"
        )
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset is empty: there is nothing to evaluate")
    return n


def index_batches(
    dataset: Dataset, indices: Sequence[int], batch_size: int, device: torch.device
) -> Iterator[tuple[Sequence[int], Tensor, Tensor]]:
    """``(indices of the batch, x (b, 3, H, W), y (b,))`` for ``indices`` of ``dataset``.

    CIFAR-100 (or Subsets of it) is read through :func:`interpretable.data.batches` (uint8
    array indexing, no per-image Python work); other datasets item by item.
    """
    if _is_cifar(dataset):
        sub = Subset(dataset, list(indices))
        for start, (x, y) in zip(range(0, len(indices), batch_size),
                                 batches(sub, batch_size, device=device), strict=True):
            yield indices[start:start + batch_size], x, y
        return
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        items = [dataset[i] for i in chunk]
        x = torch.stack([torch.as_tensor(item[0]) for item in items]).to(device)
        y = torch.as_tensor([int(item[1]) for item in items], dtype=torch.long, device=device)
        yield chunk, x, y


def iter_batches(data, batch_size: int, device: torch.device) -> Iterable[tuple[Tensor, Tensor]]:
    """(x, y) batches from a torch Dataset, a DataLoader or any iterable of (x, y) batches."""
    if isinstance(data, Dataset):  # a list of batches is iterated, not indexed
        n = dataset_length(data)
        return ((x, y) for _, x, y in index_batches(data, list(range(n)), batch_size, device))
    if isinstance(data, Iterable):
        return ((torch.as_tensor(x).to(device), torch.as_tensor(y).to(device)) for x, y in data)
    raise TypeError(
        f"data must be a dataset or an iterable of (x, y) batches, got {type(data).__name__}"
    )
