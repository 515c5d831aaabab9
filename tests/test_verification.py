"""interpretable.metrics.verification: recompute a seeded sample of a result file from its
checkpoint and compare, against the file itself and tampered copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _metric_models import copy_run, save_run

from interpretable.metrics import _results, runs, verification


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return save_run(tmp_path_factory.mktemp("run"))


# -- verification ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def evaluated(run, test_set, tmp_path_factory):
    folder = copy_run(run, tmp_path_factory.mktemp("verify"))
    runs.evaluate_run(folder, "gradcam,scorecam", 6, seed=2, batch_size=4, progress=False,
                      target="predicted")
    return folder / "metrics.csv.gz"


def test_verify_accepts_its_own_file(evaluated, test_set):
    report = verification.verify_results(evaluated, n=3, seed=5)  # checkpoint from the provenance
    assert report.ok and report.rows_checked == 6 and len(report.indices) == 3
    images = sorted({r["index"] for r in _results.read(evaluated)[0]})
    g = torch.Generator().manual_seed(5)
    assert report.indices == sorted(images[i] for i in torch.randperm(6, generator=g)[:3])
    assert report.methods == ["Grad-CAM", "Score-CAM"]
    assert set(report.max_difference) == set(verification.TOLERANCES)
    assert "all agree" in str(report)
    some = verification.verify_results(evaluated, n=2, seed=5, methods="gradcam")
    assert some.ok and some.methods == ["Grad-CAM"] and some.rows_checked == 2
    with pytest.raises(ValueError, match=r"methods \['fastcam'\] are not in"):
        verification.verify_results(evaluated, n=2, methods="gradcam,fastcam")
    with pytest.raises(ValueError, match=r"n must be an int in 1\.\.6"):
        verification.verify_results(evaluated, n=7)


def _tampered(evaluated: Path, tmp_path: Path, changes: dict[int, dict[str, float]]) -> Path:
    """A copy of the result file with ``{k-th image: {column: added value}}`` applied to the
    Score-CAM rows, and a provenance that points at the original checkpoint."""
    folder = tmp_path / "t"
    folder.mkdir()
    rows, meta = _results.read(evaluated)
    images = sorted({r["index"] for r in rows})
    for r in rows:
        k = images.index(r["index"])
        if r["method"] == "Score-CAM" and k in changes:
            for column, delta in changes[k].items():
                r[column] += delta
    out = folder / "metrics.csv.gz"
    _results.save(out, rows, meta)
    _results.write_meta(out, meta)
    prov = json.loads(runs.provenance_path(evaluated).read_text())
    prov["checkpoint"] = str(evaluated.parent / "final.pt")
    runs.provenance_path(out).write_text(json.dumps(prov))
    return out


def test_verify_catches_changed_values(evaluated, tmp_path):
    bad = {0: {"insertion": 2.0}, 1: {"deletion": -1.5}, 2: {"Y": 1e-4}, 3: {"ad": 0.5}}
    within = {4: {"O": 1e-7, "insertion": 0.2}, 5: {"ag": 1e-4, "deletion": -0.3}}
    out = _tampered(evaluated, tmp_path, {**bad, **within})
    report = verification.verify_results(out, n=6, raise_on_mismatch=False)
    images = report.indices
    assert not report.ok and len(report.mismatches) == len(bad)
    for m, (k, change) in zip(report.mismatches, bad.items(), strict=True):
        assert m["index"] == images[k] and m["method"] == "Score-CAM"
        assert f"Score-CAM: {next(iter(change))} " in m["problem"]
    assert "4 disagree" in str(report)
    with pytest.raises(verification.ResultMismatch, match="4 disagree, e.g. image"):
        verification.verify_results(out, n=6)


def test_verify_catches_other_weights(evaluated, tmp_path):
    other = save_run(tmp_path, seed=7)
    with pytest.raises(verification.ResultMismatch,
                       match="not the checkpoint the provenance names"):
        verification.verify_results(evaluated, other, n=1)
    out = _tampered(evaluated, tmp_path, {})
    runs.provenance_path(out).unlink()
    with pytest.raises(FileNotFoundError, match="pass the checkpoint"):
        verification.verify_results(out, n=1)
    with pytest.raises(verification.ResultMismatch, match="weights_sha1 differs"):
        verification.verify_results(out, other, n=1)
    assert verification.verify_results(out, evaluated.parent, n=1).ok


def test_compare_rows_rules():
    base = {"index": 1, "label": 2, "predicted": 2, "target": 2, "method": "m", "Y": 0.3,
            "O": 0.3 + 1e-6, "ad": 0.0, "ag": 1e-4, "ai": 100.0, "insertion": 50.0,
            "deletion": 10.0}
    flipped = {**base, "O": 0.3 - 1e-6, "ai": 0.0, "ad": 100 * 1e-6 / 0.3, "ag": 0.0}
    assert verification.compare_rows([base], [flipped])[0] == []  # AI flip within rounding of O - Y
    far = {**base, "O": 0.2, "ai": 0.0, "ad": 100 / 3, "ag": 0.0}
    bad = verification.compare_rows([base], [far])[0]
    assert len(bad) == 1 and "ai 100 != 0" in bad[0]["problem"] and "O " in bad[0]["problem"]
    # AD where Y is tiny: a rounding-size change of O moves AD a lot, and is accepted
    tiny = {**base, "Y": 1e-6, "O": 5e-7, "ad": 50.0, "ai": 0.0}
    assert verification.compare_rows([tiny], [{**tiny, "O": 5e-7 + 1e-7, "ad": 40.0}])[0] == []
    assert verification.compare_rows([base], [{**base, "ad": 0.01}])[0] != []
    assert verification.compare_rows([base], [{**base, "predicted": 3}])[0][0]["problem"] \
        .endswith("predicted 2 != 3")
    missing = verification.compare_rows([], [base])[0]
    assert "no row in the file" in missing[0]["problem"]
    nan = {**base, "insertion": float("nan")}
    assert verification.compare_rows([nan], [nan])[0] == []
    assert verification.compare_rows([nan], [base])[0] != []
