"""The Training chapter's figures and tables (interpretable.book.training) on tiny synthetic
inputs: tiny networks, hand-written logs and a hand-written sweep folder. Fast."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import interpretable as itp
from interpretable.book import style
from interpretable.book import training as bt

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {name: itp.models.create("resnet18", width=0.125).eval()
            for name in ("baseline", "aligned")}


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 3, 16, 16, generator=g), torch.tensor([1, 2, 3])


def _images_in(fig):
    return [im for ax in fig.axes for im in ax.get_images()]


def _log(epochs, lam):
    return [{"epoch": e, "test_acc": 10.0 * e, "train_ce": 4.0 / e, "lr": 0.1 / e,
             "test_align": 1.0 - (0.5 if lam else 0.01), "train_align": None}
            for e in range(1, epochs + 1)]


def _summary(folder, lam, gradient_of, top1, cos):
    folder.mkdir(parents=True)
    align = 1.0 - cos
    folder.joinpath("summary.json").write_text(json.dumps({
        "lam": lam, "gradient_of": gradient_of, "test_acc": top1, "test_top5": top1 + 20,
        "test_align_logit": align, "test_align_logit_ci": [align - 0.01, align + 0.01],
        "test_align_loss": 1.0, "align_images": 100, "seconds": 3600.0}))


@pytest.fixture
def sweep_root(tmp_path):
    """A reference folder with a small sweep: control, a run inside the window, one that
    fell out of it, one that collapsed; MobileNet-V2 without a control (left out)."""
    base = tmp_path / "sweep" / "resnet18"
    _summary(base / "logit_lam0", 0.0, "logit", 60.0, 0.01)
    _summary(base / "logit_lam0.0075", 0.0075, "logit", 60.1, 0.012)
    _summary(base / "logit_lam0.5", 0.5, "logit", 59.0, 0.05)
    _summary(base / "logit_lam1", 1.0, "logit", 50.0, 0.2)
    _summary(base / "logit_lam2", 2.0, "logit", 5.0, 0.9)
    _summary(base / "loss_lam1", 1.0, "loss", 59.5, -0.03)
    _summary(tmp_path / "sweep" / "mobilenet_v2" / "logit_lam1", 1.0, "logit", 40.0, 0.1)
    return tmp_path


def test_run_colors_follow_the_book_style():
    assert bt.run_color("resnet18_baseline") == style.color("baseline")
    assert bt.run_color("mobilenet_v2_aligned") == style.color("aligned")
    assert bt.run_color("lambda* fine-tuned") == style.PALETTE["purple"]
    assert bt.run_linestyle("mobilenet_v2_baseline") == "--"
    assert bt.run_linestyle("resnet18_baseline") == "-"


def test_training_curves_figure():
    fig = bt.training_curves_figure({"resnet18_baseline": _log(3, 0),
                                     "resnet18_aligned": _log(3, 0.5)})
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert len(axes) == 4 and all(len(ax.get_lines()) == 2 for ax in axes)
    cos = axes[2].get_lines()[1].get_ydata()
    np.testing.assert_allclose(cos, 0.5)  # 1 - test_align
    assert axes[2].get_yscale() == "symlog"
    assert fig.legends


def test_gradient_statistics_and_tables(nets, images):
    x, y = images
    stats = bt.gradient_statistics(nets, x, y, batch=2)
    assert set(stats) == set(nets)
    for s in stats.values():
        assert set(s) == {"cos", "roughness", "lattice"}
        assert all(v.shape == (3,) for v in s.values())
        assert np.all(np.abs(s["cos"]) <= 1 + 1e-5) and np.all(s["lattice"] >= 1 - 1e-6)
    # the cosine is the one of the attribution functions
    g = itp.attribution.gradient(nets["baseline"], x, y)
    gg = itp.attribution.guided_backprop(nets["baseline"], x, y)
    want = torch.nn.functional.cosine_similarity(g.flatten(1), gg.flatten(1)).numpy()
    np.testing.assert_allclose(stats["baseline"]["cos"], want, atol=1e-5)
    levels = bt.interval_table(stats)
    assert list(levels.index) == list(nets) and list(levels.columns) == list(bt.STATS)
    assert levels.loc["baseline", "cos"].count("[") == 1
    paired = bt.interval_table(stats, against="baseline")
    assert list(paired.index) == ["aligned"] and paired.iloc[0, 0][0] in "+-"


def test_white_noise_yardstick_is_measured_on_magnitude_maps():
    noise = bt.white_noise_statistics((200, 3, 32, 32))
    assert noise["roughness"].shape == (200,)
    # the signed noise is about sqrt 2; the magnitude map summed over channels much smoother
    assert noise["roughness, signed"].mean() == pytest.approx(2 ** 0.5, abs=0.02)
    assert 0.3 < noise["roughness"].mean() < 0.7
    assert noise["lattice"].mean() == pytest.approx(1.0, abs=0.1)


def test_cosine_histogram_figure():
    fig = bt.cosine_histogram_figure({"resnet18_baseline": np.linspace(-0.1, 0.1, 50),
                                      "resnet18_aligned": np.linspace(0.5, 1.0, 50)})
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert len(fig.axes[0].patches) == 2  # one outline per run
    assert any("mean" in t.get_text() for t in fig.legends[0].get_texts())


def test_grid_of_dots_figure(nets, images):
    x, y = images
    fig = bt.grid_of_dots_figure(nets, x, y, labels=["a", "b", "c"])
    assert isinstance(fig, Figure)
    # 3 rows x (image, 2 models, guided, close-up) and a colourbar
    ims = _images_in(fig)
    assert len(ims) == 3 * 5
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)
    heat = [im for im in ims if im.get_array().ndim == 2]
    assert len(heat) == 3 * 4 and all(im.get_clim() == (0, 1) for im in heat)
    assert heat[-1].get_array().shape == (10, 10)  # the close-up
    small = bt.grid_of_dots_figure({"only": nets["baseline"]}, x[:1], guided=False,
                                   zoom=None)
    assert len(_images_in(small)) == 2
    with pytest.raises(ValueError, match="zoom"):
        bt.grid_of_dots_figure(nets, x, zoom=1)
    with pytest.raises(ValueError, match="models"):
        bt.grid_of_dots_figure({}, x)


def test_sweep_frame_marks_the_rule_and_the_collapse(sweep_root):
    t = bt.sweep_frame(sweep_root)
    assert set(t["arch"]) == {"resnet18"}  # MobileNet-V2 has no control
    by_run = t.set_index("run")
    assert by_run.loc["logit_lam0.5", "lam_star"] and by_run["lam_star"].sum() == 1
    assert by_run.loc["logit_lam2", "collapsed"] and not by_run.loc["logit_lam1", "collapsed"]
    assert not by_run.loc["logit_lam1", "within"] and by_run.loc["logit_lam0.5", "within"]
    assert by_run.loc["logit_lam0.5", "cos"] == pytest.approx(0.05)
    with pytest.raises(FileNotFoundError):
        bt.sweep_frame(sweep_root, archs=("mobilenet_v2",))


def test_lambda_curve_figure(sweep_root):
    fig = bt.lambda_curve_figure(sweep_root, extra={"resnet18": [
        {"lam": 0.1, "top1": 59.8, "cos": 0.02, "label": "from scratch"}]})
    assert isinstance(fig, Figure)
    ax_cos, ax_acc = fig.axes[:2]
    assert ax_acc.get_xscale() == "log"
    # the y-ranges follow the runs inside the window, not the collapsed one
    lo, hi = ax_acc.get_ylim()
    assert lo > 50.0 and hi < 62.0
    assert ax_cos.get_ylim()[1] < 0.2
    # lambda* (red) and the paper's lambda (orange) are marked as vertical lines
    colours = {line.get_color() for line in ax_acc.get_lines()}
    assert style.color("lambda*") in colours and style.color("paper") in colours
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "from scratch" in labels and any("by the rule = 0.5" in s for s in labels)
    # the collapsed run is a grey x at the edge of both panels
    xs = [line for line in ax_acc.get_lines() if line.get_marker() == "x"]
    assert len(xs) == 1 and xs[0].get_ydata()[0] == pytest.approx(lo)


def test_lambda_curve_figure_from_the_committed_sweep():
    from interpretable.study import reference

    try:
        root = reference.find_root()
    except FileNotFoundError:
        pytest.skip("no reference folder")
    if not (root / "sweep" / "resnet18" / "logit_lam0" / "summary.json").is_file():
        pytest.skip("no committed sweep")
    fig = bt.lambda_curve_figure()
    assert len(fig.axes) == 4


def test_live_curves_figure():
    h = [{"epoch": 1, "test_acc": 2.0, "test_align": 0.99},
         {"epoch": 2, "test_acc": 4.0, "test_align": 0.98}]
    fig = bt.live_curves_figure({"baseline (lambda 0)": h, "paper lambda": h})
    assert len(fig.axes) == 2 and all(len(ax.get_lines()) == 2 for ax in fig.axes)
    np.testing.assert_allclose(fig.axes[1].get_lines()[0].get_ydata(), [0.01, 0.02])
