"""interpretable.analysis against slow independent references (loops, numpy, scipy, skimage)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import sobel
from scipy.stats import pearsonr, spearmanr
from skimage.metrics import structural_similarity

import interpretable as itp
from interpretable import analysis


def _maps(seed=0, b=4, shape=(8, 9)):
    return torch.randn((b, *shape), generator=torch.Generator().manual_seed(seed))


def test_correlation_matches_scipy_per_image():
    a, b = _maps(0), _maps(1)
    b[1] = 2 * a[1] + 1  # perfectly correlated
    b[2] = -a[2]
    ours = analysis.correlation(a, b)
    ref = [pearsonr(u.ravel(), v.ravel())[0] for u, v in zip(a.numpy(), b.numpy(), strict=True)]
    assert ours.shape == (4,)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6)
    assert ours[1] == pytest.approx(1) and ours[2] == pytest.approx(-1)


def test_correlation_of_a_flat_map():
    a, b = _maps(0), _maps(1)
    a[0] = 3.0
    r = analysis.correlation(a, b)
    assert torch.isnan(r[0]) and torch.isfinite(r[1:]).all()
    assert analysis.correlation(a, b, flat=0.0)[0] == 0


def test_spearman_matches_scipy_with_ties():
    a, b = _maps(2), _maps(3)
    a = (a * 2).round().clamp_min(0)  # many ties, like ReLU'd maps
    b = (b * 2).round()
    ours = analysis.spearman(a, b)
    ref = [spearmanr(u.ravel(), v.ravel())[0] for u, v in zip(a.numpy(), b.numpy(), strict=True)]
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6)


def test_spearman_conventions_for_identical_and_constant_maps():
    a, b = _maps(4), _maps(5)
    a[0] = b[0] = 0.0      # identical constant maps
    a[1] = 0.0             # a constant map against a varying one
    b[2] = a[2] ** 3       # monotone transform: the same ranking
    r = analysis.spearman(a, b)
    assert r[0] == 1 and r[1] == 0 and r[2] == pytest.approx(1)


def test_ssim_matches_skimage():
    a = torch.rand(3, 16, 20, generator=torch.Generator().manual_seed(6))
    b = (a + 0.2 * torch.rand(3, 16, 20, generator=torch.Generator().manual_seed(7))).clamp(0, 1)
    b[2] = 1 - a[2]
    ours = analysis.ssim(a, b)
    ref = [structural_similarity(u, v, data_range=1.0)
           for u, v in zip(a.double().numpy(), b.double().numpy(), strict=True)]
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)
    assert analysis.ssim(a, a).numpy() == pytest.approx(1)


def test_cosine_matches_a_loop():
    a, b = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    ref = [float(np.dot(u.ravel(), v.ravel()) / np.linalg.norm(u) / np.linalg.norm(v))
           for u, v in zip(a.double().numpy(), b.double().numpy(), strict=True)]
    np.testing.assert_allclose(analysis.cosine(a, b).numpy(), ref, atol=1e-6)


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
    np.testing.assert_allclose(analysis.roughness(g).numpy(), rough, rtol=1e-5)
    np.testing.assert_allclose(analysis.negative_share(g).numpy(), neg, rtol=1e-5)
    assert analysis.roughness(torch.ones(2, 4, 4)).tolist() == [0, 0]
    assert analysis.negative_share(torch.ones(1, 4)).item() == 0
    assert analysis.negative_share(-torch.ones(1, 4)).item() == 1


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
        np.testing.assert_allclose(analysis.lattice_concentration(g, period).numpy(), ref,
                                   rtol=1e-5)
    even = torch.ones(2, 4, 6)
    dots = torch.zeros(2, 4, 6)
    dots[:, 1::2, 0::2] = 3.0                    # all magnitude on one of the 4 lattices
    assert analysis.lattice_concentration(even).tolist() == [1, 1]
    assert analysis.lattice_concentration(dots).tolist() == [4, 4]
    assert analysis.lattice_concentration(-dots[:, None]).tolist() == [4, 4]  # (B, C, H, W)
    with pytest.raises(ValueError, match="period"):
        analysis.lattice_concentration(even, period=5)


def test_edge_strength_matches_scipy_sobel():
    pixels = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    ours = analysis.edge_strength(pixels, denormalize=False)
    ref = []
    for img in pixels.double().numpy():
        grey = img.mean(0)
        # scipy's sobel along axis 1 is the filter [-1, 0, 1] (x) [1, 2, 1]: ours up to sign
        ref.append(np.hypot(sobel(grey, axis=1, mode="nearest"),
                            sobel(grey, axis=0, mode="nearest")))
    np.testing.assert_allclose(ours.numpy(), np.stack(ref), atol=1e-5)
    x = itp.data.normalize(pixels)
    torch.testing.assert_close(analysis.edge_strength(x), ours, atol=1e-5, rtol=1e-5)


def test_is_empty():
    m = torch.zeros(3, 4, 4)
    m[1, 2, 2] = 0.1
    m[2] = -1
    assert analysis.is_empty(m).tolist() == [True, False, True]


def test_gradient_cosine_matches_per_image_calls():
    torch.manual_seed(0)
    model = itp.models.create("resnet18", num_classes=10, width=0.125).eval()
    x, y = torch.randn(5, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4])
    ours = analysis.gradient_cosine(model, x, y, batch=2)
    ref = []
    for i in range(len(x)):
        g = itp.attribution.gradient(model, x[i:i + 1], y[i:i + 1]).double().ravel()
        gg = itp.attribution.guided_backprop(model, x[i:i + 1], y[i:i + 1]).double().ravel()
        ref.append(float(g @ gg / g.norm() / gg.norm()))
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)
    assert ours.shape == (5,)
    with pytest.raises(ValueError, match="target"):
        analysis.gradient_cosine(model, x, y[:3])


def test_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        analysis.cosine(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(TypeError, match="a must be a torch.Tensor"):
        analysis.correlation(np.zeros((2, 3)), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="win_size"):
        analysis.ssim(torch.zeros(1, 5, 5), torch.zeros(1, 5, 5))


# -- paired_comparison ---------------------------------------------------------------------
def _table(seed, n=30, methods=("Grad-CAM", "FastCAM"), shift=None):
    """An evaluate-style tidy table (list of row dicts) with random metric values."""
    g = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        for m in methods:
            r = {"index": 100 + i, "method": m, "label": 1, "predicted": 1, "target": 1}
            for col in analysis.BETTER:
                r[col] = float(g.uniform(0, 100)) + (shift or {}).get((m, col), 0.0)
            rows.append(r)
    return rows


def test_paired_comparison_matches_scipy_ttest_rel():
    import pandas as pd
    from scipy.stats import ttest_rel

    base = pd.DataFrame(_table(0))
    # other: the same images, paired noise plus a clear shift for two cells
    other = base.copy()
    g = np.random.default_rng(1)
    for col in analysis.BETTER:
        other[col] = base[col] + g.normal(0, 3, len(base))
    fc = other["method"] == "FastCAM"
    other.loc[fc, "ad"] += 10       # AD up: worse
    other.loc[fc, "insertion"] += 10  # Ins up: better
    other = other.sample(frac=1, random_state=0).iloc[:-4]  # shuffled, 4 rows fewer
    res = analysis.paired_comparison(base, other)
    assert isinstance(res, pd.DataFrame)
    assert list(res.columns) == ["method", "metric", "difference", "ci half-width", "ci low",
                                 "ci high", "images", "verdict", "bonferroni verdict"]
    assert res["method"].tolist() == ["Grad-CAM"] * 5 + ["FastCAM"] * 5
    assert res["metric"].tolist() == ["AD", "AG", "AI", "Ins", "Del"] * 2
    names = {"AD": "ad", "AG": "ag", "AI": "ai", "Ins": "insertion", "Del": "deletion"}
    for _, row in res.iterrows():
        b = base[base.method == row["method"]].set_index("index")
        o = other[other.method == row["method"]].set_index("index")
        shared = b.index.intersection(o.index)
        col = names[row["metric"]]
        t = ttest_rel(o.loc[shared, col], b.loc[shared, col])
        ci = t.confidence_interval(0.95)
        assert row["images"] == len(shared)
        assert row["difference"] == pytest.approx((o.loc[shared, col] - b.loc[shared, col]).mean())
        assert row["ci low"] == pytest.approx(ci.low) and row["ci high"] == pytest.approx(ci.high)
        assert row["ci half-width"] == pytest.approx((ci.high - ci.low) / 2)
        sign = analysis.BETTER[col]
        for key, alpha in (("verdict", 0.05), ("bonferroni verdict", 0.05 / len(res))):
            if t.pvalue >= alpha:
                assert row[key] == "no clear difference"
            else:
                assert row[key] == ("better" if sign * t.statistic > 0 else "worse")
    verdicts = res.set_index(["method", "metric"])["verdict"]
    assert verdicts[("FastCAM", "AD")] == "worse" and verdicts[("FastCAM", "Ins")] == "better"


def test_paired_comparison_hand_computed():
    def rows(values):
        return [{"index": i, "method": "m", "ag": v, "ad": v} for i, v in enumerate(values)]

    base = rows([10.0, 20.0, 30.0])
    # differences 2, 3, 4: mean 3, s = 1, t_{0.975, 2} = 4.302652729911275, half 2.484 < 3
    res = analysis.paired_comparison(base, rows([12.0, 23.0, 34.0]), better={"ag": 1, "ad": -1})
    assert isinstance(res, list) and [r["metric"] for r in res] == ["AG", "AD"]
    half = 4.302652729911275 / np.sqrt(3)
    for r in res:
        assert r["difference"] == pytest.approx(3.0) and r["images"] == 3
        assert r["ci half-width"] == pytest.approx(half)
        assert r["ci low"] == pytest.approx(3 - half) and r["ci high"] == pytest.approx(3 + half)
    assert [r["verdict"] for r in res] == ["better", "worse"]  # higher AG good, higher AD bad
    # Bonferroni over the 2 cells: level 0.975, t_{0.9875, 2} = 6.2053 / sqrt(3) = 3.583 > 3
    assert [r["bonferroni verdict"] for r in res] == ["no clear difference"] * 2
    # differences 4, 5, 6: mean 5 > 3.583, the corrected interval excludes 0 too
    res = analysis.paired_comparison(base, rows([14.0, 25.0, 36.0]), better={"ag": 1, "ad": -1})
    assert [r["bonferroni verdict"] for r in res] == ["better", "worse"]
    single = analysis.paired_comparison(base, rows([12.0, 23.0, 34.0]), better={"ag": 1})[0]
    assert single["bonferroni verdict"] == single["verdict"]  # one cell: nothing to correct
    # differences 1, -1, 2: the interval covers 0
    res = analysis.paired_comparison(base, rows([11.0, 19.0, 32.0]), better={"ag": 1})
    assert res[0]["verdict"] == "no clear difference"
    assert res[0]["difference"] == pytest.approx(2 / 3)
    # one image: no interval, no verdict; NaN pairs are skipped
    one = analysis.paired_comparison(rows([1.0]), rows([5.0]), better={"ag": 1})[0]
    assert one["images"] == 1 and np.isnan(one["ci half-width"])
    assert one["verdict"] == one["bonferroni verdict"] == "no clear difference"
    nan = analysis.paired_comparison(base, rows([12.0, float("nan"), 34.0]), better={"ag": 1})
    assert nan[0]["images"] == 2 and nan[0]["difference"] == pytest.approx(3.0)


def test_paired_comparison_errors():
    base = _table(0, n=3)
    with pytest.raises(ValueError, match="share no"):
        analysis.paired_comparison(base, _table(1, n=3, methods=("Score-CAM",)))
    with pytest.raises(ValueError, match="more than one row"):
        analysis.paired_comparison(base + base[:1], base)
    with pytest.raises(ValueError, match=r"better\['ad'\] must be \+1"):
        analysis.paired_comparison(base, base, better={"ad": 0})
    with pytest.raises(ValueError, match="no column 'speed'"):
        analysis.paired_comparison(base, base, better={"speed": 1})
    with pytest.raises(TypeError, match="other must be a DataFrame or a list"):
        analysis.paired_comparison(base, "table.csv")
    with pytest.raises(ValueError, match="confidence"):
        analysis.paired_comparison(base, base, confidence=95)
