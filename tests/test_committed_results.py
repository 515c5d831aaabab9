"""The committed per-image results against an independent recomputation.

Every complete result file under ``reference/`` (``<run>/metrics*.csv.gz``, the sweep's, the
replicates' and the from-scratch runs', the ones chapter 6 reads) gets a few seeded random
images recomputed without the code that wrote them: Grad-CAM and Grad-CAM++ maps from
pytorch-grad-cam, Score-CAM from a loop written here (METHODS.md section 3: one masked
forward per channel), FastCAM in float64 numpy with scipy's Gamma fit times
pytorch-grad-cam's Grad-CAM (section 4), and Y, O, AD, AG, AI, insertion and deletion from
the slow one-image references of ``_references.py`` (section 5).

Tolerances: the peer's maps differ from ours by float rounding (``test_cam.py``: < 1e-4 after
min-max), and one image alone instead of a batch changes the probabilities by rounding.
Measured on 6-8 random images of each ResNet-18 reference file: Y within 6e-7, O within
1.5e-6 (FastCAM: 8.3e-5, as scipy's Gamma fit stops at its own tolerance); insertion within
0.24 points and deletion within 0.03 (the ranking of nearly equal pixels flips), hence 1
point for the areas, as ``metrics.verification.TOLERANCES``. AI is compared only
where |O - Y| is beyond rounding.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _references import ref_curves, ref_probs
from _slow_curves import slow_curves

import interpretable as itp
from interpretable.metrics import CONVENTIONS, _results, provenance_path, read_results
from interpretable.study import reference

IMAGES_PER_FILE = {"reference": 3, "sweep": 1}  # the sweep has 20-30 files: a sample each
LAYER = {"resnet18": "layer4", "mobilenet_v2": "features.18"}  # the last block of each net
PEER = {"Grad-CAM": "GradCAM", "Grad-CAM++": "GradCAMPlusPlus"}
TOL = {"Y": 1e-5, "O": 2e-5, "curve": 1.0}
TOL_O = {"FastCAM": 5e-4}  # scipy's Gamma fit stops at its own tolerance


def _is_sweep_like(path):
    """A file of a sweep run, of its replicate (another seed) or of a from-scratch run: many
    such files, a sample of each."""
    return bool({"sweep", "replicates", "scratch"} & set(path.parts))


def _files():
    root = reference.find_root()
    found = sorted(root.glob("*/metrics*.csv.gz")) + sorted(root.glob("sweep/*/*/metrics.csv.gz")) \
        + sorted(root.glob("replicates/*/*/metrics.csv.gz")) \
        + sorted(root.glob("scratch/*/*/metrics*.csv.gz"))
    return [f for f in found if provenance_path(f).is_file() and (f.parent / "final.pt").is_file()]


FILES = _files()


def _peer_map(name, model, layer, x1, c):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with getattr(pgc, name)(model, [layer]) as cam:
        return torch.from_numpy(cam(x1[None], [ClassifierOutputTarget(c)]))[0]


def _loop_scorecam(model, layer, x1, c):
    """Score-CAM for one image, one forward per channel (METHODS.md section 3)."""
    a = _capture(model, [layer], x1)[0][0]          # (K, h, w)
    scores = []
    with torch.no_grad():
        for k in range(a.shape[0]):
            up = F.interpolate(a[k][None, None], size=x1.shape[-2:], mode="bilinear",
                               align_corners=False)[0, 0]
            span = up.max() - up.min()
            mask = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
            scores.append(model((x1 * mask)[None])[0, c])
    alpha = torch.softmax(torch.stack(scores), 0)
    return torch.relu((alpha[:, None, None] * a).sum(0))


def _capture(model, layers, x1):
    acts = []
    handles = [m.register_forward_hook(lambda m, i, o: acts.append(o.detach()))
               for m in layers]
    try:
        with torch.no_grad():
            model(x1[None])
    finally:
        for h in handles:
            h.remove()
    return acts


def _reference_fastcam(model, cam_layer, x1, c):
    """FastCAM for one image (METHODS.md section 4) in float64 numpy and scipy: SMOE Scale of
    each scale layer, a Gamma CDF with scipy's maximum-likelihood fit, the mean of the maps
    upsampled, times pytorch-grad-cam's Grad-CAM normalized to [0, 1]."""
    from scipy import stats

    maps = []
    for a in _capture(model, itp.models.scale_layers(model), x1):
        v = a[0].double().clamp(min=0).numpy() + 1e-7           # (K, h, w)
        m = v.mean(0)
        smoe = m * (np.log2(m) - np.log2(v).mean(0))
        if smoe.max() == smoe.min():
            norm = np.zeros_like(smoe)
        else:
            y = smoe - smoe.min() + 1e-7
            k, _, theta = stats.gamma.fit(y.ravel(), floc=0)
            norm = stats.gamma.cdf(y, a=k, scale=theta)
        maps.append(F.interpolate(torch.from_numpy(norm)[None, None], size=x1.shape[-2:],
                                  mode="bilinear", align_corners=False)[0, 0])
    return torch.stack(maps).mean(0).float() * _peer_map("GradCAM", model, cam_layer, x1, c)


