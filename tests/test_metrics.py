"""Metrics (METHODS.md section 5): AD/AG/AI and insertion/deletion of a batch.

Checked against (a) a slow reference (``_references.py``: one image, one curve point per
forward, pixel-space masking, Python's stable ``sorted`` for the ranking, numpy's trapezoid),
(b) hand-computed softmax values of constructed linear models, (c) torchcam's
``DeletionInsertionMetric`` and ``ClassificationMetric`` on the same maps. The conventions as
options: ``test_conventions.py``; inputs, modes and forwards: ``test_metric_inputs.py``;
``evaluate`` and accuracy: ``test_evaluate.py``.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _metric_models import RegionNet, pixel_image, tiny_setup
from _references import ref_confidence, ref_curves
from torch import nn
from torchvision.transforms.functional import gaussian_blur

import interpretable as itp
from benchmarks.common import FixedMaps
from interpretable.data import normalize
from interpretable.metrics import (
    auc,
    confidence_scores,
    insertion_deletion,
    prepare_maps,
)


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
    x = normalize(pixel_image(1, h, w))
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


