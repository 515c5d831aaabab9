"""Input gradients (METHODS.md section 1): captum, hand-computed cases, SmoothGrad, hygiene.

Peers: captum's ``Saliency(abs=False)`` and ``GuidedBackprop`` (which hooks ``nn.ReLU`` only,
so for ReLU6 nets the reference is an independent autograd.Function written here).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from _models import randomize_bn
from torch import nn

import interpretable as itp
from interpretable.attribution import (
    gradient,
    guided_backprop,
    relu_modules,
    smoothgrad,
    switchable_relus,
)


def _close(a, b, rtol=1e-4):
    """Agreement relative to the attribution's scale (gradients can be tiny)."""
    return (a - b).abs().max() <= rtol * b.abs().max() + 1e-12


# -- peers -----------------------------------------------------------------------------------
def _models():
    torch.manual_seed(0)
    return {
        "cifar_resnet18": (randomize_bn(itp.models.create("resnet18", width=0.25)), 32),
        # BasicBlock calls its single ReLU module twice per forward
        "torchvision_resnet18": (
            randomize_bn(torchvision.models.resnet18(weights=None, num_classes=10)), 64),
    }


@pytest.mark.filterwarnings("ignore::UserWarning")  # captum: "did not require gradients"
@pytest.mark.parametrize("name", ["cifar_resnet18", "torchvision_resnet18"])
def test_gradient_and_guided_match_captum(name):
    from captum.attr import GuidedBackprop, Saliency

    model, size = _models()[name]
    x = torch.randn(3, 3, size, size)
    target = torch.tensor([1, 0, 7])
    ours = gradient(model, x, target)
    theirs = Saliency(model).attribute(x, target=target, abs=False)
    assert ours.shape == x.shape and _close(ours, theirs)
    ours_gb = guided_backprop(model, x, target)
    theirs_gb = GuidedBackprop(model).attribute(x, target=target)
    assert _close(ours_gb, theirs_gb)
    assert not _close(ours_gb, ours, rtol=0.05)  # guided really differs from plain


