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
