"""The figures and tables of the metric chapter (interpretable.book.metrics) on tiny synthetic
result tables: the right panels, markers and numbers, fast."""

from __future__ import annotations

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

from interpretable.book import metrics as bm  # noqa: E402
from interpretable.book import style  # noqa: E402
from interpretable.metrics import METRICS  # noqa: E402
from interpretable.tables import paired_comparison  # noqa: E402

METHODS3 = ("Grad-CAM", "FastCAM", "Grad-CAM++")  # deliberately not in the book's order


def rows(n=40, seed=0, shift=0.0, methods=METHODS3, y_scale=1.0):
    """A per-image result table: ``shift`` added to every metric of every image."""
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(123)  # the same images for every table
    out = []
    for m in methods:
        common = base.uniform(0, 60, size=(n, 5))
        noise = rng.normal(0, 1, size=(n, 5))
        y = np.clip(base.uniform(0.2, 0.9, n) * y_scale, 0.01, 0.99)
        for i in range(n):
            label = i % 7
            out.append({"index": i, "label": label, "predicted": label if i % 4 else 99,
                        "target": label, "method": m, "Y": y[i], "O": y[i] * 0.8,
                        **{mt.column: common[i, k] + noise[i, k] + shift
                           for k, mt in enumerate(METRICS)}})
    return pd.DataFrame(out)


class Curve:
    def __init__(self, n=3, points=5, level=0.5):
        self.fraction = np.linspace(0, 1, points)
        self.insertion = np.full((n, points), level)
        self.deletion = np.full((n, points), level / 2)


def test_method_order_puts_the_study_cams_first():
    assert bm.method_order(["FastCAM", "XGrad-CAM", "Grad-CAM", "Grad-CAM"]) == [
        "Grad-CAM", "FastCAM", "XGrad-CAM"]


def test_masking_figure_has_images_colorbar_and_curves():
    img = np.random.default_rng(0).uniform(size=(8, 8, 3))
    sal = np.linspace(0, 1, 64).reshape(8, 8)
    fig = bm.masking_figure(img, sal, img * sal[..., None], 0.5, 0.4, title="t")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4  # three panels and the map's colourbar
    fig = bm.masking_figure(img, sal, img, 0.5, 0.4, curves=Curve(n=1))
    assert len(fig.axes) == 5
    curve_ax = fig.axes[3]
    assert len(curve_ax.get_lines()) == 2
    labels = [t.get_text() for t in curve_ax.get_legend().get_texts()]
    assert "area 50.0" in labels[0] and "area 25.0" in labels[1]


def test_curves_figure_and_areas():
    curves = {("baseline", m): Curve(level=0.4) for m in ("FastCAM", "Grad-CAM")}
    curves["regularized", "Grad-CAM"] = Curve(level=0.6)
    fig = bm.curves_figure(curves, title="x")
    assert len(fig.axes) == 4  # 2 rows x 2 methods
    assert fig.axes[0].get_title() == "Grad-CAM"  # the book's order
    assert len(fig.axes[0].get_lines()) == 2 and len(fig.axes[1].get_lines()) == 1
    assert fig.axes[0].get_lines()[0].get_color() == style.color("baseline")
    assert len(fig.legends) == 1
    table = rows(n=10, methods=("Grad-CAM", "FastCAM"))
    areas = bm.curve_areas(curves, {"baseline": table})
    assert list(areas.columns) == ["Y, these 3", "Y, all 10", "Ins, these 3", "Ins, all 10",
                                   "Del, these 3", "Del, all 10"]
    assert areas.loc[("baseline", "Grad-CAM"), "Ins, these 3"] == pytest.approx(40.0)
    assert areas.loc[("baseline", "Grad-CAM"), "Del, these 3"] == pytest.approx(20.0)
    assert areas.loc[("baseline", "Grad-CAM"), "Y, these 3"] == pytest.approx(0.2)
    want = table.query("method == 'FastCAM'")["insertion"].mean()
    assert areas.loc[("baseline", "FastCAM"), "Ins, all 10"] == pytest.approx(want, abs=0.05)
    assert np.isnan(areas.loc[("regularized", "Grad-CAM"), "Ins, all 10"])
    with pytest.raises(ValueError):
        bm.curves_figure({})


