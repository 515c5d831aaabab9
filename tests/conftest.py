"""Shared fixtures. Tests run on CPU with few threads' worth of work; seeds are fixed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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


@pytest.fixture(scope="module")
def browser_page():
    """A page of headless Chromium (``$CHROMIUM``, Debian's by default) and the list its
    JavaScript errors go to; skips when the browser or Playwright is missing."""
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not (shutil.which(chromium) or Path(chromium).is_file()):
        pytest.skip(f"no Chromium at {chromium} (`make browser` installs Debian's chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-gpu",
                                           "--disable-background-networking"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            yield page, errors
        finally:
            browser.close()


@pytest.fixture(scope="module")
def model():
    """A width-0.125 CIFAR ResNet-18 with random batch-norm statistics (seed 0), fresh per
    test module: the book helpers' tests use it."""
    from _models import randomize_bn

    torch.manual_seed(0)
    return randomize_bn(itp.models.create("resnet18", width=0.125))