class _GuidedReLU6(torch.autograd.Function):
    """Independent reference of METHODS.md section 1: grad * (0 < x < 6) * (grad > 0)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ((x > 0) & (x < 6)) * (grad > 0)


class _RefReLU6(nn.Module):
    def forward(self, x):
        return _GuidedReLU6.apply(x)


def _swap_relu6(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU6):
            setattr(module, name, _RefReLU6())
        else:
            _swap_relu6(child)


def test_guided_relu6_mobilenet_v2_against_reference(images):
    torch.manual_seed(0)
    model = randomize_bn(itp.models.create("mobilenet_v2", width=0.25))
    target = torch.tensor([0, 1, 2, 3])
    ref_model = copy.deepcopy(model)
    _swap_relu6(ref_model)
    x = images.clone().requires_grad_(True)
    ref_model(x).gather(1, target[:, None]).sum().backward()
    ours = guided_backprop(model, images, target)
    assert _close(ours, x.grad)
    assert not _close(ours, gradient(model, images, target), rtol=0.05)


# -- hand-computed ---------------------------------------------------------------------------
def test_gradient_of_linear_model_is_the_weight_row():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    x = torch.randn(3, 3, 2, 2)
    target = torch.tensor([4, 0, 2])
    want = model[1].weight[target].detach().view(3, 3, 2, 2)
    assert torch.allclose(gradient(model, x, target), want)


def test_guided_by_hand_on_two_relu_layers():
    # y = v . relu(W relu(x)): guided keeps only positive gradients arriving at each ReLU
    torch.manual_seed(0)
    lin1, lin2 = nn.Linear(4, 3, bias=False), nn.Linear(3, 1, bias=False)
    model = nn.Sequential(nn.Flatten(), nn.ReLU(), lin1, nn.ReLU(), lin2)
    x = torch.randn(2, 1, 2, 2)
    flat = x.flatten(1)
    W, v = lin1.weight.detach(), lin2.weight.detach()[0]
    h = flat.clamp(min=0) @ W.T
    g_h = (v.clamp(min=0) * (h > 0))  # at the second ReLU: positive part of v where h > 0
    g_x = (g_h @ W).clamp(min=0) * (flat > 0)
    assert torch.allclose(guided_backprop(model, x, 0), g_x.view_as(x), atol=1e-6)
    g_plain = ((v * (h > 0)) @ W) * (flat > 0)
    assert torch.allclose(gradient(model, x, 0), g_plain.view_as(x), atol=1e-6)


# -- SmoothGrad ------------------------------------------------------------------------------
@pytest.mark.parametrize("method", [gradient, guided_backprop])
@pytest.mark.parametrize("squared", [False, True])
def test_smoothgrad_against_loop_reference(r18, images, method, squared):
    x, target, n, level = images[:2], torch.tensor([5, 9]), 5, 0.2
    g = torch.Generator().manual_seed(3)
    sigma = level * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))
    ref = torch.zeros_like(x)
    for _ in range(n):
        noisy = x + sigma.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=g)
        a = method(r18, noisy, target)
        ref += a * a if squared else a
    ref /= n
    for bs in (2, 5, 64):  # one copy per forward, two copies per forward, all at once
        got = smoothgrad(method, r18, x, target, n=n, noise_level=level, squared=squared,
                         batch_size=bs, generator=torch.Generator().manual_seed(3))
        assert _close(got, ref), bs


def test_smoothgrad_zero_noise_is_the_gradient_and_none_target_is_clean_prediction(r18, images):
    x = images[:2]
    pred = r18(x).argmax(1)
    got = smoothgrad(gradient, r18, x, None, n=2, noise_level=0.0)
    assert _close(got, gradient(r18, x, pred))


def test_smoothgrad_errors(r18, images):
    with pytest.raises(ValueError, match="n must be"):
        smoothgrad(gradient, r18, images, 0, n=0)
    with pytest.raises(ValueError, match="noise_level"):
        smoothgrad(gradient, r18, images, 0, noise_level=-1)
    with pytest.raises(ValueError, match="batch_size"):
        smoothgrad(gradient, r18, images, 0, batch_size=0)
    with pytest.raises(TypeError, match="method"):
        smoothgrad("gradient", r18, images, 0)
    with pytest.raises(ValueError, match="target must have one class per image"):
        smoothgrad(gradient, r18, images, torch.tensor([1, 2]))


# -- hygiene ---------------------------------------------------------------------------------
def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


@pytest.mark.parametrize("method", [gradient, guided_backprop])
def test_model_and_input_left_as_found(method):
    torch.manual_seed(0)
    model = itp.models.create("resnet18", width=0.125)
    model.train()
    model.layer1.eval()
    model.fc.weight.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    bn = model.stem[1].running_mean.clone()
    for requires in (False, True):
        x = torch.randn(2, 3, 32, 32, requires_grad=requires)
        method(model, x, torch.tensor([1, 2]))
        assert x.requires_grad == requires and x.grad is None
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(model.stem[1].running_mean, bn)  # eval mode: no statistic updated
    assert _hook_count(model) == 0
    with pytest.raises(ValueError, match="target must be in"):
        method(model, torch.randn(2, 3, 32, 32), 100)
    assert _hook_count(model) == 0 and [m.training for m in model.modules()] == modes


@pytest.mark.parametrize("method", [gradient, guided_backprop])
def test_caller_in_no_grad_and_inference_mode(r18, images, method):
    ref = method(r18, images, 3)
    with torch.no_grad():
        assert torch.equal(method(r18, images, 3), ref)
    with torch.inference_mode():
        assert torch.allclose(method(r18, images.clone(), 3), ref)
    assert torch.is_grad_enabled()


def test_batch_equals_single_images(r18, images):
    target = torch.tensor([3, 17, 42, 99])
    for method in (gradient, guided_backprop):
        batch = method(r18, images, target)
        single = torch.cat([method(r18, images[i:i + 1], target[i:i + 1]) for i in range(4)])
        assert _close(batch, single), method.__name__


def test_relu_rules_names_still_work(r18, images):
    # the training code uses these: one forward, both backward rules
    assert len(relu_modules(r18)) == 17
    x = images[:2].clone().requires_grad_(True)
    with switchable_relus(r18) as switch:
        y = r18(x)[:, 0].sum()
    (plain,) = torch.autograd.grad(y, x, retain_graph=True)
    switch.guided = True
    (guided,) = torch.autograd.grad(y, x)
    assert _close(plain, gradient(r18, images[:2], 0))
    assert _close(guided, guided_backprop(r18, images[:2], 0))


def test_gradient_errors(r18):
    with pytest.raises(ValueError, match="x must be 4-D"):
        gradient(r18, torch.randn(3, 32, 32), 0)
    with pytest.raises(TypeError, match="x must"):
        gradient(r18, np.zeros((1, 3, 32, 32), dtype=np.float32), 0)
    with pytest.raises(ValueError, match="target must have one class per image"):
        gradient(r18, torch.randn(2, 3, 32, 32), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"target must be in \[0, 100\)"):
        guided_backprop(r18, torch.randn(2, 3, 32, 32), torch.tensor([0, 100]))
    with pytest.raises(TypeError, match="target"):
        gradient(r18, torch.randn(2, 3, 32, 32), 1.5)
    with pytest.raises(TypeError, match="model must be"):
        gradient("resnet", torch.randn(2, 3, 32, 32), 0)
    with pytest.raises(ValueError, match="no nn.ReLU"):
        guided_backprop(nn.Sequential(nn.Flatten(), nn.Linear(3 * 4, 2)), torch.randn(1, 3, 2, 2))


def test_no_memory_growth():
    import gc

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Flatten(),
                          nn.Linear(16, 3)).eval()
    x = torch.randn(2, 3, 4, 4)

    def tensors():
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

    for fn in (gradient, guided_backprop):
        fn(model, x)
    start = tensors()
    for _ in range(50):
        gradient(model, x, 1)
        guided_backprop(model, x, 1)
        smoothgrad(guided_backprop, model, x, 1, n=3)
    assert tensors() <= start


def test_built_for_weights_builds_once_per_key():
    from interpretable.inference import BuiltForWeights

    built = []

    def build(value):
        def run():
            built.append(value)
            return value
        return run

    cache = BuiltForWeights()
    assert cache.get("a", build("A")) is None          # a one-off call does not build
    assert cache.get("a", build("A")) == "A"           # the second call with the key does
    assert cache.get("a", build("X")) == "A" and built == ["A"]
    assert cache.get("b", build("B"), now=True) == "B"  # a new key drops the old object
    assert cache.value == "B" and built == ["A", "B"]
    assert cache.get("c", build(None), now=True) is None  # cannot be built ...
    assert cache.get("c", build("C"), now=True) is None   # ... and is not retried
    assert cache.value is False and built == ["A", "B", None]