def test_summaries_and_levels_figure():
    tables = {"net_baseline": rows(), "net_regularized": rows(seed=1, shift=1.0),
              "other_baseline": rows(seed=2)}
    s = bm.summaries(tables)
    assert set(s["arch"]) == {"net", "other"}
    assert set(s["metric"]) == {m.name for m in METRICS}
    assert len(s) == 3 * 3 * len(METRICS)
    assert (s["low"] <= s["mean"]).all() and (s["mean"] <= s["high"]).all()
    fig = bm.levels_figure(s)
    assert len(fig.axes) == 2 * len(METRICS)
    assert len(fig.legends) == 1
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [
        "Grad-CAM", "Grad-CAM++", "FastCAM"]


def test_paired_heatmap_colours_numbers_and_stars():
    base = rows()
    better = rows(seed=1, shift=-3.0)  # every metric 3 points lower: AD, Del better
    same = rows(seed=2)
    comparisons = {"clear": paired_comparison(base, better),
                   "none": paired_comparison(base, same)}
    fig = bm.paired_heatmap(comparisons, title="t")
    assert len(fig.axes) == 3  # two panels and the colourbar
    clear, none = fig.axes[:2]
    texts = [t.get_text() for t in clear.texts]
    assert len(texts) == 3 * len(METRICS)
    assert all(t.startswith("-3.") or t.startswith("-2.") for t in texts)
    assert all("*" in t for t in texts)  # every cell survives Bonferroni
    assert not any("*" in t.get_text() for t in none.texts)
    assert all(t.get_fontweight() == "bold" for t in clear.texts)
    # blue where lower is better (AD), red where higher is better (AG)
    rgba = clear.get_images()[0].get_array()
    ad, ag = 0, 1
    assert rgba[0, ad, 2] > rgba[0, ad, 0] and rgba[0, ag, 0] > rgba[0, ag, 2]
    faded = none.get_images()[0].get_array()
    assert (np.asarray(faded)[..., :3] > 0.6).all()  # no verdict: pale
    assert [t.get_text() for t in clear.get_xticklabels()][0] == "AD\u2193"
    # the second panel shares the row's method labels
    assert not none.yaxis.get_tick_params()["labelleft"]
    assert "paired images" in clear.get_title()
    with pytest.raises(ValueError):
        bm.paired_heatmap({})
    # more panels than one row holds: the empty axes are removed
    fig = bm.paired_heatmap({str(k): comparisons["clear"] for k in range(4)}, ncols=3)
    assert len(fig.axes) == 5


def test_verdict_counts_and_replicate_agreement():
    base = rows()
    c = {"a": paired_comparison(base, rows(seed=1, shift=-3.0)),
         "b": paired_comparison(base, rows(seed=2))}
    counts = bm.verdict_counts(c)
    assert counts.loc["a", "cells"] == 15
    assert counts.loc["a", "better"] + counts.loc["a", "worse"] == 15
    assert counts.loc["a", "Bonferroni"] == 15
    assert counts.loc["b", "Bonferroni"] == 0
    agree = bm.replicate_agreement(c["a"], c["a"], c["b"])
    assert agree["replicates"].all() and agree["beyond seed"].all()
    agree = bm.replicate_agreement(c["a"], c["b"], c["b"])
    assert not agree["replicates"].any()