def test_there_are_committed_results_to_check():
    assert FILES, f"no complete result file under {reference.find_root()}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(p.parents[3]))
                         if _is_sweep_like(p) else f"{p.parent.name}/{p.name}")
def test_committed_rows_equal_an_independent_recomputation(path, test_set):
    rows = read_results(path)
    meta = _results.with_conventions(json.loads(_results.meta_path(path).read_text()))
    assert meta["target"] == "label"  # what the references below compute
    ours = CONVENTIONS["ours"]
    conventions = {"substrate": meta["substrate"], "kernel": meta["blur_kernel"],
                   "sigma": meta["blur_sigma"]}
    if conventions == {"substrate": ours.substrate, "kernel": ours.blur_kernel,
                       "sigma": ours.blur_sigma}:
        def curves(model, x1, map2d, c, step):
            return ref_curves(model, x1, map2d, c, step)
    else:  # other conventions (e.g. the authors'): the slow loop that takes them
        def curves(model, x1, map2d, c, step):
            return slow_curves(model, x1, map2d, c, step, **conventions)
    model, info = itp.models.load_checkpoint(path.parent / "final.pt", map_location="cpu")
    model = model.float().eval()
    layer = model.get_submodule(LAYER[info["arch"]])
    rng = np.random.default_rng(zlib.crc32(str(path.relative_to(reference.find_root())).encode()))
    n = IMAGES_PER_FILE["sweep" if _is_sweep_like(path) else "reference"]
    indices = rng.choice(np.sort(rows["index"].unique()), n, replace=False)
    checked = 0
    for idx in indices:
        x1, label = test_set[int(idx)]
        with torch.no_grad():
            predicted = int(model(x1[None]).argmax(1))
        for method, row in rows[rows["index"] == idx].set_index("method").iterrows():
            if method in PEER:
                map2d = _peer_map(PEER[method], model, layer, x1, int(label))
            elif method == "Score-CAM":
                map2d = _loop_scorecam(model, layer, x1, int(label))
            elif method == "FastCAM":
                map2d = _reference_fastcam(model, layer, x1, int(label))
            else:
                continue
            where = f"{path.name}, image {idx}, {method}"
            got = (row["label"], row["target"], row["predicted"])
            assert got == (label, label, predicted), where
            y, o = ref_probs(model, x1, map2d, int(label))
            assert abs(row["Y"] - y) <= TOL["Y"], (where, row["Y"], y)
            tol_o = TOL_O.get(method, TOL["O"])
            assert abs(row["O"] - o) <= tol_o, (where, row["O"], o)
            # AD and AG from the reference's Y and O, with the rounding those carry
            slack = 100 * (TOL["Y"] + tol_o) / min(y, 1 - y)
            assert abs(row["ad"] - 100 * max(0.0, y - o) / y) <= slack, where
            assert abs(row["ag"] - 100 * max(0.0, o - y) / (1 - y)) <= slack, where
            if abs(o - y) > TOL["Y"] + tol_o:
                assert row["ai"] == (100.0 if o > y else 0.0), where
            ins, dele, _, _ = curves(model, x1, map2d, int(label), meta["step"])
            assert abs(row["insertion"] - ins) <= TOL["curve"], (where, row["insertion"], ins)
            assert abs(row["deletion"] - dele) <= TOL["curve"], (where, row["deletion"], dele)
            checked += 1
    assert checked >= n, f"{path}: no method with an independent reference"
