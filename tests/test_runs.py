"""interpretable.metrics.runs: evaluating a run, result files, resume, provenance.

A tiny random ResNet-18 checkpoint and a few real CIFAR-100 test images keep this fast; the
rows are checked against direct calls of the methods and metrics, the provenance against
hashlib and git, resuming against an uninterrupted run. Verification: test_verification.py.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from _metric_models import copy_run, save_run

import interpretable as itp
from interpretable.attribution import (
    CAM_METHODS,
    DEFAULT_CAMS,
    FastCAM,
    GradCAM,
    GradCAMPlusPlus,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from interpretable.metrics import _results, confidence_scores, insertion_deletion, runs

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return save_run(tmp_path_factory.mktemp("run"))


# -- arguments ------------------------------------------------------------------------------
def test_methods_are_built_from_the_registry(run, test_set, tmp_path):
    model, _ = itp.models.load_checkpoint(run / "final.pt")
    import contextlib

    with contextlib.ExitStack() as stack:
        built = runs._built(model, list(CAM_METHODS), stack)
        want = {"Grad-CAM": GradCAM, "Grad-CAM++": GradCAMPlusPlus, "XGrad-CAM": XGradCAM,
                "Layer-CAM": LayerCAM, "Score-CAM": ScoreCAM, "FastCAM": FastCAM}
        assert list(built) == list(want)  # the display names the result files keep
        for name, obj in built.items():
            assert type(obj) is want[name] and obj.model is model
        # the same code path from the first batch on (see runs._built)
        assert all(o.optimize is True for n, o in built.items() if n != "FastCAM")
        assert built["FastCAM"].cam.optimize is True
    assert DEFAULT_CAMS == ("gradcam", "gradcam++", "scorecam", "fastcam")
    kw = dict(out=tmp_path / "m.csv", progress=False, dataset=test_set)
    with pytest.raises(ValueError, match=r"unknown method 'gradcam\+'; choose from gradcam"):
        runs.evaluate_run(run, "gradcam,gradcam+", 2, **kw)
    with pytest.raises(ValueError, match="unknown method 'gradient'"):  # not a CAM
        runs.evaluate_run(run, ["gradient"], 2, **kw)
    with pytest.raises(ValueError, match="at least one"):
        runs.evaluate_run(run, " , ", 2, **kw)
    assert not list(tmp_path.iterdir())


def test_find_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a run folder nor a checkpoint"):
        runs.find_checkpoint(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="looked for final.pt and last.pt"):
        runs.find_checkpoint(tmp_path)
    (tmp_path / "last.pt").write_bytes(b"x")
    assert runs.find_checkpoint(tmp_path) == tmp_path / "last.pt"
    (tmp_path / "final.pt").write_bytes(b"x")
    assert runs.find_checkpoint(tmp_path) == tmp_path / "final.pt"
    assert runs.find_checkpoint(tmp_path / "last.pt") == tmp_path / "last.pt"
    assert runs.default_out(tmp_path) == tmp_path / "metrics.csv.gz"
    assert runs.default_out(tmp_path / "last.pt") == tmp_path / "metrics.csv.gz"
    assert runs.default_out(tmp_path, "authors") == tmp_path / "metrics_authors.csv.gz"
    assert runs.provenance_path(tmp_path / "m.csv.gz").name == "m.csv.gz.provenance.json"


def test_bad_arguments(run, test_set, tmp_path):
    kw = dict(out=tmp_path / "m.csv", progress=False, dataset=test_set)
    for n in (0, -1, 10_001, 2.5, True):
        with pytest.raises(ValueError, match=r"images must be 'all' or a whole number in "
                           r"1\.\.10000"):
            runs.evaluate_run(run, "gradcam", n, **kw)
    with pytest.raises(ValueError, match="target must be 'label' or 'predicted'"):
        runs.evaluate_run(run, "gradcam", 2, target="true", **kw)
    with pytest.raises(ValueError, match="batch_size"):
        runs.evaluate_run(run, "gradcam", 2, batch_size=0, **kw)
    with pytest.raises(ValueError, match=r"\.csv, \.csv\.gz or \.json"):
        runs.evaluate_run(run, "gradcam", 2, out=tmp_path / "m.txt", progress=False)
    assert not list(tmp_path.iterdir())


# -- evaluate_run -----------------------------------------------------------------------------
def test_rows_match_direct_calls_and_provenance(run, test_set, tmp_path):
    folder = copy_run(run, tmp_path)
    command = ["python", "-m", "interpretable", "evaluate", str(folder), "--images", "5"]
    res = runs.evaluate_run(folder, "gradcam,fastcam", 5, seed=3, batch_size=4,
                            progress=False, command=command, device="cpu")
    out = folder / "metrics.csv.gz"
    assert res.out == out and out.exists() and res.images_computed == 5
    table = res.table
    want_idx = sorted(torch.randperm(10_000, generator=torch.Generator().manual_seed(3))[:5]
                      .tolist())
    assert table["index"].tolist() == [i for i in want_idx for _ in range(2)]
    assert table["method"].tolist() == ["Grad-CAM", "FastCAM"] * 5
    # Grad-CAM's rows from the methods and metrics called directly, batch by batch
    model, _ = itp.models.load_checkpoint(folder / "final.pt")
    x, y = test_set.tensors(want_idx)
    rows = table[table.method == "Grad-CAM"]
    for sl in (slice(0, 4), slice(4, 5)):
        # the maps' own correctness is test_cam's; the optimized forward, as evaluate_run
        # uses it, avoids float-rounding flips of nearly equal pixels in the ranking
        maps = GradCAM(model, optimize=True)(x[sl], y[sl])
        ad, ag, ai, yy, o = confidence_scores(model, x[sl], maps, y[sl], return_probs=True)
        ins, dele = insertion_deletion(model, x[sl], maps, y[sl], step=32)
        for col, val in (("Y", yy), ("O", o), ("ad", ad), ("ag", ag), ("ai", ai),
                         ("insertion", ins), ("deletion", dele)):
            np.testing.assert_allclose(rows[col].to_numpy()[sl], val.numpy(), atol=1e-5,
                                       err_msg=col)
    assert (rows["label"].to_numpy() == y.numpy()).all()
    # the file holds exactly the returned rows, and reads back as the same table
    back = runs.read_results(out)
    assert back.equals(table)
    # provenance, against independent computations
    prov = json.loads(runs.provenance_path(out).read_text())
    assert prov == res.provenance
    assert prov["checkpoint_sha256"] == hashlib.sha256((folder / "final.pt").read_bytes()) \
        .hexdigest()
    assert prov["checkpoint"] == "final.pt" and prov["results"] == "metrics.csv.gz"
    assert prov["checkpoint_meta"]["arch"] == "resnet18" and prov["checkpoint_meta"]["epoch"] == 3
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert prov["git"]["commit"] == head and isinstance(prov["git"]["dirty"], bool)
    assert prov["command"] == " ".join(command)
    assert prov["version"] == itp.__version__ and prov["torch"] == torch.__version__
    assert prov["device"] == "cpu" and prov["seconds"] > 0
    assert (prov["images"], prov["images_computed"], prov["images_resumed"]) == (5, 5, 0)
    assert (prov["seed"], prov["target"], prov["batch_size"], prov["step"]) == (3, "label", 4, 32)
    assert (prov["conventions"], prov["substrate"], prov["blur_kernel"], prov["blur_sigma"]) \
        == ("ours", "black", 11, 5.0)
    assert res.checkpoint == folder / "final.pt"
    assert prov["methods"] == ["gradcam", "fastcam"]
    assert prov["method_names"] == ["Grad-CAM", "FastCAM"]
    assert datetime.strptime(prov["date_utc"], "%Y-%m-%dT%H:%M:%SZ")
    data = itp.data.find_cifar100()
    assert prov["data"]["file"] == "cifar100.npz"
    h = hashlib.sha256()
    with open(data, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    assert prov["data"]["sha256"] == h.hexdigest()


def _failing_after(calls: int):
    """build_method whose FastCAM raises at its ``calls``-th call (a run killed mid-way)."""
    real = runs.build_method
    count = {"n": 0}

    def build(key, model, **options):
        built = real(key, model, **options)
        if key != "fastcam":
            return built

        class Dying:
            def __init__(self):
                self.model = model

            def __enter__(self):
                built.__enter__()
                return self

            def __exit__(self, *exc):
                return built.__exit__(*exc)

            def __call__(self, x, target):
                count["n"] += 1
                if count["n"] == calls:
                    raise KeyboardInterrupt
                return built(x, target)

        return Dying()

    return build


@pytest.mark.parametrize("suffix, methods", [(".csv.gz", "gradcam,scorecam,fastcam"),
                                             (".json", "gradcam++,fastcam")])
def test_interrupted_run_resumes_to_the_same_rows(run, test_set, tmp_path, monkeypatch,
                                                  suffix, methods):
    kw = dict(methods=methods, n_images=5, seed=1, batch_size=2, progress=False,
              dataset=test_set)
    n_methods = len(methods.split(","))
    out = tmp_path / f"m{suffix}"
    with monkeypatch.context() as m:
        m.setattr(runs, "build_method", _failing_after(3))
        with pytest.raises(KeyboardInterrupt):
            runs.evaluate_run(run, out=out, **kw)
    assert len(_results.read(out)[0]) == 2 * 2 * n_methods  # two finished batches of 2
    assert not runs.provenance_path(out).exists()  # written only once complete
    res = runs.evaluate_run(run, out=out, **kw)
    assert res.images_computed == 1 and res.provenance["images_resumed"] == 4
    fresh = runs.evaluate_run(run, out=tmp_path / f"fresh{suffix}", **kw)
    assert fresh.images_computed == 5
    # the same rows, bit for bit (floats are stored with repr)
    assert _results.read(out)[0] == _results.read(tmp_path / f"fresh{suffix}")[0]
    assert res.table.equals(fresh.table)
    if suffix == ".csv.gz":
        assert gzip.decompress(out.read_bytes()) == \
            gzip.decompress((tmp_path / f"fresh{suffix}").read_bytes())
    # a complete file: nothing to compute, the provenance stays as it was
    before = runs.provenance_path(out).read_text()
    again = runs.evaluate_run(run, out=out, **kw)
    assert again.images_computed == 0 and again.table.equals(res.table)
    assert runs.provenance_path(out).read_text() == before
    # other settings refuse to mix with the file
    with pytest.raises(ValueError, match="other settings"):
        runs.evaluate_run(run, out=out, **{**kw, "methods": "gradcam"})


# -- result files ----------------------------------------------------------------------------
def _fake_rows(n_images: int, start: int = 0) -> list[dict]:
    g = np.random.default_rng(start)
    rows = []
    for i in range(start, start + n_images):
        for m in ("Grad-CAM", "FastCAM"):
            y, o = g.random(2)
            rows.append({"index": i, "label": 3, "predicted": 4, "target": 3, "method": m,
                         "Y": float(y), "O": float(o), "ad": 100 * g.random(), "ag": 1 / 3,
                         "ai": 100.0 if o > y else 0.0, "insertion": float("nan"),
                         "deletion": 1e-300})
    return rows


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".json"])
def test_writer_is_incremental_and_exact(tmp_path, monkeypatch, suffix):
    path, meta = tmp_path / f"r{suffix}", {"format": 1, "n": 3}
    encoded = []
    real = _results._csv_text
    monkeypatch.setattr(_results, "_csv_text",
                        lambda rows, header: encoded.append(len(rows)) or real(rows, header))
    w = _results.ResultWriter(path, meta, _fake_rows(2))
    _results.write_meta(path, meta)
    allrows = _fake_rows(2)
    for b in range(5):
        new = _fake_rows(3, start=2 + 3 * b)
        allrows += new
        w.add(new)
        w.write()
        rows, back_meta = _results.read(path)
        assert back_meta == meta and len(rows) == len(allrows)
    if suffix != ".json":  # each row encoded once: linear, not quadratic, in the run length
        assert sum(encoded) == len(allrows)
    # exactly what a one-shot save writes, and floats come back bit for bit
    one = tmp_path / f"one{suffix}"
    _results.save(one, allrows, meta)
    _results.write_meta(one, meta)
    rows = _results.read(path)[0]
    assert repr(rows) == repr(_results.read(one)[0])  # repr: NaN equals NaN
    for a, b in zip(rows, allrows, strict=True):
        assert a["Y"] == b["Y"] and a["deletion"] == 1e-300 and np.isnan(a["insertion"])
    if suffix == ".csv.gz":
        assert gzip.decompress(path.read_bytes()) == gzip.decompress(one.read_bytes())
        assert gzip.decompress(path.read_bytes()).decode().startswith("index,label,")
        import pandas as pd

        frame = pd.read_csv(path)
        assert len(frame) == len(allrows) and frame["Y"].tolist() == [r["Y"] for r in allrows]
    elif suffix == ".json":
        assert path.read_text() == one.read_text()
        assert json.loads(path.read_text())["meta"] == meta


def test_broken_gzip_file_cannot_be_resumed(run, test_set, tmp_path):
    out = tmp_path / "m.csv.gz"
    kw = dict(methods="gradcam", n_images=2, batch_size=2, out=out, progress=False,
              dataset=test_set)
    runs.evaluate_run(run, **kw)
    out.write_bytes(out.read_bytes()[:-30])  # truncated
    with pytest.raises(ValueError, match="cannot resume from it"):
        runs.evaluate_run(run, **kw)
