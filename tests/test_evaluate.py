"""``interpretable.metrics.evaluate`` (one tidy row per image x method, result files, resume)
and ``accuracy``, against direct calls of the batch metrics and hand computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

import interpretable as itp
from interpretable.metrics import (
    TOLERANCES,
    accuracy,
    confidence_scores,
    evaluate,
    insertion_deletion,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from 2 threads, and on a shared machine the OpenMP barrier
    of a busy second core costs more than the work (batch-4 forwards: ~7 ms vs ~400 ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cifar_model():
    torch.manual_seed(0)
    return itp.models.create("resnet18", width=0.125).eval()


def _rand_maps(model, x, target):
    g = torch.Generator().manual_seed(int(target.sum()))
    return torch.rand(x.shape[0], 4, 4, generator=g).to(x)


def _center_maps(model, x, target):
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    m = -((yy - 15.5) ** 2 + (xx - 15.5) ** 2)
    return m.expand(x.shape[0], 32, 32).clone()


class _CountingCAM:
    """CAM-style class: built on the model, context manager, counts images it explains."""

    instances: list = []

    def __init__(self, model):
        self.model, self.seen, self.exited = model, 0, False
        _CountingCAM.instances.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.exited = True

    def __call__(self, x, target):
        self.seen += x.shape[0]
        return _rand_maps(self.model, x, target)


def test_evaluate_rows_match_direct_calls(cifar_model, test_set):
    model = cifar_model
    methods = {"random": _rand_maps, "center": _center_maps}
    table = evaluate(model, test_set, methods, n_images=6, batch_size=4, step=128,
                     progress=False)
    assert list(table.columns) == list(itp.metrics.COLUMNS)
    assert len(table) == 12 and list(table["method"][:2]) == ["random", "center"]
    x, y = test_set.tensors(range(6))
    assert table["index"].tolist() == [i for i in range(6) for _ in range(2)]
    assert table["label"].tolist()[::2] == y.tolist()
    for name, fn in methods.items():
        rows = table[table.method == name]
        for sl in (slice(0, 4), slice(4, 6)):  # the batches evaluate used
            maps = fn(model, x[sl], y[sl])
            ad, ag, ai, yy, o = confidence_scores(model, x[sl], maps, y[sl], return_probs=True)
            ins, dele = insertion_deletion(model, x[sl], maps, y[sl], step=128)
            for col, val in (("ad", ad), ("ag", ag), ("ai", ai), ("Y", yy), ("O", o),
                             ("insertion", ins), ("deletion", dele)):
                np.testing.assert_allclose(rows[col].to_numpy()[sl], val.numpy(), atol=1e-5)
    assert table.groupby("method").size().tolist() == [6, 6]


def test_evaluate_score_model(cifar_model, test_set):
    """A BN-folded copy scores (almost) the same; the methods still explain the model."""
    import copy

    from torch.fx.experimental.optimization import fuse

    fused = fuse(copy.deepcopy(cifar_model))
    seen = []

    def method(model, x, target):
        seen.append(model)
        return _rand_maps(model, x, target)

    kw = dict(n_images=4, step=256, progress=False)
    a = evaluate(cifar_model, test_set, {"m": method}, **kw)
    b = evaluate(cifar_model, test_set, {"m": method}, score_model=fused, **kw)
    assert all(m is cifar_model for m in seen)
    cols = ["Y", "O", "insertion", "deletion"]
    np.testing.assert_allclose(a[cols].to_numpy(), b[cols].to_numpy(), atol=1e-4)


def test_evaluate_accepts_cam_classes_and_instances(cifar_model, test_set):
    _CountingCAM.instances.clear()
    inst = _CountingCAM(cifar_model)
    table = evaluate(cifar_model, test_set, {"cls": _CountingCAM, "inst": inst}, n_images=5,
                     batch_size=3, step=256, target="predicted", progress=False, as_frame=False)
    built = _CountingCAM.instances[1]
    assert built.exited and built.seen == 5 and inst.seen == 5 and not inst.exited
    assert isinstance(table, list) and len(table) == 10
    assert all(r["target"] == r["predicted"] for r in table)
    # the same random maps (seeded by the targets) give the same numbers for both
    assert [r["ad"] for r in table[0::2]] == [r["ad"] for r in table[1::2]]


def test_evaluate_with_real_cams(cifar_model, test_set):
    from interpretable.attribution import GradCAM

    with torch.no_grad():  # evaluate enables gradients for the methods itself
        table = evaluate(cifar_model, test_set, {"gradcam": GradCAM}, n_images=4,
                         batch_size=4, step=256, progress=False)
    assert table[[m.column for m in itp.metrics.METRICS]].notna().all().all()
    assert not cifar_model.training


def test_evaluate_resume(cifar_model, test_set, tmp_path):
    out = tmp_path / "res.csv"
    calls = {"n": 0}

    def flaky(model, x, target):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("interrupted")
        return _rand_maps(model, x, target)

    kwargs = dict(n_images=10, batch_size=4, step=256, progress=False, out=out)
    with pytest.raises(RuntimeError, match="interrupted"):
        evaluate(cifar_model, test_set, {"m": flaky}, **kwargs)
    partial_rows = out.read_text().strip().splitlines()
    assert len(partial_rows) == 1 + 8  # header + two finished batches
    seen = []

    def counting(model, x, target):
        seen.append(x.shape[0])
        return _rand_maps(model, x, target)

    resumed = evaluate(cifar_model, test_set, {"m": counting}, **kwargs)
    assert seen == [2]  # only the last two images were computed
    fresh = evaluate(cifar_model, test_set, {"m": _rand_maps}, n_images=10, batch_size=4,
                     step=256, progress=False, out=tmp_path / "fresh.json")
    cols = ["index", "ad", "ag", "ai", "insertion", "deletion", "Y", "O"]
    np.testing.assert_allclose(resumed[cols].to_numpy(), fresh[cols].to_numpy(), atol=1e-6)
    # the JSON file resumes too, and rereads exactly what it wrote
    data = json.loads((tmp_path / "fresh.json").read_text())
    assert data["meta"]["step"] == 256 and len(data["rows"]) == 10
    again = evaluate(cifar_model, test_set, {"m": flaky}, n_images=10, batch_size=4, step=256,
                     progress=False, out=tmp_path / "fresh.json")
    assert again.equals(fresh)
    # other settings or another model's weights: refuse to mix
    with pytest.raises(ValueError, match="other settings"):
        evaluate(cifar_model, test_set, {"m": counting}, n_images=10, batch_size=4, step=128,
                 progress=False, out=out)
    torch.manual_seed(1)
    other = itp.models.create("resnet18", width=0.125).eval()
    with pytest.raises(ValueError, match="weights_sha1"):
        evaluate(other, test_set, {"m": counting}, **kwargs)
    evaluate(cifar_model, test_set, {"m": counting}, n_images=2, batch_size=4, step=128,
             progress=False, out=out, resume=False)
    assert len(out.read_text().strip().splitlines()) == 3


def test_evaluate_errors_and_selection(cifar_model, test_set):
    m = {"r": _rand_maps}
    with pytest.raises(ValueError, match="empty"):
        evaluate(cifar_model, Subset(test_set, []), m, progress=False)
    with pytest.raises(ValueError, match="larger than the dataset"):
        evaluate(cifar_model, Subset(test_set, range(5)), m, n_images=6, progress=False)
    with pytest.raises(ValueError, match="target"):
        evaluate(cifar_model, test_set, m, n_images=2, target="true", progress=False)
    with pytest.raises(ValueError, match="non-empty"):
        evaluate(cifar_model, test_set, {}, n_images=2, progress=False)
    with pytest.raises(ValueError, match="divide"):
        evaluate(cifar_model, test_set, m, n_images=2, step=100, progress=False)
    with pytest.raises(ValueError, match=r"\.csv, \.csv\.gz or \.json"):
        evaluate(cifar_model, test_set, m, n_images=2, out="x.txt", progress=False)
    with pytest.raises(ValueError, match="method 'bad'"):
        evaluate(cifar_model, test_set, {"bad": lambda model, x, t: torch.rand(len(x) + 1, 4, 4)},
                 n_images=2, progress=False)
    table = evaluate(cifar_model, test_set, m, n_images=4, seed=1, curves=False, progress=False)
    idx = table["index"].tolist()
    assert idx == sorted(idx) and len(set(idx)) == 4 and idx != [0, 1, 2, 3]
    assert table["insertion"].isna().all() and table["ad"].notna().all()
    # a generic dataset (not CIFAR) goes through item-by-item loading
    x, y = test_set.tensors(range(3))
    t2 = evaluate(cifar_model, TensorDataset(x, y), m, n_images=3, step=256, progress=False)
    t1 = evaluate(cifar_model, test_set, m, n_images=3, step=256, progress=False)
    np.testing.assert_allclose(t1[["ad", "deletion"]].to_numpy(), t2[["ad", "deletion"]].to_numpy(),
                               atol=1e-5)


def test_accuracy(cifar_model, test_set):
    sub = Subset(test_set, range(50))
    acc = accuracy(cifar_model, sub, topk=(1, 5, 100), batch_size=16)
    x, y = test_set.tensors(range(50))
    with torch.no_grad():
        logits = cifar_model(x)
    top5 = logits.topk(5, 1).indices
    assert acc["n"] == 50
    assert acc["top1"] == pytest.approx(100 * (logits.argmax(1) == y).float().mean().item())
    assert acc["top5"] == pytest.approx(100 * (top5 == y[:, None]).any(1).float().mean().item())
    assert acc["top100"] == 100.0
    loader = [(x[:20], y[:20]), (x[20:], y[20:])]
    assert accuracy(cifar_model, loader)["top1"] == acc["top1"]
    with pytest.raises(ValueError, match="exceeds"):
        accuracy(cifar_model, loader, topk=(101,))
    with pytest.raises(ValueError, match="topk"):
        accuracy(cifar_model, loader, topk=(0,))


def test_evaluate_explicit_indices_and_out_of_order_resume(cifar_model, test_set, tmp_path):
    from interpretable.metrics import _results

    m = {"r": _rand_maps, "c": _center_maps}
    kw = dict(batch_size=2, step=256, progress=False, as_frame=False)
    rows = evaluate(cifar_model, test_set, m, indices=[7, 3, 5], **kw)
    assert [r["index"] for r in rows] == [7, 7, 3, 3, 5, 5]
    assert [r["method"] for r in rows[:2]] == ["r", "c"]
    by_n = evaluate(cifar_model, test_set, m, n_images=8, **kw)
    # Another batch composition changes the forward pass by float rounding only, by how much
    # depends on the CPU's kernels (AD: 8.8e-6 points seen for an image recomputed alone), so
    # "the same numbers" means within the AD tolerance verify_results uses.
    tol = TOLERANCES["ad"]
    for r in rows[1::2]:  # center maps: the same numbers as in another selection
        twin = next(t for t in by_n if (t["index"], t["method"]) == (r["index"], r["method"]))
        assert r["ad"] == pytest.approx(twin["ad"], abs=tol)
    for bad in ([], [1, 1], [10_000], [True], [1.5]):
        with pytest.raises(ValueError, match="indices"):
            evaluate(cifar_model, test_set, m, indices=bad, **kw)
    with pytest.raises(ValueError, match="either indices or n_images"):
        evaluate(cifar_model, test_set, m, indices=[1], n_images=1, **kw)
    # a file whose finished images are not a prefix of the selection ends up in order
    out = tmp_path / "r.csv.gz"
    full = evaluate(cifar_model, test_set, m, indices=[3, 5, 7], out=out, **kw)
    stored, meta = _results.read(out)
    assert repr(stored) == repr(full)
    _results.save(out, [r for r in stored if r["index"] != 3], meta)
    resumed = evaluate(cifar_model, test_set, m, indices=[3, 5, 7], out=out, **kw)
    assert [r["index"] for r in resumed] == [3, 3, 5, 5, 7, 7]
    assert repr(_results.read(out)[0]) == repr(resumed)
    # (the random maps are seeded by the batch's targets: compare the center maps)
    np.testing.assert_allclose([r["ad"] for r in resumed[1::2]], [r["ad"] for r in full[1::2]],
                               atol=tol)

