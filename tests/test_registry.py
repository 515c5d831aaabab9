"""interpretable.attribution.METHODS: the one registry of method names."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import interpretable as itp
from interpretable.attribution import (
    CAM_METHODS,
    DEFAULT_CAMS,
    GRADIENT_CAMS,
    METHODS,
    GradCAM,
    build_method,
    guided_backprop,
    method_key,
    parse_methods,
    saliency,
)


def test_reading_the_registry_imports_no_torch():
    code = ("import sys; from interpretable.attribution import METHODS; "
            "print(len(METHODS), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == [str(len(METHODS)), "False"], out.stderr


def test_keys_names_and_subsets():
    assert set(DEFAULT_CAMS) <= set(CAM_METHODS) and set(GRADIENT_CAMS) <= set(CAM_METHODS)
    assert "scorecam" not in GRADIENT_CAMS and not METHODS["scorecam"].backward
    names = [m.name for m in METHODS.values()]
    assert len(set(names)) == len(names) and len(set(m.color for m in METHODS.values())) > 6
    assert method_key("Grad-CAM++") == "gradcam++" == method_key(" GRADCAM++ ")
    assert parse_methods("gradcam, Score-CAM,gradcam") == ["gradcam", "scorecam"]
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        parse_methods("gradcam,nope")
    with pytest.raises(ValueError, match="unknown method 'smoe'"):
        parse_methods(["smoe"], allowed=CAM_METHODS)
    with pytest.raises(ValueError, match="at least one"):
        parse_methods(" , ")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return itp.models.create("resnet18", width=0.125).eval()


@pytest.mark.parametrize("key", list(METHODS))
def test_every_method_builds_and_gives_one_map_per_image(model, key):
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([3, 7])
    options = {"n": 2} if key == "smoothgrad" else {}
    with build_method(key, model, **options) as method:
        maps = method(x, y)
    assert maps.shape == (2, 32, 32) and torch.isfinite(maps).all() and (maps >= 0).all()
    assert all(not m._forward_hooks for m in model.modules())


def test_built_methods_equal_the_direct_calls(model):
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    with GradCAM(model) as cam:
        torch.testing.assert_close(build_method("Grad-CAM", model)(x, y), cam(x, y))
    torch.testing.assert_close(build_method("guided", model)(x, y),
                               guided_backprop(model, x, y).abs().sum(1))
    torch.testing.assert_close(build_method("smoe", model)(x, y), saliency(model, x)[0])
