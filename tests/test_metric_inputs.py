"""Metrics (METHODS.md section 5): input checks, model modes and gradient flags, chunking,
memory formats and the inference-optimized forward."""

from __future__ import annotations

import math

import pytest
import torch
from _metric_models import tiny_setup
from torch import nn

import interpretable as itp
from interpretable.data import normalize
from interpretable.metrics import confidence_scores, insertion_deletion


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from 2 threads, and on a shared machine the OpenMP barrier
    of a busy second core costs more than the work (batch-4 forwards: ~7 ms vs ~400 ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny():
    return tiny_setup()


def test_chunking_does_not_change_results(tiny):
    model, x = tiny
    maps = torch.rand(3, 16, 16)
    base = insertion_deletion(model, x, maps, 1, step=32, batch_size=1000)
    for bs in (1, 7, 14):
        other = insertion_deletion(model, x, maps, 1, step=32, batch_size=bs)
        for a, b in zip(base, other, strict=True):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_channels_last_gives_the_same_numbers():
    model = itp.models.create("resnet18", width=0.125).eval()
    x = normalize(torch.rand(3, 3, 32, 32))
    maps = torch.rand(3, 8, 8)
    a = insertion_deletion(model, x, maps, 2, step=256)
    b = insertion_deletion(model, x, maps, 2, step=256, channels_last=True)
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, atol=1e-4, rtol=0)


def test_optimized_forward_matches_the_model_and_follows_weight_changes():
    torch.manual_seed(0)
    model = itp.models.create("resnet18", width=0.125).eval()
    for m in model.modules():  # non-trivial batch-norm statistics, so folding matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    x = normalize(torch.rand(3, 3, 32, 32))
    maps = torch.rand(3, 8, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = insertion_deletion(model, x, maps, 2, step=256)
    plain = insertion_deletion(model, x, maps, 2, step=256, optimize=False)
    for u, v in zip(fast, plain, strict=True):
        torch.testing.assert_close(u, v, atol=1e-4, rtol=0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # editing a weight in place must not leave a stale optimized copy behind
    with torch.no_grad():
        model.fc.weight.mul_(-1)
    fast = confidence_scores(model, x, maps, 2, return_probs=True)
    plain = confidence_scores(model, x, maps, 2, return_probs=True, optimize=False)
    for u, v in zip(fast, plain, strict=True):
        torch.testing.assert_close(u, v, atol=1e-4, rtol=1e-5)


def test_untraceable_model_falls_back_to_its_own_forward(tiny):
    model, x = tiny

    class Branchy(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, z):
            return self.net(z) if bool(z.sum() > -1e9) else -self.net(z)

    maps = torch.rand(3, 16, 16)
    got = insertion_deletion(Branchy(), x, maps, 1, step=32)
    want = insertion_deletion(model, x, maps, 1, step=32, optimize=False)
    for u, v in zip(got, want, strict=True):
        torch.testing.assert_close(u, v, atol=1e-9, rtol=0)



def test_model_mode_and_grad_flags_restored(tiny):
    model, x = tiny
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = x.clone().requires_grad_(True)
    maps = torch.rand(3, 4, 4)
    out1 = confidence_scores(model, x, maps)
    with torch.no_grad():
        out2 = insertion_deletion(model, x, maps, step=64)
    assert model.training and model.bn.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert x.requires_grad and x.grad is None
    assert not any(t.requires_grad for t in (*out1, *out2))
    with pytest.raises(ValueError, match="NaN"):
        confidence_scores(model, x, torch.full((3, 4, 4), math.nan))
    assert model.training  # also after an error
    model.eval()


def test_bad_inputs(tiny):
    model, x = tiny
    good = torch.rand(3, 4, 4)
    with pytest.raises(ValueError, match="one map per image"):
        confidence_scores(model, x, torch.rand(2, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, h, w\) or \(B, 1, h, w\)"):
        insertion_deletion(model, x, torch.rand(3, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, h, w\)"):
        confidence_scores(model, x, torch.rand(4, 4))
    bad = good.clone()
    bad[1, 2, 2] = math.nan
    with pytest.raises(ValueError, match=r"NaN \(images \[1\]"):
        insertion_deletion(model, x, bad)
    bad[1, 2, 2] = math.inf
    with pytest.raises(ValueError, match="infinite"):
        confidence_scores(model, x, bad)
    with pytest.raises(TypeError, match="maps must be a torch.Tensor"):
        confidence_scores(model, x, good.numpy())
    with pytest.raises(ValueError, match="divide"):
        insertion_deletion(model, x, good, step=3)
    with pytest.raises(ValueError, match="at least 2 steps"):
        insertion_deletion(model, x, good, step=256)
    with pytest.raises(ValueError, match="positive"):
        insertion_deletion(model, x, good, step=0)
    with pytest.raises(TypeError, match="step must be an int"):
        insertion_deletion(model, x, good, step=16.0)
    with pytest.raises(ValueError, match="batch_size"):
        insertion_deletion(model, x, good, batch_size=0)
    with pytest.raises(ValueError, match="target"):
        confidence_scores(model, x, good, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="target"):
        confidence_scores(model, x, good, 10)  # the model has 10 classes
    with pytest.raises(TypeError, match="model"):
        insertion_deletion(lambda t: t, x, good)
    with pytest.raises(ValueError, match="larger than 5 pixels"):
        insertion_deletion(model, x[..., :5, :5], torch.rand(3, 5, 5), step=5)


