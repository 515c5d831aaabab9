"""interpretable.tables: summaries of one result table (against scipy) and the paired
comparison of two (against scipy's ttest_rel and hand computations)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from interpretable.metrics import METRICS
from interpretable.tables import (
    lower_is_better,
    paired_comparison,
    paper_table,
    summarize,
    summary_lines,
)

BETTER = {m.column: m.sign for m in METRICS}


def test_the_metric_table():
    assert [(m.column, m.name, m.better) for m in METRICS] == [
        ("ad", "AD", "lower"), ("ag", "AG", "higher"), ("ai", "AI", "higher"),
        ("insertion", "Ins", "higher"), ("deletion", "Del", "lower")]
    assert BETTER == {"ad": -1, "ag": 1, "ai": 1, "insertion": 1, "deletion": -1}
    assert lower_is_better() == "AD and Del"


def test_summarize_and_paper_table():
    rows = []
    vals = {"A": [10.0, 20.0, 40.0], "B": [1.0, 2.0, 3.0]}
    for method, v in vals.items():
        for i, val in enumerate(v):
            rows.append({"index": i, "label": 0, "predicted": 0, "target": 0, "method": method,
                         "Y": 0.5, "O": 0.4, "ad": val, "ag": 2 * val, "ai": 100.0 * (i % 2),
                         "insertion": val, "deletion": math.nan})
    summary = summarize(rows)
    a_ad = next(s for s in summary if s["method"] == "A" and s["metric"] == "ad")
    from scipy import stats

    v = np.array(vals["A"])
    assert a_ad["mean"] == pytest.approx(v.mean())
    assert a_ad["sem"] == pytest.approx(stats.sem(v))
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert (a_ad["ci_low"], a_ad["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    dele = next(s for s in summary if s["method"] == "B" and s["metric"] == "deletion")
    assert dele["n"] == 0 and math.isnan(dele["mean"])
    table = paper_table(rows)
    assert list(table) == ["A", "B"] and list(table["A"]) == ["AD", "AG", "AI", "Ins", "Del"]
    assert table["B"]["AG"] == pytest.approx(4.0) and table["A"]["AI"] == pytest.approx(100 / 3)
    import pandas as pd

    frame = paper_table(pd.DataFrame(rows), ci=True)
    assert list(frame.columns) == ["AD", "AG", "AI", "Ins", "Del"]
    assert frame.loc["B", "AD"] == f"2.00 ± {stats.t.ppf(0.975, 2) * stats.sem([1, 2, 3]):.2f}"
    summary_frame = summarize(pd.DataFrame(rows))
    assert isinstance(summary_frame, pd.DataFrame) and len(summary_frame) == 10
    # the text table of the evaluate command: header, then means and image counts
    lines = summary_lines(pd.DataFrame(rows))
    assert lines[0].split() == ["method", "AD", "AG", "AI", "Ins", "Del", "images"]
    assert lines[2].split() == ["B", "2.00", "4.00", "33.33", "2.00", "nan", "3"]
    with pytest.raises(ValueError, match="empty"):
        summarize([])
    with pytest.raises(ValueError, match="confidence"):
        summarize(rows, confidence=95)


# -- paired_comparison ---------------------------------------------------------------------
def _table(seed, n=30, methods=("Grad-CAM", "FastCAM"), shift=None):
    """An evaluate-style tidy table (list of row dicts) with random metric values."""
    g = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        for m in methods:
            r = {"index": 100 + i, "method": m, "label": 1, "predicted": 1, "target": 1}
            for col in BETTER:
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
    for col in BETTER:
        other[col] = base[col] + g.normal(0, 3, len(base))
    fc = other["method"] == "FastCAM"
    other.loc[fc, "ad"] += 10       # AD up: worse
    other.loc[fc, "insertion"] += 10  # Ins up: better
    other = other.sample(frac=1, random_state=0).iloc[:-4]  # shuffled, 4 rows fewer
    res = paired_comparison(base, other)
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
        sign = BETTER[col]
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
    res = paired_comparison(base, rows([12.0, 23.0, 34.0]), better={"ag": 1, "ad": -1})
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
    res = paired_comparison(base, rows([14.0, 25.0, 36.0]), better={"ag": 1, "ad": -1})
    assert [r["bonferroni verdict"] for r in res] == ["better", "worse"]
    single = paired_comparison(base, rows([12.0, 23.0, 34.0]), better={"ag": 1})[0]
    assert single["bonferroni verdict"] == single["verdict"]  # one cell: nothing to correct
    # differences 1, -1, 2: the interval covers 0
    res = paired_comparison(base, rows([11.0, 19.0, 32.0]), better={"ag": 1})
    assert res[0]["verdict"] == "no clear difference"
    assert res[0]["difference"] == pytest.approx(2 / 3)
    # one image: no interval, no verdict; NaN pairs are skipped
    one = paired_comparison(rows([1.0]), rows([5.0]), better={"ag": 1})[0]
    assert one["images"] == 1 and np.isnan(one["ci half-width"])
    assert one["verdict"] == one["bonferroni verdict"] == "no clear difference"
    nan = paired_comparison(base, rows([12.0, float("nan"), 34.0]), better={"ag": 1})
    assert nan[0]["images"] == 2 and nan[0]["difference"] == pytest.approx(3.0)


def test_paired_comparison_errors():
    base = _table(0, n=3)
    with pytest.raises(ValueError, match="share no"):
        paired_comparison(base, _table(1, n=3, methods=("Score-CAM",)))
    with pytest.raises(ValueError, match="more than one row"):
        paired_comparison(base + base[:1], base)
    with pytest.raises(ValueError, match=r"better\['ad'\] must be \+1"):
        paired_comparison(base, base, better={"ad": 0})
    with pytest.raises(ValueError, match="no column 'speed'"):
        paired_comparison(base, base, better={"speed": 1})
    with pytest.raises(TypeError, match="other must be a DataFrame or a list"):
        paired_comparison(base, "table.csv")
    with pytest.raises(ValueError, match="confidence"):
        paired_comparison(base, base, confidence=95)