def test_beyond_seed_counts_clear_effects_larger_than_the_seed():
    base = rows()
    strong = paired_comparison(base, rows(seed=1, shift=-3.0))   # every cell clear, ~3 points
    seed = paired_comparison(base, rows(seed=2))                 # noise only
    out = bm.beyond_seed(strong, seed)
    assert out["counts"].all() and (out["verdict"] != "no clear difference").all()
    assert list(out.columns) == ["effect", "verdict", "seed alone", "seed verdict", "counts"]
    # a seed that moves as much as the run: nothing counts, though every verdict is clear
    out = bm.beyond_seed(strong, paired_comparison(base, rows(seed=3, shift=-5.0)))
    assert not out["counts"].any()
    # noise against a strong seed: no clear verdict, nothing counts
    assert not bm.beyond_seed(seed, strong)["counts"].any()
    table = bm.seed_summary({"strong": bm.beyond_seed(strong, seed),
                             "noise": bm.beyond_seed(seed, strong)})
    assert table.loc["strong", "count"] == table.loc["strong", "cells"] == 15
    assert table.loc["noise", "count"] == 0 and table.loc["noise", "which"] == ""
    assert "Grad-CAM AD better" in table.loc["strong", "which"].split(", ")


def test_paper_directions():
    tables = {"net_baseline": rows(), "net_regularized": rows(seed=1, shift=-3.0)}
    paper = {"net_baseline": {"AD": 30.0, "AG": 10.0},
             "net_regularized": {"AD": 28.0, "AG": 11.0}}
    comparisons = {"net": paired_comparison(tables["net_baseline"],
                                            tables["net_regularized"])}
    out = bm.paper_directions(paper, tables, comparisons)
    assert out.loc[("net", "AD"), ("paper", "change")] == pytest.approx(-2.0)
    assert out.loc[("net", "AD"), ("ours", "verdict")] == "better"
    assert out.loc[("net", "AG"), ("ours", "verdict")] == "worse"
    assert out.loc[("net", "AD"), ("ours", "change")] == pytest.approx(-3.0, abs=0.5)


def test_sweep_differences_and_figure_keep_the_window():
    tables = {"logit_lam0": rows(), "logit_lam0.1": rows(seed=1, shift=0.5),
              "logit_lam1": rows(seed=2, shift=-40.0), "loss_lam1": rows(seed=3)}
    info = {"logit_lam0": {"lam": 0.0, "gradient_of": "control", "top1": 60.0},
            "logit_lam0.1": {"lam": 0.1, "gradient_of": "logit", "top1": 59.9},
            "logit_lam1": {"lam": 1.0, "gradient_of": "logit", "top1": 5.0},
            "loss_lam1": {"lam": 1.0, "gradient_of": "loss", "top1": 59.0}}
    d = bm.sweep_differences(tables, info, "logit_lam0", threshold=58.5)
    assert set(d["run"]) == {"logit_lam0.1", "logit_lam1", "loss_lam1"}
    assert not d[d["run"] == "logit_lam1"]["inside"].any()
    assert d[d["run"] == "logit_lam0.1"]["inside"].all()
    fig = bm.sweep_figure(d, lam_star=0.1, paper_lam=7.5e-3, title="t")
    assert len(fig.axes) == 6
    ad = fig.axes[0]
    lo, hi = ad.get_ylim()
    assert -10 < lo and hi < 10  # the collapsed run (40 points) does not set the scale
    markers = [c for c in ad.collections if len(c.get_offsets())]
    assert any(np.isclose(c.get_offsets()[:, 1], hi, atol=0.1 * (hi - lo)).any()
               for c in markers)  # its markers sit at the edge
    lines = [ln for ln in ad.get_lines() if ln.get_linestyle() in (":", "--")
             and len(ln.get_xdata()) == 2]
    assert {ln.get_color() for ln in lines} >= {style.color("lambda*"), style.color("paper")}
    assert fig.axes[-1].get_legend() is not None
    empty = bm.sweep_differences({"logit_lam1": tables["logit_lam1"]}, info, "logit_lam0", 58.5)
    assert len(empty) == 0
    with pytest.raises(ValueError):
        bm.sweep_figure(empty)


def test_top1_from_rows():
    t = rows(n=8)
    # predicted is wrong for images 0 and 4 of 8; one row per image is counted
    assert bm.top1_from_rows(t) == pytest.approx(75.0)
    with pytest.raises(ValueError):
        bm.top1_from_rows(t.iloc[:0])
