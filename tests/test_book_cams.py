"""The figures and tables of the chapter on class activation maps (interpretable.book.cams),
on a tiny random ResNet-18 and synthetic images: shapes, axes, colours, the identities the
chapter states."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

import interpretable as itp
from interpretable.book import cams, style

B = 3


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, 3, 32, 32, generator=g), torch.tensor([3, 7, 11])


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def _has_colorbar(fig):
    return any(ax.get_label() == "<colorbar>" for ax in fig.axes)


def _fonts_readable(fig):
    texts = [t for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label,
                                            *ax.texts, *ax.get_xticklabels(),
                                            *ax.get_yticklabels()) if t.get_text()]
    return all(t.get_fontsize() >= 8 for t in texts)


def test_layer_labels(model, batch):
    labels = cams.layer_labels(model, batch[0])
    assert list(labels) == ["stem (32x32, 8 ch)", "layer1 (32x32, 8 ch)",
                            "layer2 (16x16, 16 ch)", "layer3 (8x8, 32 ch)",
                            "layer4 (4x4, 64 ch)"]
    assert list(labels.values()) == itp.models.scale_layers(model)


@pytest.mark.parametrize("method", cams.METHOD_NAMES)
def test_cam_maps(model, batch, method):
    x, y = batch
    m = cams.cam_maps(model, x, y, method)
    assert m.shape == (B, 32, 32) and m.min() >= 0 and m.max() <= 1


def test_overlay_grid_axes_colours_and_colorbar(model, batch):
    x, y = batch
    maps = {m: cams.cam_maps(model, x, y, m) for m in ("Grad-CAM", "Layer-CAM")}
    fig = cams.method_grid(x, maps, ["a", "b", "c"])
    assert isinstance(fig, Figure)
    axes = _image_axes(fig)
    assert len(axes) == B * 3 and _has_colorbar(fig) and _fonts_readable(fig)
    grid = np.array(axes).reshape(B, 3)
    assert [grid[0, j].get_title() for j in range(3)] == ["image", "Grad-CAM", "Layer-CAM"]
    for j, m in enumerate(("Grad-CAM", "Layer-CAM"), start=1):
        frame = grid[1, j].spines["top"]
        assert frame.get_visible() and to_hex(frame.get_edgecolor()) == style.color(m).lower()
    assert [ax.get_ylabel() for ax in grid[:, 0]] == ["a", "b", "c"]
    assert fig.get_size_inches()[0] <= 10.5


def test_overlay_grid_checks_its_inputs(batch):
    x, _ = batch
    with pytest.raises(ValueError, match="row_labels"):
        cams.overlay_grid(x, {"m": torch.rand(B, 32, 32)}, ["a"])
    with pytest.raises(ValueError, match="column"):
        cams.overlay_grid(x, {"m": torch.rand(B - 1, 32, 32)}, ["a", "b", "c"])


def test_layer_grid_and_model_grid(model, batch):
    x, y = batch
    layers = cams.layer_labels(model, x)
    maps = {n: cams.cam_maps(model, x, y, "Layer-CAM", layer) for n, layer in layers.items()}
    fig = cams.layer_grid(x, maps, "Layer-CAM", list("abc"))
    assert len(_image_axes(fig)) == B * 6
    assert np.array(_image_axes(fig)).reshape(B, 6)[0, 5].get_title() == \
        "Layer-CAM\nlayer4\n(4x4, 64 ch)"
    fig = cams.model_grid({"baseline": model, "regularized": model}, x, y, list("abc"))
    grid = np.array(_image_axes(fig)).reshape(B, 5)
    assert grid[0, 2].get_title() == "Grad-CAM\nregularized"
    assert to_hex(grid[0, 2].spines["left"].get_edgecolor()) == \
        style.color("regularized").lower()


def test_identity_gaps_at_the_last_layer(model, batch):
    # global average pooling + one linear layer: Grad-CAM == XGrad-CAM at the last block
    x, y = batch
    layers = cams.layer_labels(model, x)
    names = list(layers)[-2:]
    gaps = cams.identity_gaps(model, x, y, {n: layers[n] for n in names})
    assert list(gaps.index) == names
    assert list(gaps.columns) == ["Grad-CAM vs XGrad-CAM", "Grad-CAM++ vs Layer-CAM"]
    assert gaps.loc[names[1], "Grad-CAM vs XGrad-CAM"] < 1e-4
    assert ((gaps >= 0) & (gaps <= 1)).all().all()


def test_agreement_and_its_figure(model, batch):
    x, y = batch
    maps = {m: cams.cam_maps(model, x, y, m) for m in ("Grad-CAM", "XGrad-CAM", "Score-CAM")}
    maps["Score-CAM"] = maps["Score-CAM"][:2]  # a set with fewer images
    table = cams.agreement(maps)
    assert table.shape == (3, 3)
    np.testing.assert_allclose(np.diag(table), 1, atol=1e-4)
    np.testing.assert_allclose(table.to_numpy(), table.to_numpy().T, atol=1e-6)
    assert table.loc["Grad-CAM", "XGrad-CAM"] > 0.999
    fig = cams.agreement_figure(table, "title")
    assert len(fig.axes) == 2 and len(fig.axes[0].texts) == 9 and _fonts_readable(fig)
    assert fig.axes[0].images[0].get_cmap().name == style.HEAT_CMAP
    ticks = fig.axes[0].get_xticklabels()
    assert [to_hex(t.get_color()) for t in ticks] == [style.color(m).lower() for m in maps]


def test_empty_shares(model, batch):
    x, y = batch
    layers = dict(list(cams.layer_labels(model, x).items())[-2:])
    table = cams.empty_shares(model, x, y, layers)
    assert table.shape == (2, 2) and list(table.columns) == ["Grad-CAM", "Layer-CAM"]
    assert ((table >= 0) & (table <= 100)).all().all()


def test_ranked_targets(model, batch):
    x, _ = batch
    t, p = cams.ranked_targets(model, x, (1, 2, 100))
    assert t.shape == p.shape == (3, B)
    with torch.no_grad():
        probs = model(x).softmax(1)
    assert torch.equal(t[0], probs.argmax(1)) and torch.equal(t[2], probs.argmin(1))
    assert (p[0] >= p[1]).all() and (p[1] >= p[2]).all()


def test_class_grid(model, batch):
    x, _ = batch
    fig = cams.class_grid(model, x, [f"c{i}" for i in range(100)], list("abc"), ranks=(1, 2))
    grid = np.array(_image_axes(fig)).reshape(B, 3)
    assert grid[0, 1].get_title().startswith("1st: c") and "r=" not in grid[0, 1].get_title()
    assert grid[2, 2].get_title().startswith("2nd: c") and "r=" in grid[2, 2].get_title()
    assert _has_colorbar(fig) and _fonts_readable(fig)


def test_class_shift_summary_and_figure(model, batch):
    x, _ = batch
    shift = cams.class_shift(model, x, ranks=(2, 5, 100))
    assert list(shift.columns) == ["image", "rank", "r", "empty", "p"]
    assert len(shift) == 3 * B and sorted(shift["rank"].unique()) == [2, 5, 100]
    r = shift["r"].dropna()
    assert ((r >= -1 - 1e-5) & (r <= 1 + 1e-5)).all()
    assert (shift["r"].isna() == shift["empty"]).all()  # an empty map has no correlation
    summary = cams.shift_summary(shift)
    assert list(summary.index) == [2, 5, 100]
    assert list(summary.columns) == ["median_r", "moved", "empty", "median_p"]
    fig = cams.class_shift_figure({"baseline": shift, "regularized": shift})
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) >= 2
    colours = {to_hex(line.get_color()) for line in fig.axes[1].lines}
    assert colours == {style.color("baseline").lower(), style.color("regularized").lower()}
    assert _fonts_readable(fig)


def test_class_shift_is_one_for_the_same_class():
    # a model whose logits do not depend on the image beyond one shared pattern: every class
    # map is the same pattern, so r = 1 for every rank
    class Pattern(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer4 = torch.nn.Conv2d(3, 4, 8, stride=8)
            self.fc = torch.nn.Linear(4, 10)
            torch.nn.init.uniform_(self.fc.weight, 0.1, 1.0)

        def forward(self, x):
            return self.fc(self.layer4(x).relu().mean((2, 3)))

    m = Pattern().eval()
    x = torch.zeros(2, 3, 32, 32)
    x[:, :, :8, :8] = 1.0  # one bright corner: the same spatial pattern in every channel
    with torch.no_grad():
        m.layer4.weight.abs_()
        m.layer4.bias.zero_()
    shift = cams.class_shift(m, x, ranks=(2, 10), layer=m.layer4)
    np.testing.assert_allclose(shift["r"], 1, atol=1e-5)
    share = cams.rank_one_share(m, x, m.layer4)
    np.testing.assert_allclose(share.numpy(), 1, atol=1e-5)


def test_rank_one_share_range(model, batch):
    share = cams.rank_one_share(model, batch[0])
    assert share.shape == (B,) and ((share > 0) & (share <= 1 + 1e-6)).all()


def test_faithfulness(model, batch):
    x, y = batch
    table = cams.faithfulness({"baseline": model}, x, y)
    assert list(table.index) == ["baseline"]
    assert list(table.columns) == ["AD (lower is better)", "AG (higher)", "AI (higher)"]
    assert ((table >= 0) & (table <= 100)).all().all()


def test_gallery_and_sample(test_set):
    x, y = cams.sample(test_set, 7)
    assert x.shape == (7, 3, 32, 32) and y.shape == (7,) and len(set(y.tolist())) == 7

    class Oracle(torch.nn.Module):
        """Knows the label of every test image by its pixel sum; ``wrong`` inverts it."""

        def __init__(self, wrong: bool = False):
            super().__init__()
            xs, ys = test_set.tensors()
            self.keys, self.labels, self.wrong = xs.double().sum((1, 2, 3)), ys, wrong

        def forward(self, inp):
            idx = (inp.double().sum((1, 2, 3))[:, None] - self.keys[None]).abs().argmin(1)
            out = torch.zeros(len(inp), 100)
            out[torch.arange(len(inp)), self.labels[idx]] = 1.0
            return -out if self.wrong else out

    xg, yg, names = cams.gallery(Oracle(), test_set, 4)
    assert xg.shape == (4, 3, 32, 32) and names == [test_set.classes[int(c)] for c in yg]
    first = test_set.targets[itp.data.balanced_subset(test_set, 1, 0).indices[:4]]
    assert yg.tolist() == first.tolist()  # one per class, in the test set's order
    with pytest.raises(ValueError, match="none"):
        cams.gallery(Oracle(wrong=True), test_set, 4)


def test_faithfulness_verdict():
    import pandas as pd

    table = pd.DataFrame({"AD (lower is better)": [10.0, 20.0], "AG (higher)": [1.0, 3.0],
                          "AI (higher)": [40.0, 40.0]}, index=["baseline", "regularized"])
    assert cams.faithfulness_verdict(table, 20) == (
        "more faithful on these 20 images by AD baseline, AG regularized, AI equal")


def test_timed():
    calls = []
    seconds = cams.timed(calls.append, 1, repeat=3)
    assert calls == [1, 1, 1] and 0 <= seconds < 1
