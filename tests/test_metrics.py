"""Metrics (METHODS.md section 5): AD/AG/AI, insertion/deletion, accuracy, evaluate.

Checked against (a) a slow reference written here (one image, one curve point per forward,
pixel-space masking, Python's stable ``sorted`` for the ranking, numpy's trapezoid), (b)
hand-computed softmax values of constructed linear models, (c) torchcam's
``DeletionInsertionMetric`` and ``ClassificationMetric`` on the same maps.
"""

from __future__ import annotations

import json
import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _references import ref_confidence, ref_curves
from torch import nn
from torch.utils.data import Subset, TensorDataset
from torchvision.transforms.functional import gaussian_blur

import interpretable as itp
from benchmarks.common import FixedMaps
from interpretable.data import normalize
from interpretable.metrics import (
    accuracy,
    auc,
    confidence_scores,
    evaluate,
    insertion_deletion,
    paper_table,
    prepare_maps,
    summarize,
)
from interpretable.metrics.runs import TOLERANCES

# ----------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from 2 threads, and on a shared machine the OpenMP barrier
    of a busy second core costs more than the work (batch-4 forwards: ~7 ms vs ~400 ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TinyNet(nn.Module):
    """Conv-BN-ReLU-conv-ReLU-pool-linear: small, non-linear, with batch norm."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, classes)
        with torch.no_grad():  # non-trivial running statistics, so eval mode matters
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.fc.weight.mul_(8)

    def forward(self, x):
        h = F.relu(self.bn(self.conv1(x)))
        h = F.relu(self.conv2(h)).mean((2, 3))
        return self.fc(h)


class RegionNet(nn.Module):
    """Two classes: logit 0 is 0, logit 1 = a * sum over a region R of (x - black)[channel 0].

    For x_masked = x * S + (1 - S) * black, (x_masked - black) = S * (x - black), so the logit
    of a masked input is known by hand.
    """

    def __init__(self, region: torch.Tensor, a: float):
        super().__init__()
        self.register_buffer("region", region.double())
        self.a = a

    def forward(self, x):
        u = (x - normalize(torch.zeros(1, 3, 1, 1, dtype=x.dtype)))[:, 0]
        z1 = self.a * (u * self.region).sum((1, 2))
        return torch.stack([torch.zeros_like(z1), z1], dim=1)


def _pixel_image(b, h, w, dtype=torch.float64):
    return torch.rand(b, 3, h, w, dtype=dtype)


@pytest.fixture
def tiny():
    model = TinyNet().double().eval()
    x = normalize(_pixel_image(3, 16, 16))
    return model, x


# ------------------------------------------------------------------ reference matches


@pytest.mark.parametrize("map_size", [(4, 4), (16, 16), (7, 5)])
def test_confidence_matches_reference(tiny, map_size):
    model, x = tiny
    maps = torch.rand(3, *map_size)
    target = torch.tensor([1, 4, 9])
    ad, ag, ai = confidence_scores(model, x, maps, target)
    for i in range(3):
        ref = ref_confidence(model, x[i], maps[i], int(target[i]))
        assert ad[i].item() == pytest.approx(ref[0], abs=1e-6)
        assert ag[i].item() == pytest.approx(ref[1], abs=1e-6)
        assert ai[i].item() == ref[2]
    # (B, 1, h, w) maps and an explicit int target give the same as the (B, h, w) form
    same = confidence_scores(model, x, maps[:, None], target)
    assert all(torch.equal(a, b) for a, b in zip(same, (ad, ag, ai), strict=True))


def test_confidence_predicted_and_int_targets(tiny):
    model, x = tiny
    maps = torch.rand(3, 4, 4)
    pred = model(x).argmax(1)
    for tgt, classes in ((None, pred.tolist()), (3, [3, 3, 3])):
        ad, ag, ai = confidence_scores(model, x, maps, tgt)
        for i, c in enumerate(classes):
            ref = ref_confidence(model, x[i], maps[i], c)
            assert ad[i].item() == pytest.approx(ref[0], abs=1e-6)
            assert ag[i].item() == pytest.approx(ref[1], abs=1e-6)


@pytest.mark.parametrize("step", [16, 32, 64])
def test_insertion_deletion_matches_reference(tiny, step):
    model, x = tiny
    # quantized maps have many ties: the stable-sort tie rule is exercised too
    maps = (torch.rand(3, 8, 8) * 4).floor()
    target = torch.tensor([2, 0, 7])
    ins, dele, curves = insertion_deletion(model, x, maps, target, step=step, batch_size=5,
                                           return_curves=True)
    assert curves.insertion.shape == (3, 256 // step + 1)
    for i in range(3):
        r_ins, r_del, r_ic, r_dc = ref_curves(model, x[i], maps[i], int(target[i]), step)
        assert ins[i].item() == pytest.approx(r_ins, abs=1e-6)
        assert dele[i].item() == pytest.approx(r_del, abs=1e-6)
        np.testing.assert_allclose(curves.insertion[i].numpy(), r_ic, atol=1e-8)
        np.testing.assert_allclose(curves.deletion[i].numpy(), r_dc, atol=1e-8)
    np.testing.assert_allclose(curves.fraction.numpy(), np.arange(256 // step + 1) * step / 256)


def test_insertion_deletion_resnet_matches_reference():
    """The CIFAR ResNet-18 in float32: equal up to float32 rounding (x100 scale)."""
    model = itp.models.create("resnet18", width=0.125).eval()
    x = normalize(torch.rand(2, 3, 32, 32))
    maps = torch.rand(2, 4, 4)
    ins, dele = insertion_deletion(model, x, maps, None, step=256)
    with torch.no_grad():
        pred = model(x).argmax(1)
    for i in range(2):
        r_ins, r_del, _, _ = ref_curves(model, x[i], maps[i], int(pred[i]), 256)
        assert ins[i].item() == pytest.approx(r_ins, abs=1e-4)
        assert dele[i].item() == pytest.approx(r_del, abs=1e-4)


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


def test_default_step_is_one_row(tiny):
    model, x = tiny
    maps = torch.rand(3, 16, 16)
    _, _, curves = insertion_deletion(model, x, maps, return_curves=True)
    assert curves.deletion.shape == (3, 17)  # H steps, H + 1 points


def test_auc_formula():
    curve = torch.tensor([[1.0, 0.5, 0.25, 0.0]])
    # (sum - (first + last)/2) / (P - 1) = (1.75 - 0.5) / 3
    assert auc(curve).item() == pytest.approx(1.25 / 3)
    assert auc(curve).item() == pytest.approx(np.trapezoid(curve[0].numpy(), np.linspace(0, 1, 4)))


# ------------------------------------------------------------------- hand computations


def _uniform_region_setup(value: float = 0.6, h: int = 8, w: int = 8, total_logit: float = 2.0):
    """Uniform image of pixel value ``value``; RegionNet over all pixels with z1(x) = total."""
    pix = torch.full((1, 3, h, w), value, dtype=torch.float64)
    x = normalize(pix)
    u0 = value / itp.data.STD[0]  # (x - black)[channel 0] at every pixel
    a = total_logit / (u0 * h * w)
    return RegionNet(torch.ones(h, w), a), x


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


def test_confidence_hand_computed():
    model, x = _uniform_region_setup(total_logit=2.0)
    half = torch.zeros(1, 8, 8)
    half[..., :4] = 1.0  # S keeps half the pixels: logit 2 -> 1
    x2 = x.expand(2, -1, -1, -1)
    ad, ag, ai, y, o = confidence_scores(model, x2, half.expand(2, -1, -1),
                                         torch.tensor([1, 0]), return_probs=True)
    y1, o1 = sigmoid(2.0), sigmoid(1.0)
    assert y[0].item() == pytest.approx(y1, abs=1e-12)
    assert o[0].item() == pytest.approx(o1, abs=1e-12)
    assert ad[0].item() == pytest.approx(100 * (y1 - o1) / y1, abs=1e-9)
    assert ag[0].item() == 0 and ai[0].item() == 0
    y0, o0 = 1 - y1, 1 - o1  # class 0 gains confidence as the class-1 evidence is removed
    assert ad[1].item() == 0 and ai[1].item() == 100
    assert ag[1].item() == pytest.approx(100 * (o0 - y0) / (1 - y0), abs=1e-9)
    # a ramp map 0..1 keeps on average half the evidence too, but after upsampling from 2x1
    ramp = torch.tensor([[[0.0], [1.0]]])  # (1, 2, 1): rows ramp after bilinear upsampling
    s = prepare_maps(ramp, x)
    _, _, _, _, o_r = confidence_scores(model, x, ramp, 1, return_probs=True)
    assert o_r.item() == pytest.approx(sigmoid(2.0 * s.mean().item()), abs=1e-12)


def test_deletion_insertion_hand_computed():
    model, x = _uniform_region_setup(total_logit=2.0)
    maps = torch.rand(1, 8, 8)  # this model counts pixels only, so the order does not matter
    ins, dele, curves = insertion_deletion(model, x, maps, 1, step=8, return_curves=True)
    expected = [sigmoid(2.0 * (1 - k / 8)) for k in range(9)]  # last point: black -> 0.5
    np.testing.assert_allclose(curves.deletion[0].numpy(), expected, atol=1e-12)
    hand_auc = (sum(expected) - (expected[0] + expected[-1]) / 2) / 8
    assert dele.item() == pytest.approx(100 * hand_auc, abs=1e-9)
    # the blur of a uniform image is the image itself: insertion is flat at Y
    np.testing.assert_allclose(curves.insertion[0].numpy(), sigmoid(2.0), atol=1e-12)
    assert ins.item() == pytest.approx(100 * sigmoid(2.0), abs=1e-9)


def test_perfect_ranking_gives_the_extremes():
    torch.manual_seed(3)
    h = w = 16
    step = 16
    region = torch.zeros(h * w)
    region[torch.randperm(h * w)[:step]] = 1  # R: exactly one step's worth, scattered
    region = region.view(h, w)
    # bright in R, dark elsewhere: the blur dims R, so insertion starts low
    pix = torch.where(region.bool(), 0.9, 0.1).expand(1, 3, h, w).to(torch.float64)
    x = normalize(pix)
    model = RegionNet(region, a=1.0)
    model.a = 3.0 / float(model(x)[0, 1])  # logit 3 on x
    y = sigmoid(3.0)
    p_blur = sigmoid(float(model(normalize(gaussian_blur(pix, [11, 11], [5.0, 5.0])))[0, 1]))
    assert p_blur < y - 0.1
    perfect = region[None].clone()
    ins, dele = insertion_deletion(model, x, perfect, 1, step=step)
    steps = h * w // step
    # deletion: R goes first, the logit drops to 0 (p = 0.5) and stays there
    exp_del = [y] + [0.5] * steps
    assert dele.item() == pytest.approx(100 * np.trapezoid(exp_del, dx=1 / steps), abs=1e-9)
    # insertion: R is inserted first, p jumps from p(blur) to Y and stays
    exp_ins = [p_blur] + [y] * steps
    assert ins.item() == pytest.approx(100 * np.trapezoid(exp_ins, dx=1 / steps), abs=1e-9)
    # the worst order (R last) gives the opposite extremes; random maps lie in between
    worst_ins, worst_del = insertion_deletion(model, x, 1 - perfect, 1, step=step)
    rand_ins, rand_del = insertion_deletion(model, x.expand(20, -1, -1, -1),
                                            torch.rand(20, h, w), 1, step=step)
    assert (rand_del >= dele - 1e-9).all() and (rand_del <= worst_del + 1e-9).all()
    assert (rand_ins <= ins + 1e-9).all() and (rand_ins >= worst_ins - 1e-9).all()
    assert worst_del.item() == pytest.approx(
        100 * np.trapezoid([y] * steps + [0.5], dx=1 / steps), abs=1e-9)


def test_ties_follow_raster_order():
    """A constant map leaves all pixels tied: the stable sort deletes the first row first."""
    h = w = 16
    region = torch.zeros(h, w)
    region[0] = 1  # the model looks at the first row only
    model = RegionNet(region, a=1.0)
    x = normalize(_pixel_image(1, h, w))
    _, _, curves = insertion_deletion(model, x, torch.zeros(1, 4, 4), 1, step=w,
                                      return_curves=True)
    assert torch.allclose(curves.deletion[0, 1:], torch.tensor(0.5, dtype=torch.float64))
    # the same with a last-row model: the row is deleted last
    region2 = torch.zeros(h, w)
    region2[-1] = 1
    _, _, c2 = insertion_deletion(RegionNet(region2, a=1.0), x, torch.zeros(1, 4, 4), 1,
                                  step=w, return_curves=True)
    assert (c2.deletion[0, :-1] == c2.deletion[0, 0]).all() and c2.deletion[0, -1] == 0.5


def test_all_ones_map_leaves_input_unchanged():
    """S = 1 must return x bit for bit (float32): AD 0, AG 0, AI 0 exactly."""
    model = itp.models.create("resnet18", width=0.125).eval()
    x = normalize(torch.rand(4, 3, 32, 32))
    for maps in (torch.ones(4, 4, 4), torch.full((4, 1, 8, 8), 5.0)):
        ad, ag, ai, y, o = confidence_scores(model, x, maps, None, return_probs=True)
        assert torch.equal(y, o)
        assert (ad == 0).all() and (ag == 0).all() and (ai == 0).all()
    # also with chunks smaller than the batch, and in channels-last memory format
    for kw in ({"batch_size": 3}, {"channels_last": True}):
        ad, ag, ai, y, o = confidence_scores(model, x, torch.ones(4, 4, 4), 1,
                                             return_probs=True, **kw)
        assert torch.equal(y, o) and (ai == 0).all()
    # and the constant-zero map masks everything: O = p(black image)
    _, _, _, _, o = confidence_scores(model, x, torch.zeros(4, 4, 4), 5, return_probs=True)
    black_img = normalize(torch.zeros(1, 3, 32, 32))
    with torch.no_grad():
        p_black = torch.softmax(model(black_img), 1)[0, 5]
    torch.testing.assert_close(o, p_black.expand(4), atol=1e-6, rtol=0)


def test_prepare_maps_rules():
    x = torch.zeros(3, 3, 8, 8)
    ramp = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    maps = torch.stack([torch.full((2, 2), 3.0), torch.zeros(2, 2), ramp])
    s = prepare_maps(maps, x)
    assert s.shape == (3, 8, 8)
    assert (s[0] == 1).all() and (s[1] == 0).all()
    assert s[2].min() == 0 and s[2].max() == 1
    up = F.interpolate(maps[2][None, None], size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(s[2], ((up - up.min()) / (up.max() - up.min()))[0, 0])


# ---------------------------------------------------------------------------- peers


def test_deletion_insertion_match_torchcam(tiny):
    from torchcam.metrics import DeletionInsertionMetric

    model, x = tiny
    model, x = model.float(), x.float()
    maps = torch.rand(3, 16, 16)  # full resolution, so torchcam resizes nothing
    target = [1, 5, 2]
    ins, dele = insertion_deletion(model, x, maps, torch.tensor(target), step=16)
    soft = partial(torch.softmax, dim=-1)
    black_in = normalize(torch.zeros(1, 3, 1, 1))
    m_del = DeletionInsertionMetric(FixedMaps(model, maps), soft, steps=16, baseline=black_in)
    m_del.update(x, class_idx=target)
    # torchcam uses one baseline for both curves: the blur gives our insertion
    m_ins = DeletionInsertionMetric(FixedMaps(model, maps), soft, steps=16,
                                    baseline=itp.metrics.blur_substrate)
    m_ins.update(x, class_idx=target)
    assert dele.mean().item() / 100 == pytest.approx(m_del.summary()["deletion_auc"], abs=1e-6)
    assert ins.mean().item() / 100 == pytest.approx(m_ins.summary()["insertion_auc"], abs=1e-6)


class _Shifted(nn.Module):
    """g(u) = f(u + black): torchcam's ``cam * input`` on u = x - black is our masking."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, u):
        return self.model(u + normalize(torch.zeros(1, 3, 1, 1, dtype=u.dtype)))


def test_average_drop_increase_match_torchcam(tiny):
    from torchcam.metrics import ClassificationMetric

    model, x = tiny
    maps = torch.rand(3, 16, 16)
    ad, _, ai = confidence_scores(model, x, maps, torch.tensor([1, 2, 3]))
    s = prepare_maps(maps, x)
    shifted = _Shifted(model)
    metric = ClassificationMetric(FixedMaps(shifted, s), partial(torch.softmax, dim=-1))
    metric.update(x - normalize(torch.zeros(1, 3, 1, 1, dtype=x.dtype)), class_idx=[1, 2, 3])
    summary = metric.summary()  # torchcam divides by Y + 1e-7
    assert ad.mean().item() / 100 == pytest.approx(summary["avg_drop"], rel=1e-5)
    assert ai.mean().item() / 100 == pytest.approx(summary["conf_increase"], abs=1e-12)


# ---------------------------------------------------------------------- hygiene


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


# ----------------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def cifar_model():
    torch.manual_seed(0)
    return itp.models.create("resnet18", width=0.125).eval()


def _rand_maps(model, x, target):
    g = torch.Generator().manual_seed(int(target.sum()))
    return torch.rand(x.shape[0], 4, 4, generator=g).to(x)


def _center_maps(model, x, target):
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    m = -((yy - 15.5) ** 2 + (xx - 15.5) ** 2)
    return m.expand(x.shape[0], 32, 32).clone()


class _CountingCAM:
    """CAM-style class: built on the model, context manager, counts images it explains."""

    instances: list = []

    def __init__(self, model):
        self.model, self.seen, self.exited = model, 0, False
        _CountingCAM.instances.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.exited = True

    def __call__(self, x, target):
        self.seen += x.shape[0]
        return _rand_maps(self.model, x, target)


def test_evaluate_rows_match_direct_calls(cifar_model, test_set):
    model = cifar_model
    methods = {"random": _rand_maps, "center": _center_maps}
    table = evaluate(model, test_set, methods, n_images=6, batch_size=4, step=128,
                     progress=False)
    assert list(table.columns) == list(itp.metrics.COLUMNS)
    assert len(table) == 12 and list(table["method"][:2]) == ["random", "center"]
    x, y = test_set.tensors(range(6))
    assert table["index"].tolist() == [i for i in range(6) for _ in range(2)]
    assert table["label"].tolist()[::2] == y.tolist()
    for name, fn in methods.items():
        rows = table[table.method == name]
        for sl in (slice(0, 4), slice(4, 6)):  # the batches evaluate used
            maps = fn(model, x[sl], y[sl])
            ad, ag, ai, yy, o = confidence_scores(model, x[sl], maps, y[sl], return_probs=True)
            ins, dele = insertion_deletion(model, x[sl], maps, y[sl], step=128)
            for col, val in (("ad", ad), ("ag", ag), ("ai", ai), ("Y", yy), ("O", o),
                             ("insertion", ins), ("deletion", dele)):
                np.testing.assert_allclose(rows[col].to_numpy()[sl], val.numpy(), atol=1e-5)
    assert table.groupby("method").size().tolist() == [6, 6]


def test_evaluate_score_model(cifar_model, test_set):
    """A BN-folded copy scores (almost) the same; the methods still explain the model."""
    import copy

    from torch.fx.experimental.optimization import fuse

    fused = fuse(copy.deepcopy(cifar_model))
    seen = []

    def method(model, x, target):
        seen.append(model)
        return _rand_maps(model, x, target)

    kw = dict(n_images=4, step=256, progress=False)
    a = evaluate(cifar_model, test_set, {"m": method}, **kw)
    b = evaluate(cifar_model, test_set, {"m": method}, score_model=fused, **kw)
    assert all(m is cifar_model for m in seen)
    cols = ["Y", "O", "insertion", "deletion"]
    np.testing.assert_allclose(a[cols].to_numpy(), b[cols].to_numpy(), atol=1e-4)


def test_evaluate_accepts_cam_classes_and_instances(cifar_model, test_set):
    _CountingCAM.instances.clear()
    inst = _CountingCAM(cifar_model)
    table = evaluate(cifar_model, test_set, {"cls": _CountingCAM, "inst": inst}, n_images=5,
                     batch_size=3, step=256, target="predicted", progress=False, as_frame=False)
    built = _CountingCAM.instances[1]
    assert built.exited and built.seen == 5 and inst.seen == 5 and not inst.exited
    assert isinstance(table, list) and len(table) == 10
    assert all(r["target"] == r["predicted"] for r in table)
    # the same random maps (seeded by the targets) give the same numbers for both
    assert [r["ad"] for r in table[0::2]] == [r["ad"] for r in table[1::2]]


def test_evaluate_with_real_cams(cifar_model, test_set):
    from interpretable.attribution import GradCAM

    with torch.no_grad():  # evaluate enables gradients for the methods itself
        table = evaluate(cifar_model, test_set, {"gradcam": GradCAM}, n_images=4,
                         batch_size=4, step=256, progress=False)
    assert table[list(itp.metrics.METRICS)].notna().all().all()
    assert not cifar_model.training


def test_evaluate_resume(cifar_model, test_set, tmp_path):
    out = tmp_path / "res.csv"
    calls = {"n": 0}

    def flaky(model, x, target):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("interrupted")
        return _rand_maps(model, x, target)

    kwargs = dict(n_images=10, batch_size=4, step=256, progress=False, out=out)
    with pytest.raises(RuntimeError, match="interrupted"):
        evaluate(cifar_model, test_set, {"m": flaky}, **kwargs)
    partial_rows = out.read_text().strip().splitlines()
    assert len(partial_rows) == 1 + 8  # header + two finished batches
    seen = []

    def counting(model, x, target):
        seen.append(x.shape[0])
        return _rand_maps(model, x, target)

    resumed = evaluate(cifar_model, test_set, {"m": counting}, **kwargs)
    assert seen == [2]  # only the last two images were computed
    fresh = evaluate(cifar_model, test_set, {"m": _rand_maps}, n_images=10, batch_size=4,
                     step=256, progress=False, out=tmp_path / "fresh.json")
    cols = ["index", "ad", "ag", "ai", "insertion", "deletion", "Y", "O"]
    np.testing.assert_allclose(resumed[cols].to_numpy(), fresh[cols].to_numpy(), atol=1e-6)
    # the JSON file resumes too, and rereads exactly what it wrote
    data = json.loads((tmp_path / "fresh.json").read_text())
    assert data["meta"]["step"] == 256 and len(data["rows"]) == 10
    again = evaluate(cifar_model, test_set, {"m": flaky}, n_images=10, batch_size=4, step=256,
                     progress=False, out=tmp_path / "fresh.json")
    assert again.equals(fresh)
    # other settings or another model's weights: refuse to mix
    with pytest.raises(ValueError, match="other settings"):
        evaluate(cifar_model, test_set, {"m": counting}, n_images=10, batch_size=4, step=128,
                 progress=False, out=out)
    torch.manual_seed(1)
    other = itp.models.create("resnet18", width=0.125).eval()
    with pytest.raises(ValueError, match="weights_sha1"):
        evaluate(other, test_set, {"m": counting}, **kwargs)
    evaluate(cifar_model, test_set, {"m": counting}, n_images=2, batch_size=4, step=128,
             progress=False, out=out, resume=False)
    assert len(out.read_text().strip().splitlines()) == 3


def test_evaluate_errors_and_selection(cifar_model, test_set):
    m = {"r": _rand_maps}
    with pytest.raises(ValueError, match="empty"):
        evaluate(cifar_model, Subset(test_set, []), m, progress=False)
    with pytest.raises(ValueError, match="larger than the dataset"):
        evaluate(cifar_model, Subset(test_set, range(5)), m, n_images=6, progress=False)
    with pytest.raises(ValueError, match="target"):
        evaluate(cifar_model, test_set, m, n_images=2, target="true", progress=False)
    with pytest.raises(ValueError, match="non-empty"):
        evaluate(cifar_model, test_set, {}, n_images=2, progress=False)
    with pytest.raises(ValueError, match="divide"):
        evaluate(cifar_model, test_set, m, n_images=2, step=100, progress=False)
    with pytest.raises(ValueError, match=r"\.csv, \.csv\.gz or \.json"):
        evaluate(cifar_model, test_set, m, n_images=2, out="x.txt", progress=False)
    with pytest.raises(ValueError, match="method 'bad'"):
        evaluate(cifar_model, test_set, {"bad": lambda model, x, t: torch.rand(len(x) + 1, 4, 4)},
                 n_images=2, progress=False)
    table = evaluate(cifar_model, test_set, m, n_images=4, seed=1, curves=False, progress=False)
    idx = table["index"].tolist()
    assert idx == sorted(idx) and len(set(idx)) == 4 and idx != [0, 1, 2, 3]
    assert table["insertion"].isna().all() and table["ad"].notna().all()
    # a generic dataset (not CIFAR) goes through item-by-item loading
    x, y = test_set.tensors(range(3))
    t2 = evaluate(cifar_model, TensorDataset(x, y), m, n_images=3, step=256, progress=False)
    t1 = evaluate(cifar_model, test_set, m, n_images=3, step=256, progress=False)
    np.testing.assert_allclose(t1[["ad", "deletion"]].to_numpy(), t2[["ad", "deletion"]].to_numpy(),
                               atol=1e-5)


def test_summarize_and_paper_table():
    rows = []
    vals = {"A": [10.0, 20.0, 40.0], "B": [1.0, 2.0, 3.0]}
    for method, v in vals.items():
        for i, val in enumerate(v):
            rows.append({"index": i, "label": 0, "predicted": 0, "target": 0, "method": method,
                         "Y": 0.5, "O": 0.4, "ad": val, "ag": 2 * val, "ai": 100.0 * (i % 2),
                         "insertion": val, "deletion": math.nan})
    summary = summarize(rows)
    a_ad = next(s for s in summary if s["method"] == "A" and s["metric"] == "ad")
    from scipy import stats

    v = np.array(vals["A"])
    assert a_ad["mean"] == pytest.approx(v.mean())
    assert a_ad["sem"] == pytest.approx(stats.sem(v))
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert (a_ad["ci_low"], a_ad["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    dele = next(s for s in summary if s["method"] == "B" and s["metric"] == "deletion")
    assert dele["n"] == 0 and math.isnan(dele["mean"])
    table = paper_table(rows)
    assert list(table) == ["A", "B"] and list(table["A"]) == ["AD", "AG", "AI", "Ins", "Del"]
    assert table["B"]["AG"] == pytest.approx(4.0) and table["A"]["AI"] == pytest.approx(100 / 3)
    import pandas as pd

    frame = paper_table(pd.DataFrame(rows), ci=True)
    assert list(frame.columns) == ["AD", "AG", "AI", "Ins", "Del"]
    assert frame.loc["B", "AD"] == f"2.00 ± {stats.t.ppf(0.975, 2) * stats.sem([1, 2, 3]):.2f}"


def test_accuracy(cifar_model, test_set):
    sub = Subset(test_set, range(50))
    acc = accuracy(cifar_model, sub, topk=(1, 5, 100), batch_size=16)
    x, y = test_set.tensors(range(50))
    with torch.no_grad():
        logits = cifar_model(x)
    top5 = logits.topk(5, 1).indices
    assert acc["n"] == 50
    assert acc["top1"] == pytest.approx(100 * (logits.argmax(1) == y).float().mean().item())
    assert acc["top5"] == pytest.approx(100 * (top5 == y[:, None]).any(1).float().mean().item())
    assert acc["top100"] == 100.0
    loader = [(x[:20], y[:20]), (x[20:], y[20:])]
    assert accuracy(cifar_model, loader)["top1"] == acc["top1"]
    with pytest.raises(ValueError, match="exceeds"):
        accuracy(cifar_model, loader, topk=(101,))
    with pytest.raises(ValueError, match="topk"):
        accuracy(cifar_model, loader, topk=(0,))


def test_evaluate_explicit_indices_and_out_of_order_resume(cifar_model, test_set, tmp_path):
    from interpretable.metrics import _results

    m = {"r": _rand_maps, "c": _center_maps}
    kw = dict(batch_size=2, step=256, progress=False, as_frame=False)
    rows = evaluate(cifar_model, test_set, m, indices=[7, 3, 5], **kw)
    assert [r["index"] for r in rows] == [7, 7, 3, 3, 5, 5]
    assert [r["method"] for r in rows[:2]] == ["r", "c"]
    by_n = evaluate(cifar_model, test_set, m, n_images=8, **kw)
    # Another batch composition changes the forward pass by float rounding only, by how much
    # depends on the CPU's kernels (AD: 8.8e-6 points seen for an image recomputed alone), so
    # "the same numbers" means within the AD tolerance verify_results uses.
    tol = TOLERANCES["ad"]
    for r in rows[1::2]:  # center maps: the same numbers as in another selection
        twin = next(t for t in by_n if (t["index"], t["method"]) == (r["index"], r["method"]))
        assert r["ad"] == pytest.approx(twin["ad"], abs=tol)
    for bad in ([], [1, 1], [10_000], [True], [1.5]):
        with pytest.raises(ValueError, match="indices"):
            evaluate(cifar_model, test_set, m, indices=bad, **kw)
    with pytest.raises(ValueError, match="either indices or n_images"):
        evaluate(cifar_model, test_set, m, indices=[1], n_images=1, **kw)
    # a file whose finished images are not a prefix of the selection ends up in order
    out = tmp_path / "r.csv.gz"
    full = evaluate(cifar_model, test_set, m, indices=[3, 5, 7], out=out, **kw)
    stored, meta = _results.read(out)
    assert repr(stored) == repr(full)
    _results.save(out, [r for r in stored if r["index"] != 3], meta)
    resumed = evaluate(cifar_model, test_set, m, indices=[3, 5, 7], out=out, **kw)
    assert [r["index"] for r in resumed] == [3, 3, 5, 5, 7, 7]
    assert repr(_results.read(out)[0]) == repr(resumed)
    # (the random maps are seeded by the batch's targets: compare the center maps)
    np.testing.assert_allclose([r["ad"] for r in resumed[1::2]], [r["ad"] for r in full[1::2]],
                               atol=tol)
