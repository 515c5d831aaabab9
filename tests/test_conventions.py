"""The insertion/deletion conventions as options (METHODS.md section 5, "Conventions as
options"): every substrate, blur and step against an independent slow loop
(``_slow_curves.py``: per image, per step, pixels moved in Python loops, the blur written out),
the authors' set by its name, today's defaults unchanged, and how result files, resume,
provenance and verification keep conventions apart."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _metric_models import save_run, tiny_setup
from _slow_curves import slow_blur, slow_curves

import interpretable as itp
from interpretable.data import denormalize, normalize
from interpretable.metrics import (
    CONVENTIONS,
    Conventions,
    _results,
    blur_substrate,
    evaluate,
    evaluate_run,
    insertion_deletion,
    provenance_path,
    resolve_conventions,
    verify_results,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny():
    return tiny_setup()


def test_the_named_sets():
    ours, authors = CONVENTIONS["ours"], CONVENTIONS["authors"]
    assert (ours.substrate, ours.blur_kernel, ours.blur_sigma, ours.step(32)) == \
        ("black", 11, 5.0, 32)
    # METHODS.md section 5: zeros of the normalized tensor, 5x5 sigma 5, imsize * 8 = 256
    assert (authors.substrate, authors.blur_kernel, authors.blur_sigma, authors.step(32)) == \
        ("mean", 5, 5.0, 256)
    assert resolve_conventions("authors", substrate="blur") == \
        Conventions("blur", 5, 5.0, step_rows=8)
    assert resolve_conventions(ours) is ours


def test_blur_matches_the_written_out_loop():
    pix = torch.rand(1, 3, 9, 12, dtype=torch.float64)
    for kernel, sigma in ((11, 5.0), (5, 5.0), (3, 0.7)):
        ours = denormalize(blur_substrate(normalize(pix), kernel, sigma))[0].numpy()
        np.testing.assert_allclose(ours, slow_blur(pix[0].numpy(), kernel, sigma), atol=1e-12)


@pytest.mark.parametrize("substrate, kernel, sigma, step", [
    ("black", 11, 5.0, 16),
    ("mean", 11, 5.0, 32),
    ("blur", 11, 5.0, 64),
    ("black", 5, 2.0, 16),
    ("mean", 3, 1.0, 64),
    ("blur", 5, 5.0, 32),
])
def test_each_option_matches_the_slow_loop(tiny, substrate, kernel, sigma, step):
    model, x = tiny
    maps = (torch.rand(3, 8, 8) * 4).floor()  # ties: the stable-sort rule is exercised too
    target = torch.tensor([2, 0, 7])
    ins, dele, curves = insertion_deletion(model, x, maps, target, step=step,
                                           substrate=substrate, blur_kernel=kernel,
                                           blur_sigma=sigma, batch_size=5, return_curves=True)
    assert curves.deletion.shape == (3, 256 // step + 1)
    for i in range(3):
        r_ins, r_del, r_ic, r_dc = slow_curves(model, x[i], maps[i], int(target[i]), step,
                                               substrate=substrate, kernel=kernel, sigma=sigma)
        np.testing.assert_allclose(curves.insertion[i].numpy(), r_ic, atol=1e-9)
        np.testing.assert_allclose(curves.deletion[i].numpy(), r_dc, atol=1e-9)
        assert ins[i].item() == pytest.approx(r_ins, abs=1e-7)
        assert dele[i].item() == pytest.approx(r_del, abs=1e-7)


def test_authors_set_by_name(tiny):
    model, x = tiny
    maps = torch.rand(3, 4, 4)
    got = insertion_deletion(model, x, maps, 1, conventions="authors", return_curves=True)
    assert got[2].deletion.shape == (3, 3)  # step 8 * 16 = 128 on 16x16: 2 steps
    explicit = insertion_deletion(model, x, maps, 1, step=128, substrate="mean", blur_kernel=5,
                                  blur_sigma=5.0)
    for a, b in zip(got[:2], explicit, strict=True):
        assert torch.equal(a, b)
    for i in range(3):
        r_ins, r_del, _, _ = slow_curves(model, x[i], maps[i], 1, 128, substrate="mean",
                                         kernel=5, sigma=5.0)
        assert got[0][i].item() == pytest.approx(r_ins, abs=1e-7)
        assert got[1][i].item() == pytest.approx(r_del, abs=1e-7)


def test_authors_set_on_a_cifar_network():
    """ResNet-18 in float32 on 32x32: 4 steps of 256 pixels, equal up to float32 rounding."""
    torch.manual_seed(0)
    model = itp.models.create("resnet18", width=0.125).eval()
    x = normalize(torch.rand(2, 3, 32, 32))
    maps = torch.rand(2, 4, 4)
    ins, dele, curves = insertion_deletion(model, x, maps, 3, conventions="authors",
                                           return_curves=True)
    assert curves.fraction.tolist() == [0, 0.25, 0.5, 0.75, 1]
    for i in range(2):
        r_ins, r_del, _, _ = slow_curves(model, x[i], maps[i], 3, 256, substrate="mean",
                                         kernel=5, sigma=5.0)
        assert ins[i].item() == pytest.approx(r_ins, abs=1e-4)
        assert dele[i].item() == pytest.approx(r_del, abs=1e-4)


def test_defaults_are_unchanged(tiny):
    model, x = tiny
    maps = torch.rand(3, 16, 16)
    default = insertion_deletion(model, x, maps, 1)
    for same in (insertion_deletion(model, x, maps, 1, conventions="ours"),
                 insertion_deletion(model, x, maps, 1, step=16, substrate="black",
                                    blur_kernel=11, blur_sigma=5.0)):
        for a, b in zip(default, same, strict=True):
            assert torch.equal(a, b)


def test_bad_conventions(tiny):
    model, x = tiny
    maps = torch.rand(3, 4, 4)
    for kw, words in (({"conventions": "paper"}, "conventions must be one of 'ours'"),
                      ({"substrate": "grey"}, "substrate must be one of black, mean, blur"),
                      ({"blur_kernel": 4}, "blur_kernel must be an odd positive int"),
                      ({"blur_sigma": 0.0}, "blur_sigma must be a positive number"),
                      ({"blur_kernel": 35}, "larger than 17 pixels")):
        with pytest.raises(ValueError, match=words):
            insertion_deletion(model, x, maps, **kw)


# -- evaluate, result files, provenance, verification ------------------------------------------
def _rand_maps(model, x, target):
    g = torch.Generator().manual_seed(int(target.sum()))
    return torch.rand(x.shape[0], 4, 4, generator=g).to(x)


@pytest.fixture(scope="module")
def cifar_model():
    torch.manual_seed(0)
    return itp.models.create("resnet18", width=0.125).eval()


def test_evaluate_rows_and_meta_name_the_conventions(cifar_model, test_set, tmp_path):
    out = tmp_path / "r.json"
    kw = dict(n_images=4, batch_size=4, progress=False, as_frame=False)
    ev = evaluate(cifar_model, test_set, {"m": _rand_maps}, conventions="authors", out=out,
                  return_meta=True, **kw)
    assert ev.images_computed == 4
    assert {k: ev.meta[k] for k in ("conventions", "substrate", "blur_kernel", "blur_sigma",
                                    "step")} == {"conventions": "authors", "substrate": "mean",
                                                 "blur_kernel": 5, "blur_sigma": 5.0,
                                                 "step": 256}
    assert json.loads(out.read_text())["meta"] == ev.meta  # the file holds its settings
    x, y = test_set.tensors(range(4))
    ins, dele = insertion_deletion(cifar_model, x, _rand_maps(cifar_model, x, y), y,
                                   conventions="authors")
    np.testing.assert_allclose([r["insertion"] for r in ev.table], ins.numpy(), atol=1e-5)
    np.testing.assert_allclose([r["deletion"] for r in ev.table], dele.numpy(), atol=1e-5)
    # resuming with other conventions is refused; the same ones compute nothing
    for other in ({"conventions": "ours"},
                  {"conventions": resolve_conventions("authors", blur_sigma=2.0)},
                  {"conventions": "authors", "step": 128}):
        with pytest.raises(ValueError, match="other settings"):
            evaluate(cifar_model, test_set, {"m": _rand_maps}, out=out, **other, **kw)
    again = evaluate(cifar_model, test_set, {"m": _rand_maps}, conventions="authors", out=out,
                     return_meta=True, **kw)
    assert again.images_computed == 0 and again.table == ev.table


def test_files_from_before_the_options_resume_as_ours(cifar_model, test_set, tmp_path):
    out = tmp_path / "r.csv"
    kw = dict(n_images=3, batch_size=2, step=256, progress=False, as_frame=False)
    rows = evaluate(cifar_model, test_set, {"m": _rand_maps}, out=out, **kw)
    meta = json.loads(_results.meta_path(out).read_text())
    for key in ("conventions", "substrate", "blur_kernel", "blur_sigma"):
        del meta[key]  # as written before the conventions were recorded
    _results.save(out, rows[:2], meta)
    _results.write_meta(out, meta)
    resumed = evaluate(cifar_model, test_set, {"m": _rand_maps}, out=out, return_meta=True,
                       **kw)
    assert resumed.images_computed == 1 and resumed.meta["conventions"] == "custom"  # step
    assert json.loads(_results.meta_path(out).read_text()) == resumed.meta
    _results.write_meta(out, meta)
    with pytest.raises(ValueError, match="other settings"):
        evaluate(cifar_model, test_set, {"m": _rand_maps}, out=out,
                 conventions=resolve_conventions("ours", substrate="mean"), **kw)


def test_run_provenance_and_verification_keep_the_conventions(test_set, tmp_path):
    run = save_run(tmp_path)
    res = evaluate_run(run, "gradcam", 3, seed=1, batch_size=3,
                       conventions=resolve_conventions("authors", substrate="blur"),
                       progress=False, dataset=test_set)
    assert res.out == run / "metrics_custom.csv.gz"
    assert (res.provenance["conventions"], res.provenance["substrate"],
            res.provenance["blur_kernel"], res.provenance["step"]) == ("custom", "blur", 5, 256)
    assert provenance_path(res.out).is_file()
    report = verify_results(res.out, n=2, dataset=test_set)  # rebuilt with the file's settings
    assert report.ok and report.rows_checked == 2
