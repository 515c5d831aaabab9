"""Visualization: LOVI colouring on constructed stacks (METHODS.md section 4), heat maps,
overlays, denormalized images and figure grids."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.colors import hsv_to_rgb as mpl_hsv_to_rgb
from matplotlib.colors import rgb_to_hsv

import interpretable as itp
from interpretable.viz import heatmap, hsv_to_rgb, lovi, overlay, show_grid, to_image


def lovi_reference(stack: np.ndarray, w=None) -> np.ndarray:
    """METHODS.md section 4 for one (L, H, W) stack, in float64 numpy with matplotlib's HSV."""
    p = stack.astype(np.float64)
    if p.max() > p.min():
        p = (p - p.min()) / (p.max() - p.min())
    if w is not None:
        p = p * np.asarray(w, dtype=np.float64)[:, None, None]
    n = p.shape[0]
    pos = 1.0 - np.arange(n) / (n - 1)
    total, peak = p.sum(0), p.max(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        hue = np.where(total > 0, (p * pos[:, None, None]).sum(0) / total, 0.0)  # in [0, 1]
        sat = np.where(peak > 0, 1.0 - (total / (n * peak) - 1.0 / n) / (1.0 - 1.0 / n), 0.0)
    hsv = np.stack([hue * 300.0 / 360.0, np.clip(sat, 0, 1), np.clip(peak, 0, 1)], -1)
    return mpl_hsv_to_rgb(hsv)


@pytest.mark.parametrize("n_layers", [2, 3, 5])
def test_lovi_single_active_layer_has_its_hue(n_layers):
    for i in range(n_layers):
        stack = torch.zeros(n_layers, 4, 4)
        stack[i, 1:3, 1:3] = 1.0
        rgb = lovi(stack)
        assert rgb.shape == (4, 4, 3)
        h, s, v = rgb_to_hsv(rgb.numpy())[1, 1]
        expected = 300.0 * (1 - i / (n_layers - 1))
        assert h * 360.0 == pytest.approx(expected % 360.0, abs=1e-3)
        assert s == pytest.approx(1.0) and v == pytest.approx(1.0)
        assert (rgb[0, 0] == 0).all()  # nothing active -> black


def test_lovi_equal_activity_is_white_and_zero_is_black():
    stack = torch.zeros(5, 3, 3)
    stack[:, 0, 0] = 0.7  # the joint maximum, equal in every layer
    rgb = lovi(stack)
    torch.testing.assert_close(rgb[0, 0], torch.ones(3))
    assert (rgb[1:, :] == 0).all() and (rgb[:, 1:] == 0).all()
    assert (lovi(torch.zeros(5, 3, 3)) == 0).all()
    assert torch.isfinite(lovi(torch.zeros(5, 3, 3))).all()
    # equally active but weaker: white shaded to grey, still unsaturated
    stack[:, 1, 1] = 0.35
    g = lovi(stack)[1, 1]
    torch.testing.assert_close(g, torch.full((3,), 0.5))


def test_lovi_matches_reference_on_random_stacks_and_batches():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 5, 6, 7, generator=g) ** 2
    w = [0.18, 0.15, 0.37, 0.4, 0.72]
    out = lovi(maps, w=w)
    assert out.shape == (3, 6, 7, 3)
    for b in range(3):
        np.testing.assert_allclose(out[b].numpy(), lovi_reference(maps[b].numpy(), w), atol=1e-5)
        torch.testing.assert_close(out[b], lovi(maps[b], w=w))
    # numpy in, numpy out
    res = lovi(maps[0].numpy())
    assert isinstance(res, np.ndarray) and res.shape == (6, 7, 3)
    np.testing.assert_allclose(res, lovi_reference(maps[0].numpy()), atol=1e-5)


def test_lovi_blend_weights_and_errors():
    maps = torch.rand(4, 8, 8)
    img = torch.rand(3, 8, 8)
    plain = lovi(maps)
    torch.testing.assert_close(lovi(maps, image=img), 0.75 * plain + 0.25 * img.permute(1, 2, 0))
    torch.testing.assert_close(lovi(maps, image=img.permute(1, 2, 0)), lovi(maps, image=img))
    torch.testing.assert_close(lovi(maps, image=img, alpha=1.0), plain)
    batch = torch.rand(2, 4, 8, 8)
    imgs = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(lovi(batch, image=imgs)[1], lovi(batch[1], image=imgs[1]))
    # a zero weight removes a layer: same colours as a stack without it (joint range aside)
    solo = torch.zeros(3, 2, 2)
    solo[0] = 1.0
    solo[2] = 1.0
    assert rgb_to_hsv(lovi(solo, w=[0, 0, 1]).numpy())[0, 0, 0] == pytest.approx(0.0)
    assert rgb_to_hsv(lovi(solo, w=[1, 0, 0]).numpy())[0, 0, 0] * 360 == pytest.approx(300.0)
    with pytest.raises(ValueError, match="one weight per layer"):
        lovi(maps, w=[1, 2])
    with pytest.raises(ValueError, match="non-negative"):
        lovi(maps, w=[1, -1, 1, 1])
    with pytest.raises(ValueError, match=r"\(L, H, W\)"):
        lovi(torch.rand(8, 8))
    with pytest.raises(ValueError, match="pixels like the maps"):
        lovi(maps, image=torch.rand(3, 16, 16))
    single = lovi(torch.rand(1, 4, 4))  # one layer: grey levels, no NaN
    assert torch.isfinite(single).all()
    torch.testing.assert_close(single[..., 0], single[..., 2])


