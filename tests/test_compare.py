"""``interpretable.compare`` and ``python -m interpretable compare``: hand-made result files
whose means, intervals and paired differences are known (and the grid of
``interpretable.tables.paired_comparison`` the report shows)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from interpretable.cli import main
from interpretable.compare import load_results, report, top1
from interpretable.metrics import METRICS, provenance_path
from interpretable.metrics._results import save, write_meta
from interpretable.stats import t_quantile
from interpretable.tables import paired_comparison, paired_grid, paired_images

COLUMNS = ["index", "label", "predicted", "target", "method", "Y", "O", "ad", "ag", "ai",
           "insertion", "deletion"]


def _rows(method, ad, deletion, start=0):
    n = len(ad)
    return pd.DataFrame({"index": np.arange(start, start + n), "label": 0, "predicted": 0,
                         "target": 0, "method": method, "Y": 0.5, "O": 0.5, "ad": ad, "ag": 1.0,
                         "ai": 0.0, "insertion": 30.0, "deletion": deletion})[COLUMNS]


def _write(frame, path, complete=True):
    save(path, frame.to_dict("records"), {"format": 1})
    write_meta(path, {"format": 1})
    if complete:  # evaluate writes the provenance record when it finishes
        provenance_path(path).write_text("{}")


@pytest.fixture
def runs(tmp_path):
    a, b = tmp_path / "base", tmp_path / "other"
    a.mkdir()
    b.mkdir()
    _write(_rows("Grad-CAM", [10.0, 20.0, 30.0, 40.0], [5.0, 5.0, 5.0, 5.0]), a / "metrics.csv.gz")
    _write(_rows("Score-CAM", [1.0, 1.0], [2.0, 2.0]), a / "metrics_scorecam.csv.gz")
    # AD lower by 1, 2, 3, 4 on the same images: mean -2.5, sd 1.29; Del the same everywhere
    _write(_rows("Grad-CAM", [9.0, 18.0, 27.0, 36.0], [5.0, 5.0, 5.0, 5.0]), b / "metrics.csv.gz")
    (b / "summary.json").write_text(json.dumps({"test_acc": 60.0,
                                                "test_acc_float16_weights": 60.01}))
    return a, b


def test_folder_results_are_both_files(runs):
    t = load_results(runs[0])
    assert sorted(t["method"].unique()) == ["Grad-CAM", "Score-CAM"] and len(t) == 6
    assert t.attrs["files"] == {"Grad-CAM": "metrics.csv.gz",
                                "Score-CAM": "metrics_scorecam.csv.gz"}
    one = load_results(runs[0] / "metrics_scorecam.csv.gz")
    assert len(one) == 2 and one.attrs["files"] == {"Score-CAM": "metrics_scorecam.csv.gz"}
    assert top1(runs[0]) is None and top1(runs[1]) == 60.01


def test_report_numbers(runs):
    text = report(runs)
    half = t_quantile(0.975, 3) * np.std([10, 20, 30, 40], ddof=1) / 2
    assert f"25.00 ± {half:.2f}" in text            # base Grad-CAM AD
    assert "60.01" in text                          # other's top-1
    d_half = t_quantile(0.975, 3) * np.std([1, 2, 3, 4], ddof=1) / 2
    line = next(x for x in text.splitlines() if x.startswith("Grad-CAM") and "±" in x
                and "+0.00" in x)
    assert f"-2.50 ± {d_half:.2f} better" in line   # lower AD is better; excludes 0
    assert "paired over 4 images" in text and "Bonferroni correction over the 5 cells" in text
    assert "Score-CAM" not in text.split("minus")[1]  # only shared methods are compared
    assert "In progress" not in text


def test_report_names_partial_files(runs):
    provenance_path(runs[0] / "metrics_scorecam.csv.gz").unlink()  # as while evaluate runs
    last = report(runs).splitlines()[-1]
    assert last.startswith("In progress") and "base Score-CAM (metrics_scorecam.csv.gz, 2 " \
        "images so far)" in last and "Grad-CAM" not in last


def test_markdown(runs):
    text = report(runs, markdown=True)
    assert "| run | method | AD | AG | AI | Ins | Del | images | top-1 % |" in text
    assert "| method | AD | AG | AI | Ins | Del |" in text


def test_errors(runs, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="none of metrics.csv.gz"):
        load_results(tmp_path)
    dup = tmp_path / "dup"
    dup.mkdir()
    _write(_rows("Grad-CAM", [1.0, 2.0], [1.0, 1.0]), dup / "metrics.csv.gz")
    _write(_rows("Grad-CAM", [1.0, 2.0], [1.0, 1.0]), dup / "metrics_scorecam.csv.gz")
    with pytest.raises(ValueError, match="'Grad-CAM' is in two result files"):
        load_results(dup)
    with pytest.raises(SystemExit) as e:
        main(["compare", str(runs[0]), str(tmp_path / "missing")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such result file or run folder" in err


def test_command_prints_the_report(runs, capsys):
    assert main(["compare", *map(str, runs)]) == 0
    assert capsys.readouterr().out.strip() == report(runs)


def test_paired_grid_cells(runs):
    c = paired_comparison(load_results(runs[0]), load_results(runs[1]))
    grid = paired_grid(c)
    assert list(grid.index) == ["Grad-CAM"] and list(grid.columns) == [m.name for m in METRICS]
    d_half = t_quantile(0.975, 3) * np.std([1, 2, 3, 4], ddof=1) / 2
    # 4 images: the Bonferroni interval over 5 cells (t_{0.995, 3} = 5.84) covers 0: no star
    assert grid.loc["Grad-CAM", "AD"] == f"-2.50 ± {d_half:.2f} better"
    assert grid.loc["Grad-CAM", "Del"] == "+0.00 ± 0.00"  # no verdict where nothing differs
    assert paired_images(c) == "4"


def test_paired_grid_marks_bonferroni_and_images_range():
    import pandas as pd

    c = pd.DataFrame({"method": ["m", "m", "m"], "metric": ["AD", "AG", "Del"],
                      "difference": [-2.0, 1.0, 0.5], "ci half-width": [0.5, 0.8, 0.6],
                      "images": [2000, 1998, 2000],
                      "verdict": ["better", "better", "no clear difference"],
                      "bonferroni verdict": ["better", "no clear difference",
                                             "no clear difference"]})
    grid = paired_grid(c)
    assert grid.loc["m", "AD"] == "-2.00 ± 0.50 better*"
    assert grid.loc["m", "AG"] == "+1.00 ± 0.80 better"
    assert grid.loc["m", "Del"] == "+0.50 ± 0.60"
    assert pd.isna(grid.loc["m", "AI"])  # a metric not compared stays empty
    assert paired_images(c) == "1998-2000"
