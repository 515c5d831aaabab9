"""The figures and tables of the Gradients and Beyond chapters (interpretable.book.gradients)
on tiny synthetic inputs: a tiny network, random images, a hand-written sweep folder. Fast."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import interpretable as itp
from interpretable.attribution import gradient, guided_backprop
from interpretable.book import gradients as bg
from interpretable.book import style

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return itp.models.create("resnet18", width=0.125).eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 3, 32, 32, generator=g), torch.tensor([1, 2, 3])


def _images_in(fig):
    return [im for ax in fig.axes for im in ax.get_images()]


def test_statistics(net, images):
    x, y = images
    res = bg.map_statistics(net, x, y, {"gradient": gradient, "guided": guided_backprop},
                            batch=2)
    assert set(res) == {"gradient", "guided"}
    for d in res.values():
        assert set(d) == set(bg.STATS)
        assert all(v.shape == (3,) and torch.isfinite(v).all() for v in d.values())
        assert d["negative share"].min() >= 0 and d["negative share"].max() <= 1
    table = bg.statistics_table(res)
    assert list(table.index) == ["gradient", "guided"]
    assert (table["images"] == 3).all()
    fig = bg.statistics_figure(res, title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == len(bg.STATS)
    # one box per method in each panel, in the method's colour
    boxes = [p for p in fig.axes[0].patches]
    assert len(boxes) == 2
    assert matplotlib.colors.to_hex(boxes[1].get_facecolor()[:3]) == \
        style.color("guided backprop").lower()


def test_pictures(net, images):
    x, y = images
    maps = {"gradient": gradient(net, x, y), "guided": guided_backprop(net, x, y)}
    for fn in (bg.signed_figure, bg.magnitude_figure):
        fig = fn(x, maps, row_labels=["a", "b", "c"])
        assert isinstance(fig, Figure)
        assert len(_images_in(fig)) == 3 * 3          # image + two maps per row
        assert len(fig.axes) == 3 * 3 + 1              # and one colourbar
    fig = bg.noise_level_figure(net, x[:1], y[:1], [0.0, 0.2], n=2)
    assert len(_images_in(fig)) == 4 and len(fig.axes) == 5
    assert _images_in(fig)[0].get_cmap().name == style.HEAT_CMAP


def test_cascade(net, images):
    x, y = images
    t = bg.cascade_similarity(net, x, y, methods=("gradient", "guided", "gradcam"),
                              measures=("cosine", "Spearman of |map|", "SSIM of |map|"),
                              steps=2, label="tiny")
    # steps 0, 1, 2 x 3 methods x 3 measures
    assert len(t) == 3 * 3 * 3
    assert list(t["block"].unique())[0] == "trained"
    first = t[t["step"] == 0].dropna(subset=["value"])
    assert np.allclose(first["value"], 1.0, atol=1e-5)
    cam_signed = t[(t["method"] == "Grad-CAM") & (t["measure"] == "cosine")]
    assert cam_signed["value"].isna().all()
    fig = bg.cascade_figure(t, title="t")
    assert isinstance(fig, Figure)
    assert len(fig.legends) == 1
    panels = [a for a in fig.axes if a.get_visible()]
    assert len(panels) == 3      # three measures on a 2 x 2 grid, one panel hidden
    # gradient and guided in the cosine panel; all three in the others (+ the zero line)
    assert len(panels[0].get_lines()) == 2 + 1
    assert len(panels[1].get_lines()) == 3 + 1
    two = bg.cascade_figure(t[t["measure"] != "SSIM of |map|"])
    assert len(two.axes) == 2
    fig = bg.cascade_maps_figure(net, x[:1], y[:1], [0, 2], methods=("gradient", "gradcam"))
    assert len(_images_in(fig)) == 2 * 3
    assert len(fig.axes) == 2 * 3 + 1
    with pytest.raises(ValueError):
        bg.cascade_similarity(net, x, y, measures=("nope",))
    # |cosine| ignores a flip of the whole map's sign; cosine does not
    a = torch.randn(2, 3, 8, 8)
    kind, fn = bg.MEASURES["|cosine|"]
    assert kind == "signed" and torch.allclose(fn(a, -a), torch.ones(2))
    assert torch.allclose(bg.MEASURES["cosine"][1](a, -a), -torch.ones(2))


def test_cosine_histogram():
    c = {"resnet18_baseline": torch.linspace(-0.1, 0.1, 50),
         "resnet18_aligned": torch.linspace(0.5, 0.9, 50)}
    fig = bg.cosine_histogram(c)
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * 40
    assert matplotlib.colors.to_hex(ax.patches[-1].get_facecolor()[:3]) == \
        style.color("aligned").lower()


def _write_run(folder, lam, gradient_of, logs):
    folder.mkdir(parents=True)
    summary = {"lam": lam, "gradient_of": gradient_of, "test_acc": logs[-1]["test_acc"],
               "test_top5": 90.0, "test_align_logit": logs[-1]["test_align"],
               "test_align_logit_ci": [0.9, 1.0], "test_align_loss": 1.0,
               "align_images": 10, "seconds": 3600.0, "epochs": 2}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "config.json").write_text(json.dumps({"lam": lam, "gradient_of": gradient_of}))
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logs))
    (folder / "final.pt").write_bytes(b"")


def test_sweep_epochs(tmp_path):
    arch = "resnet18"
    for lam in (0.0, 0.5, 2.0):
        logs = [{"epoch": e, "test_acc": 60.0 - 10 * lam + e, "test_align": 1 - 0.1 * lam * e}
                for e in (1, 2)]
        _write_run(tmp_path / "sweep" / arch / f"logit_lam{lam:g}", lam, "logit", logs)
    epochs = bg.sweep_epochs(tmp_path, arch)
    assert len(epochs) == 6
    assert set(epochs["variant"]) == {"control", "logit"}
    fig = bg.sweep_epochs_figure(epochs, start={"test cos": 0.01, "test top-1": 65.0})
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    # epoch 1 and epoch 2 lines, and the start line, in each panel
    assert len(fig.axes[0].get_lines()) == 3


def test_live_table():
    rec = {"test_acc": 50.0, "test_align": 0.9, "test_align_ci": [0.85, 0.95], "epoch": 1}
    t = bg.live_table(rec, {"lambda 0": [rec, {**rec, "epoch": 2}]})
    assert len(t) == 3
    assert t.loc[("start", 0), "test cos"] == pytest.approx(0.1)
    assert t.loc[("lambda 0", 2), "cos 95% low"] == pytest.approx(0.05)
