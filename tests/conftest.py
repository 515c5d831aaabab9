"""Shared fixtures. Tests run on CPU with few threads' worth of work; seeds are fixed."""

from __future__ import annotations

import pytest
import torch

import interpretable as itp


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def test_set():
    """The real CIFAR-100 test split (offline copy beside the repository)."""
    return itp.data.cifar100("test")


@pytest.fixture(scope="module")
def r18():
    """A width-0.25 CIFAR ResNet-18 with random batch-norm statistics, in eval mode."""
    from _models import randomize_bn

    torch.manual_seed(0)
    return randomize_bn(itp.models.create("resnet18", width=0.25))


@pytest.fixture(scope="module")
def images(test_set):
    """The first four CIFAR-100 test images, normalized, (4, 3, 32, 32)."""
    return torch.stack([test_set[i][0] for i in range(4)])
