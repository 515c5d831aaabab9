"""The convention sensitivity of the metric chapter (interpretable.book.conventions) on tiny
synthetic result files: verdicts per set of conventions, the "changes" columns, pairing on the
rows all four tables share, pending pairs; one check on the committed files when present."""

from __future__ import annotations

import json

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

from interpretable.book import conventions as cv  # noqa: E402
from interpretable.metrics import METRICS, _results  # noqa: E402
from interpretable.study import reference  # noqa: E402
from interpretable.tables import paired_comparison  # noqa: E402

N = 40
METHODS = ("FastCAM", "Grad-CAM")  # not in the book's order on purpose


def rows(indices=range(N), shift=None, methods=METHODS, seed=0):
    """A per-image table; ``shift[method][column]`` added to that metric of every image."""
    rng = np.random.default_rng(seed)
    common = np.random.default_rng(1).uniform(10, 60, size=(1000, len(METRICS)))
    out = []
    for m in methods:
        for i in indices:
            noise = rng.normal(0, 0.1, len(METRICS))
            out.append({"index": i, "label": 1, "predicted": 1, "target": 1, "method": m,
                        "Y": 0.6, "O": 0.5,
                        **{mt.column: common[i, k] + noise[k]
                           + (shift or {}).get(m, {}).get(mt.column, 0.0)
                           for k, mt in enumerate(METRICS)}})
    return pd.DataFrame(out)


# other - base: ours says Deletion better for both methods; the authors' conventions say worse
# for FastCAM and better for Grad-CAM; Insertion: no difference under ours, FastCAM better
# under the authors'.
OURS = {"FastCAM": {"deletion": -2.0}, "Grad-CAM": {"deletion": -2.0}}
AUTHORS = {"FastCAM": {"deletion": 2.0, "insertion": 2.0}, "Grad-CAM": {"deletion": -2.0}}


def loaded():
    return {"ours": (rows(), rows(shift=OURS, seed=1)),
            "authors": (rows(seed=2), rows(shift=AUTHORS, seed=3))}


def test_verdicts_and_changes():
    t = cv.compare_conventions(loaded(), "resnet18", "paper λ vs baseline")
    assert list(t["method"]) == ["Grad-CAM", "Grad-CAM", "FastCAM", "FastCAM"]  # book order
    assert list(t["metric"]) == ["Ins", "Del"] * 2
    assert (t["arch"] == "resnet18").all() and (t["images"] == N).all()
    v = t.set_index(["method", "metric"])
    assert v.loc[("FastCAM", "Del"), "ours verdict"] == "better"
    assert v.loc[("FastCAM", "Del"), "authors verdict"] == "worse"
    assert v.loc[("FastCAM", "Ins"), "ours verdict"] == "no clear difference"
    assert v.loc[("FastCAM", "Ins"), "authors verdict"] == "better"
    assert v.loc[("Grad-CAM", "Del"), ["ours verdict", "authors verdict"]].eq("better").all()
    assert v["verdict changes"].to_dict() == {
        ("Grad-CAM", "Ins"): False, ("Grad-CAM", "Del"): False,
        ("FastCAM", "Ins"): True, ("FastCAM", "Del"): True}
    assert v.loc[("FastCAM", "Del"), "ours difference"] == pytest.approx(-2.0, abs=0.1)
    half = v["authors ci half-width"]
    assert np.allclose(half, (v["authors ci high"] - v["authors ci low"]) / 2)


def test_bonferroni_over_all_five_metrics_as_the_chapter():
    data = loaded()
    t = cv.compare_conventions(data).set_index(["method", "metric"])
    ref = paired_comparison(*data["authors"]).set_index(["method", "metric"])
    for key in t.index:
        assert t.loc[key, "authors bonferroni verdict"] == ref.loc[key, "bonferroni verdict"]
        assert t.loc[key, "authors difference"] == ref.loc[key, "difference"]
    changes = t["ours bonferroni verdict"] != t["authors bonferroni verdict"]
    assert (t["bonferroni verdict changes"] == changes).all()


