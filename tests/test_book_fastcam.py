"""The figures and tables of the chapter "FastCAM and LOVI" (interpretable.book.fastcam), on
tiny synthetic inputs and a tiny network."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from interpretable.book import fastcam as fb
from interpretable.models import create, scale_layers

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = create("resnet18", num_classes=10, width=0.125).eval()
    x = torch.randn(2, 3, 32, 32)
    y = torch.tensor([1, 3])
    return model, x, y


def test_statistic_costs_times_each_statistic_and_the_forward(tiny):
    model, x, _ = tiny
    costs = fb.statistic_costs(model, x, ["smoe", "std"], repeats=1, warmup=0)
    assert list(costs) == ["forward pass", "smoe", "std"]
    assert all(v >= 0 for v in costs.values())
    wall = fb.statistic_costs(model, x, ["entropy"], layers=scale_layers(model)[:2],
                              repeats=1, warmup=0, clock="wall")
    assert set(wall) == {"forward pass", "entropy"} and all(v > 0 for v in wall.values())
    with pytest.raises(ValueError, match="clock"):
        fb.statistic_costs(model, x, ["std"], clock="gpu")


def test_order_figure_has_grouped_bars_and_cost_bars():
    rho = pd.DataFrame({"entropy": [0.8, 0.9], "std": [0.7, 0.95]}, index=["a", "combined"])
    fig = fb.order_figure(rho, {"forward pass": 10.0, "smoe": 1.0, "entropy": 3.0})
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    left, right = fig.axes
    assert len(left.patches) == 4 and len(right.patches) == 2
    assert [t.get_text() for t in left.get_xticklabels()] == ["a", "combined"]


def test_lovi_key_and_saturation():
    key = fb.lovi_key(3)
    assert key.shape == (4, 3)
    assert torch.allclose(key[0], torch.tensor([1.0, 0.0, 1.0]), atol=1e-5)  # magenta
    assert torch.allclose(key[2], torch.tensor([1.0, 0.0, 0.0]), atol=1e-5)  # red
    assert torch.allclose(key[3], torch.ones(3), atol=1e-5)                  # white
    one = torch.zeros(1, 3, 2, 2)
    one[0, 1] = 1.0
    assert torch.allclose(fb.lovi_saturation(one), torch.ones(1, 2, 2))
    assert torch.allclose(fb.lovi_saturation(torch.ones(1, 3, 2, 2)), torch.zeros(1, 2, 2),
                          atol=1e-6)


def test_lovi_figure_panels_key_and_colorbar():
    per_layer = torch.rand(2, 3, 8, 8)
    x = torch.randn(2, 3, 8, 8)
    fig = fb.lovi_figure(x, per_layer, ["a", "b", "c"], ["one", "two"], per_layer.mean(1))
    # 2 rows x 4 panels, the key, the colourbar
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * 4 + 2
    fig = fb.lovi_figure(x, per_layer, ["a", "b", "c"])
    assert len(fig.axes) == 2 * 3 + 1
    with pytest.raises(ValueError, match="layer_names"):
        fb.lovi_figure(x, per_layer, ["a", "b"])


def test_lovi_reading_separates_the_salient_pixels():
    per_layer = torch.full((1, 2, 4, 4), 0.1)
    per_layer[0, :, 0, 0] = 1.0          # both layers respond at one pixel
    combined = per_layer.mean(1)
    table = fb.lovi_reading(per_layer, combined, ["early", "deep"], top=1 / 16)
    assert list(table.index) == ["early", "deep", "LOVI saturation"]
    inside, rest = table.columns
    assert table.loc["early", inside] == pytest.approx(1.0)
    assert table.loc["early", rest] == pytest.approx(0.0)


def test_faithfulness_and_ad_curve(tiny):
    model, x, y = tiny
    maps = {"Grad-CAM": torch.rand(2, 4, 4), "FastCAM": torch.rand(2, 32, 32)}
    table = fb.faithfulness(model, x, y, maps)
    assert list(table.index) == ["Grad-CAM", "FastCAM"]
    assert {"AD ↓", "share kept", "Deletion ↓"} <= set(table.columns)
    assert ((table["share kept"] > 0) & (table["share kept"] < 1)).all()
    short = fb.faithfulness(model, x, y, maps, curves=False)
    assert "Deletion ↓" not in short.columns
    curve = fb.ad_against_kept(model, x, y, maps, gammas=(0.5, 1.0, 2.0))
    assert len(curve) == 6
    for _, part in curve.groupby("method"):  # a larger gamma keeps less
        assert part.sort_values("gamma")["share kept"].is_monotonic_decreasing
    fig = fb.ad_figure(curve)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert len(fig.axes[0].lines) == 2 * 2  # a curve and its gamma = 1 dot per method


def test_kept_share_of_a_constant_map_is_everything():
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(fb.kept_share(torch.ones(2, 4, 4), x), torch.ones(2))