def test_hsv_to_rgb_matches_matplotlib():
    g = torch.Generator().manual_seed(1)
    h, s, v = torch.rand(3, 50, generator=g)
    ours = hsv_to_rgb(h * 360.0, s, v)
    ref = mpl_hsv_to_rgb(torch.stack([h, s, v], -1).numpy())
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6)


def test_heatmap_uses_the_colormap():
    maps = torch.rand(2, 5, 5)
    rgb = heatmap(maps, cmap="viridis")
    assert rgb.shape == (2, 5, 5, 3)
    for b in range(2):
        m = maps[b]
        norm = ((m - m.min()) / (m.max() - m.min())).numpy()
        ref = matplotlib.colormaps["viridis"](norm)[..., :3]
        np.testing.assert_allclose(rgb[b].numpy(), ref, atol=0.02)  # 256-entry table
    assert (heatmap(torch.zeros(4, 4)) == heatmap(torch.zeros(4, 4))[0, 0]).all()
    assert isinstance(heatmap(np.random.rand(3, 3)), np.ndarray)


def test_overlay_formula_resizing_and_layouts():
    img = torch.rand(3, 8, 8)
    heat = torch.rand(8, 8)
    out = overlay(img, heat, alpha=0.4, cmap="jet")
    ref = 0.6 * img.permute(1, 2, 0) + 0.4 * heatmap(heat, cmap="jet")
    torch.testing.assert_close(out, ref.clamp(0, 1))
    torch.testing.assert_close(overlay(img.permute(1, 2, 0), heat), overlay(img, heat))
    small = torch.rand(4, 4)  # a raw 4x4 CAM on a 8x8 image
    assert overlay(img, small).shape == (8, 8, 3)
    batch = overlay(torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8))
    assert batch.shape == (2, 8, 8, 3)
    with pytest.raises(ValueError, match="alpha"):
        overlay(img, heat, alpha=2.0)
    with pytest.raises(ValueError, match="3 colour channels"):
        overlay(torch.rand(4, 8, 8), heat)


def test_to_image_denormalizes():
    x01 = torch.rand(2, 3, 6, 6)
    x = itp.data.normalize(x01)
    img = to_image(x)
    assert isinstance(img, np.ndarray) and img.shape == (2, 6, 6, 3)
    np.testing.assert_allclose(img, x01.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(to_image(x[1]), img[1], atol=1e-7)
    assert to_image(torch.full((3, 2, 2), 100.0)).max() == 1.0
    with pytest.raises(ValueError, match="x must be"):
        to_image(torch.rand(2, 6, 6))


def test_show_grid_builds_a_figure_without_pyplot():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    before = plt.get_fignums()
    x = itp.data.normalize(torch.rand(3, 3, 8, 8))
    maps = {"cam": torch.rand(3, 8, 8), "lovi": lovi(torch.rand(3, 5, 8, 8)),
            "raw": torch.rand(3, 2, 2)}
    fig = show_grid(x, maps, row_labels=["a", "b", "c"])
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * 4 + 1  # + the shared colourbar
    assert fig.axes[-1].get_ylabel().startswith("relative importance")
    assert len(show_grid(x, maps, colorbar=False).axes) == 3 * 4
    assert [ax.get_title() for ax in fig.axes[:4]] == ["image", "cam", "lovi", "raw"]
    assert len(show_grid(x).axes) == 3
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # renders without any pyplot figure manager
    assert buf.getvalue()[:4] == b"\x89PNG"
    assert plt.get_fignums() == before
    with pytest.raises(ValueError, match="entries for 3 images"):
        show_grid(x, torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match="denormalize=False"):
        show_grid(torch.rand(3, 8, 8, 3))
    assert len(show_grid(torch.rand(2, 8, 8, 3), denormalize=False).axes) == 2


def test_signed_rgb_and_magnitude_match_a_numpy_loop():
    from interpretable.viz import magnitude, signed_rgb

    g = torch.randn(3, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    g[1] *= 100  # the per-image scale must not matter
    rgb, mag = signed_rgb(g, q=0.9), magnitude(g, q=0.9)
    assert rgb.shape == (3, 6, 5, 3) and mag.shape == (3, 6, 5)
    for i, img in enumerate(g.double().numpy()):
        hi = np.quantile(np.abs(img), 0.9)
        ref = np.clip(0.5 + 0.5 * img / hi, 0, 1).transpose(1, 2, 0)
        np.testing.assert_allclose(rgb[i].numpy(), ref, atol=1e-5)
        m = np.abs(img).max(0)
        np.testing.assert_allclose(mag[i].numpy(), np.clip(m / np.quantile(m, 0.9), 0, 1),
                                   atol=1e-5)
    assert torch.allclose(rgb[0], signed_rgb(g[:1] * 7, q=0.9)[0], atol=1e-6)
    zero = torch.zeros(1, 3, 4, 4)
    assert (signed_rgb(zero) == 0.5).all() and (magnitude(zero) == 0).all()
    assert isinstance(magnitude(g.numpy()), np.ndarray)
    with pytest.raises(ValueError, match="3 colour channels"):
        signed_rgb(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        magnitude(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="q must be"):
        magnitude(g, q=0)