def _write(path, table, conventions, provenance=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": 1, "step": 32}
    if conventions != "ours":  # files from before the conventions were recorded: ours
        meta.update(conventions=conventions, substrate="mean", blur_kernel=5, blur_sigma=5.0)
    _results.save(path, table.to_dict("records"), meta)
    _results.write_meta(path, meta)
    if provenance:
        path.with_name(path.name + ".provenance.json").write_text(json.dumps({"ok": 1}))


def make_root(tmp_path, authors_of_other=True):
    """Two runs: ours on N images (and one more method), the authors' on a subset."""
    sub = range(0, N, 2)
    big = {m: {"deletion": 50.0} for m in METHODS}  # outside the subset: far off
    other = pd.concat([rows(sub, OURS, seed=1), rows(range(1, N, 2), big, seed=1)])
    _write(tmp_path / "a_base" / cv.FILES["ours"],
           rows(methods=(*METHODS, "Score-CAM")), "ours")
    _write(tmp_path / "a_other" / cv.FILES["ours"], other, "ours")
    _write(tmp_path / "a_base" / cv.FILES["authors"], rows(sub, seed=2), "authors")
    _write(tmp_path / "a_other" / cv.FILES["authors"], rows(sub, AUTHORS, seed=3), "authors",
           provenance=authors_of_other)
    return tmp_path


def test_load_pair_keeps_the_rows_all_four_share(tmp_path):
    root = make_root(tmp_path)
    got = cv.load_pair(root, cv.Pair("a", "other vs base", "a_base", "a_other"))
    assert set(got) == {"ours", "authors"}
    for base, other in got.values():
        for t in (base, other):
            assert set(t["index"]) == set(range(0, N, 2))
            assert set(t["method"]) == set(METHODS)  # Score-CAM: only in one file
            assert len(t) == len(METHODS) * N // 2
    t = cv.compare_conventions(got).set_index(["method", "metric"])
    assert (t["images"] == N // 2).all()
    assert t.loc[("Grad-CAM", "Del"), "ours difference"] == pytest.approx(-2.0, abs=0.1)


def test_load_pair_checks_the_conventions_of_the_files(tmp_path):
    root = make_root(tmp_path)
    _write(root / "a_base" / cv.FILES["authors"], rows(range(0, N, 2)), "ours")
    with pytest.raises(ValueError, match="conventions"):
        cv.load_pair(root, cv.Pair("a", "x", "a_base", "a_other"))


def test_pending_pairs_are_named_and_left_out(tmp_path, capsys):
    root = make_root(tmp_path, authors_of_other=False)  # no provenance: unfinished
    pairs = [cv.Pair("a", "other vs base", "a_base", "a_other"),
             cv.Pair("a", "missing", "a_base", "nowhere")]
    ready, pending = cv.available(root, pairs)
    assert ready == [] and pending == pairs
    t = cv.sensitivity(root, pairs)
    assert len(t) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "a_other vs a_base" in out[0] and "nowhere" in out[0]
    (root / "a_other" / (cv.FILES["authors"] + ".provenance.json")).write_text("{}")
    t = cv.sensitivity(root, pairs)
    assert set(t["comparison"]) == {"other vs base"} and len(t) == 4
    assert "nowhere" in capsys.readouterr().out


def test_default_pairs_add_the_from_scratch_lambda_when_chosen(tmp_path):
    pairs = cv.default_pairs(tmp_path)  # nothing trained: a placeholder, never available
    assert pairs[:2] == list(cv.PAIRS) and len(pairs) == 3
    assert cv.available(tmp_path, pairs[2:])[1] == pairs[2:]
    (tmp_path / "resnet18_baseline").mkdir()
    (tmp_path / "resnet18_baseline" / "summary.json").write_text('{"test_acc": 65.0}')
    for lam, acc in ((0.05, 64.9), (0.1, 63.8), (0.2, 60.0)):
        d = tmp_path / "scratch" / "resnet18" / f"lam{lam:g}"
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"test_acc": acc}))
    star = cv.default_pairs(tmp_path)[2]
    assert star.other == "scratch/resnet18/lam0.1" and "0.1" in star.comparison
    (tmp_path / "scratch/resnet18/lam0.05/summary.json").write_text('{"test_acc": 1.0}')
    (tmp_path / "scratch/resnet18/lam0.1/summary.json").write_text('{"test_acc": 1.0}')
    assert cv.default_pairs(tmp_path) == list(cv.PAIRS)  # no lambda qualified


def test_verdict_table_and_figure():
    t = pd.concat([cv.compare_conventions(loaded(), "resnet18", "one"),
                   cv.compare_conventions(loaded(), "mobilenet_v2", "two")])
    text = cv.verdict_table(t)
    assert list(text.columns) == ["ours", "authors", "changes", "images"]
    cell = text.loc[("ResNet-18", "one", "FastCAM", "Del")]
    assert cell["ours"].endswith("better*") and cell["authors"].endswith("worse*")
    assert cell["changes"] == "yes"
    assert text.loc[("MobileNet-V2", "two", "Grad-CAM", "Ins"), "changes"] == ""
    fig = cv.sensitivity_figure(t, title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    bold = [lab.get_text() for lab in fig.axes[1].get_yticklabels()
            if lab.get_fontweight() == "bold"]
    assert bold == ["FastCAM"]
    with pytest.raises(ValueError, match="empty"):
        cv.sensitivity_figure(pd.DataFrame())


def test_the_committed_files():
    root = reference.find_root()
    ready, _ = cv.available(root, cv.PAIRS)
    if not ready:
        pytest.skip("no committed results under the authors' conventions")
    t = cv.sensitivity(root, ready)
    assert len(t) == 6 * len(ready)  # three methods x Ins, Del
    assert (t["images"] == 2000).all()
    assert t["verdict changes"].dtype == bool
