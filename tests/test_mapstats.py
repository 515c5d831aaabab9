"""interpretable.mapstats against slow independent references (loops, numpy, scipy, skimage)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import sobel
from scipy.stats import pearsonr, spearmanr
from skimage.metrics import structural_similarity

import interpretable as itp
from interpretable import mapstats


def _maps(seed=0, b=4, shape=(8, 9)):
    return torch.randn((b, *shape), generator=torch.Generator().manual_seed(seed))


def test_correlation_matches_scipy_per_image():
    a, b = _maps(0), _maps(1)
    b[1] = 2 * a[1] + 1  # perfectly correlated
    b[2] = -a[2]
    ours = mapstats.correlation(a, b)
    ref = [pearsonr(u.ravel(), v.ravel())[0] for u, v in zip(a.numpy(), b.numpy(), strict=True)]
    assert ours.shape == (4,)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6)
    assert ours[1] == pytest.approx(1) and ours[2] == pytest.approx(-1)


def test_correlation_of_a_flat_map():
    a, b = _maps(0), _maps(1)
    a[0] = 3.0
    r = mapstats.correlation(a, b)
    assert torch.isnan(r[0]) and torch.isfinite(r[1:]).all()
    assert mapstats.correlation(a, b, flat=0.0)[0] == 0


def test_spearman_matches_scipy_with_ties():
    a, b = _maps(2), _maps(3)
    a = (a * 2).round().clamp_min(0)  # many ties, like ReLU'd maps
    b = (b * 2).round()
    ours = mapstats.spearman(a, b)
    ref = [spearmanr(u.ravel(), v.ravel())[0] for u, v in zip(a.numpy(), b.numpy(), strict=True)]
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6)


def test_spearman_conventions_for_identical_and_constant_maps():
    a, b = _maps(4), _maps(5)
    a[0] = b[0] = 0.0      # identical constant maps
    a[1] = 0.0             # a constant map against a varying one
    b[2] = a[2] ** 3       # monotone transform: the same ranking
    r = mapstats.spearman(a, b)
    assert r[0] == 1 and r[1] == 0 and r[2] == pytest.approx(1)


def test_ssim_matches_skimage():
    a = torch.rand(3, 16, 20, generator=torch.Generator().manual_seed(6))
    b = (a + 0.2 * torch.rand(3, 16, 20, generator=torch.Generator().manual_seed(7))).clamp(0, 1)
    b[2] = 1 - a[2]
    ours = mapstats.ssim(a, b)
    ref = [structural_similarity(u, v, data_range=1.0)
           for u, v in zip(a.double().numpy(), b.double().numpy(), strict=True)]
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)
    assert mapstats.ssim(a, a).numpy() == pytest.approx(1)


def test_cosine_matches_a_loop():
    a, b = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    ref = [float(np.dot(u.ravel(), v.ravel()) / np.linalg.norm(u) / np.linalg.norm(v))
           for u, v in zip(a.double().numpy(), b.double().numpy(), strict=True)]
    np.testing.assert_allclose(mapstats.cosine(a, b).numpy(), ref, atol=1e-6)


def test_roughness_and_negative_share_match_loops():
    g = torch.randn(3, 3, 5, 6, generator=torch.Generator().manual_seed(8))
    rough, neg = [], []
    for img in g.double().numpy():
        c, h, w = img.shape
        dx = sum(abs(img[k, i, j + 1] - img[k, i, j]) for k in range(c) for i in range(h)
                 for j in range(w - 1)) / (c * h * (w - 1))
        dy = sum(abs(img[k, i + 1, j] - img[k, i, j]) for k in range(c) for i in range(h - 1)
                 for j in range(w)) / (c * (h - 1) * w)
        rough.append(0.5 * (dx + dy) / np.abs(img).mean())
        neg.append(-img[img < 0].sum() / np.abs(img).sum())
    np.testing.assert_allclose(mapstats.roughness(g).numpy(), rough, rtol=1e-5)
    np.testing.assert_allclose(mapstats.negative_share(g).numpy(), neg, rtol=1e-5)
    assert mapstats.roughness(torch.ones(2, 4, 4)).tolist() == [0, 0]
    assert mapstats.negative_share(torch.ones(1, 4)).item() == 0
    assert mapstats.negative_share(-torch.ones(1, 4)).item() == 1


def test_lattice_concentration_matches_a_loop_and_hand_cases():
    g = torch.randn(3, 2, 7, 9, generator=torch.Generator().manual_seed(10))
    for period in (1, 2, 3):
        ref = []
        for img in np.abs(g.double().numpy()):
            h, w = img.shape[1] // period * period, img.shape[2] // period * period
            img = img[:, :h, :w]
            tot = [img[:, a::period, b::period].sum() for a in range(period)
                   for b in range(period)]
            ref.append(period**2 * max(tot) / sum(tot))
        np.testing.assert_allclose(mapstats.lattice_concentration(g, period).numpy(), ref,
                                   rtol=1e-5)
    even = torch.ones(2, 4, 6)
    dots = torch.zeros(2, 4, 6)
    dots[:, 1::2, 0::2] = 3.0                    # all magnitude on one of the 4 lattices
    assert mapstats.lattice_concentration(even).tolist() == [1, 1]
    assert mapstats.lattice_concentration(dots).tolist() == [4, 4]
    assert mapstats.lattice_concentration(-dots[:, None]).tolist() == [4, 4]  # (B, C, H, W)
    with pytest.raises(ValueError, match="period"):
        mapstats.lattice_concentration(even, period=5)


def test_edge_strength_matches_scipy_sobel():
    pixels = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    ours = mapstats.edge_strength(pixels, denormalize=False)
    ref = []
    for img in pixels.double().numpy():
        grey = img.mean(0)
        # scipy's sobel along axis 1 is the filter [-1, 0, 1] (x) [1, 2, 1]: ours up to sign
        ref.append(np.hypot(sobel(grey, axis=1, mode="nearest"),
                            sobel(grey, axis=0, mode="nearest")))
    np.testing.assert_allclose(ours.numpy(), np.stack(ref), atol=1e-5)
    x = itp.data.normalize(pixels)
    torch.testing.assert_close(mapstats.edge_strength(x), ours, atol=1e-5, rtol=1e-5)


def test_is_empty():
    m = torch.zeros(3, 4, 4)
    m[1, 2, 2] = 0.1
    m[2] = -1
    assert mapstats.is_empty(m).tolist() == [True, False, True]


def test_gradient_cosine_matches_per_image_calls():
    torch.manual_seed(0)
    model = itp.models.create("resnet18", num_classes=10, width=0.125).eval()
    x, y = torch.randn(5, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4])
    ours = mapstats.gradient_cosine(model, x, y, batch=2)
    ref = []
    for i in range(len(x)):
        g = itp.attribution.gradient(model, x[i:i + 1], y[i:i + 1]).double().ravel()
        gg = itp.attribution.guided_backprop(model, x[i:i + 1], y[i:i + 1]).double().ravel()
        ref.append(float(g @ gg / g.norm() / gg.norm()))
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)
    assert ours.shape == (5,)
    with pytest.raises(ValueError, match="target"):
        mapstats.gradient_cosine(model, x, y[:3])


def test_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        mapstats.cosine(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(TypeError, match="a must be a torch.Tensor"):
        mapstats.correlation(np.zeros((2, 3)), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="win_size"):
        mapstats.ssim(torch.zeros(1, 5, 5), torch.zeros(1, 5, 5))
