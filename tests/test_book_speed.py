"""The figures and tables of the chapter "Speed" (interpretable.book.speed), on tiny inputs."""

from __future__ import annotations

import json

import pytest
import torch
from matplotlib.figure import Figure

from interpretable import peers
from interpretable.book import speed
from interpretable.models import create

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_cost_figure_bars_log_axis_and_colours():
    from interpretable.book.style import color

    ratios = {"Grad-CAM": 1.2, "forward with autograd": 1.1, "SmoothGrad": 40.0,
              "SMOE saliency": 0.9}
    fig = speed.cost_figure(ratios, references=["forward with autograd"])
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.lines) == 2 * 4 + 1  # stems, dots, 1x line
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["SMOE saliency", "forward with autograd", "Grad-CAM", "SmoothGrad"]
    import matplotlib.colors as mc

    dot = ax.lines[2 * labels.index("Grad-CAM") + 1]
    assert mc.to_hex(dot.get_markerfacecolor()) == color("Grad-CAM").lower()
    assert dot.get_xdata()[0] == pytest.approx(1.2)
    with pytest.raises(ValueError, match="positive"):
        speed.cost_figure({"x": 0.0})


def test_peer_table_has_only_existing_pairs():
    med = {"forward pass": 1.0, "Grad-CAM": 0.2, "gradient": 0.4,
           "torchcam: Grad-CAM": 0.3, "captum: gradient": 0.4, "captum: Grad-CAM": 0.1,
           "captum: Layer-CAM": 9.0}  # no Layer-CAM of ours: left out
    table = speed.peer_table(med, batch=4)
    assert len(table) == 3 and not table.isna().any().any()
    row = table[(table.method == "Grad-CAM") & (table.library == "torchcam")].iloc[0]
    assert row["library / ours"] == pytest.approx(1.5)
    assert row["ours (ms/image)"] == pytest.approx(50.0)
    assert speed.peer_table({"Grad-CAM": 1.0}, batch=1).empty


def test_claim_table_this_run_and_the_benchmark():
    med = {"forward pass": 1.0, "SMOE saliency": 1.0, "Grad-CAM": 1.2, "FastCAM": 1.3,
           "guided backprop": 2.6, "SmoothGrad": 52.0}
    table = speed.claim_table(med)
    assert list(table.columns) == ["this run"]
    assert table.loc["guided backprop / FastCAM", "this run"] == pytest.approx(2.0)
    timings = {v: {"median": med[k]} for k, v in speed._BENCH_NAMES.items()}
    bench = {"sections": {"fastcam": {"timings": timings}}}
    both = speed.claim_table(med, bench)
    assert (both["this run"] == both["committed benchmark"]).all()


def test_step_table_names_and_order():
    costs = {"ms_per_image": {"plain": 1.0, "reg": 2.5},
             "ratios_to_plain": {"plain": 1.0, "reg": 2.5}}
    table = speed.step_table(costs)
    assert list(table.index) == ["plain step", "regularized"]


def test_benchmark_summary(tmp_path):
    data = {"machine": {"date": "d", "processor": "p", "cpu_count": 2, "torch_threads": 2,
                        "cuda": None, "torch": "t"},
            "settings": {"quick": False},
            "sections": {"a": {"machine": {"date": "later"}}},
            "targets": [{"section": "a", "name": "x / y", "ratio": 1.5, "limit": 2.0,
                         "at_least": False, "passed": True}]}
    path = tmp_path / "latest.json"
    path.write_text(json.dumps(data))
    line, targets = speed.benchmark_summary(path)
    assert "measured d" in line and "section a measured later" in line
    assert targets.shape == (1, 5) and targets.loc[0, "passed"]
    with pytest.raises(FileNotFoundError):
        speed.benchmark_summary(tmp_path / "missing.json")


@pytest.mark.skipif(not all(peers.installed().values()), reason="needs every peer library")
def test_peer_functions_and_differences():
    torch.manual_seed(0)
    model = create("resnet18", num_classes=10, width=0.125).eval()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    fns = speed.peer_functions(model, x, y, keys=["gradcam", "gradient"])
    assert set(fns) == {"pytorch-grad-cam: Grad-CAM", "torchcam: Grad-CAM",
                        "captum: Grad-CAM", "captum: gradient"}
    assert fns["captum: gradient"]().shape == x.shape
    score = speed.peer_functions(model, x, y, keys=["scorecam"], score_batch=8)
    assert set(score) == {"pytorch-grad-cam: Score-CAM", "torchcam: Score-CAM"}
    diffs = speed.peer_differences(model, x, y)
    assert len(diffs) == 3 and all(v < 1e-4 for v in diffs.values())
