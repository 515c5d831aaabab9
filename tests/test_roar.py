"""ROAR / KAR (interpretable.roar, METHODS.md section 5) on tiny synthetic data and networks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import interpretable as itp
from interpretable import models as itp_models
from interpretable import roar
from interpretable._io import sha256_file
from interpretable.roar import plan
from interpretable.roar._common import DEFAULT_CHECKPOINT
from interpretable.roar.images import ImageSet
from interpretable.roar.ranking import RANKS_FORMAT

REPO = Path(__file__).resolve().parent.parent
#: a tiny recipe: the cells' recipe with a width-0.125 network and small batches
TINY = {"width": 0.125, "batch_size": 32, "lr": 0.05, "final_fp16": False}
PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)


def _task(n: int, seed: int, informative: int = 8) -> tuple[ImageSet, np.ndarray]:
    """4 classes; all class information sits in ``informative`` pixels per image, at random
    places of the central 16x16, coloured by the class; elsewhere grey noise.
    Returns the dataset and the oracle map (N, 32, 32): 1 on those pixels, 0 elsewhere."""
    rng = np.random.default_rng(seed)
    images = rng.integers(96, 160, size=(n, 32, 32, 3), dtype=np.uint8)
    targets = rng.integers(0, len(PALETTE), size=n)
    where = np.argsort(rng.random((n, 256)), axis=1)[:, :informative]
    rows, cols, idx = 8 + where // 16, 8 + where % 16, np.arange(n)[:, None]
    images[idx, rows, cols] = PALETTE[targets][:, None, :]
    oracle = np.zeros((n, 32, 32), np.float32)
    oracle[idx, rows, cols] = 1
    return ImageSet(images, targets, split="train" if seed == 1 else "test"), oracle


def _oracle_ranks(oracle: np.ndarray) -> np.ndarray:
    x = torch.zeros(len(oracle), 3, *oracle.shape[1:])
    return roar.pixel_ranks(torch.from_numpy(oracle), x).numpy()


@pytest.fixture(scope="module")
def task():
    (train, o_train), (test, o_test) = _task(384, 1), _task(128, 2)
    return train, test, (_oracle_ranks(o_train), _oracle_ranks(o_test))


def _random_ranks(train: ImageSet, test: ImageSet) -> tuple[np.ndarray, np.ndarray]:
    return (roar.compute_ranks("random", None, train, stream=0),
            roar.compute_ranks("random", None, test, stream=1))


# ------------------------------------------------------------------ (a) the modified images


def _slow_modified(images, saliency, fraction, mode, fill):
    """Independent reference: per image, per pixel, per channel, in plain Python."""
    n, h, w, c = images.shape
    k = int(np.floor(fraction * h * w + 0.5))
    out = images.copy()
    for i in range(n):
        values = saliency[i].reshape(-1).tolist()
        order = sorted(range(h * w), key=lambda p: (-values[p], p))  # ties: raster order
        top = set(order[:k])
        for p in range(h * w):
            if (p in top) == (mode == "roar"):
                for ch in range(c):
                    out[i, p // w, p % w, ch] = fill[ch]
    return out


@pytest.mark.parametrize("mode", ["roar", "kar"])
def test_modified_images_match_a_per_pixel_loop(mode):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 6, 7, 3), dtype=np.uint8)  # non-square: no transpose
    data = ImageSet(images, np.arange(5))
    x = torch.zeros(5, 3, 6, 7)
    fill = roar.train_mean(data)
    assert fill.dtype == np.uint8 and fill.tolist() == np.rint(
        images.reshape(-1, 3).astype(np.float64).mean(0)).tolist()
    tied = torch.from_numpy(rng.integers(0, 3, size=(5, 6, 7)).astype(np.float32))  # many ties
    coarse = torch.rand(5, 3, 4)  # upsampled to 6x7 first, as for insertion / deletion
    for maps in (tied, coarse):
        s = itp.metrics.prepare_maps(maps, x).numpy()
        r = roar.pixel_ranks(maps, x).numpy()
        for fraction in (0.1, 0.25, 0.5, 0.9, 0.99):
            got = roar.modified(data, r, fraction, mode, fill)
            want = _slow_modified(images, s, fraction, mode, fill)
            np.testing.assert_array_equal(got.images, want)
            assert got.images.dtype == np.uint8 and images.sum() == data.images.sum()
            assert (got.targets == data.targets).all() and got.split == data.split
    assert roar.top_count(0.1, 1024) == 102 and roar.top_count(0.9, 1024) == 922


def test_modified_sets_work_with_the_batches_of_training(task):
    train, _, (o_train, _) = task
    m = roar.modified(train, o_train, 0.1, "roar", roar.train_mean(train))
    x, y = next(itp.data.batches(m, 16))
    assert x.shape == (16, 3, 32, 32) and (y.numpy() == train.targets[:16]).all()
    assert isinstance(m, itp.data.CIFAR100)


# ---------------------------------------------- (b) oracle and random maps bracket a method


def test_oracle_and_random_maps_bracket_roar_and_kar(task, tmp_path):
    train, test, oracle = task
    rand = _random_ranks(train, test)
    acc = {}
    for mode in ("roar", "kar"):
        for method, ranks in (("oracle", oracle), ("random", rand)):
            p = roar.run_cell(mode, method, 0.1, root=tmp_path, epochs=3, overrides=TINY,
                              datasets=(train, test), rank_arrays=ranks)
            acc[mode, method] = p["test_acc"]
            assert len(p["rank_sha256"]) == 64 and p["explained_checkpoint_sha256"] is None
            assert p["pixels_replaced"] == (102 if mode == "roar" else 922)
    # removing the informative pixels leaves chance (25%); removing random ones does not
    assert acc["roar", "oracle"] < 40 < acc["roar", "random"] - 20, acc
    # keeping only the informative pixels keeps the task; keeping random ones loses it
    assert acc["kar", "oracle"] > 90 > acc["kar", "random"] + 20, acc
    rows = roar.table(tmp_path)
    assert [(r["mode"], r["method"]) for r in rows] == [
        ("roar", "random"), ("roar", "oracle"), ("kar", "random"), ("kar", "oracle")]
    assert {r["cell"] for r in rows} == {"roar_oracle_t0.1", "roar_random_t0.1",
                                         "kar_oracle_t0.1", "kar_random_t0.1"}
    assert all(r["top1"] == acc[r["mode"], r["method"]] for r in rows)


# --------------------------------------------------------------------------- (c) resume


class _Killed(Exception):
    pass


def test_an_interrupted_cell_resumes_to_the_uninterrupted_result(task, tmp_path, monkeypatch):
    train, test, _ = task
    small = (ImageSet(train.images[:128], train.targets[:128]),
             ImageSet(test.images[:64], test.targets[:64], split="test"))
    ranks = _random_ranks(*small)
    args = ("kar", "random", 0.5)
    kw = {"root": tmp_path, "epochs": 2, "overrides": TINY, "datasets": small,
          "rank_arrays": ranks}
    whole = roar.run_cell(*args, out=tmp_path / "whole", **kw)

    real = itp.models.save_checkpoint

    def killed_after_first_epoch(path, *a, **k):
        out = real(path, *a, **k)
        if Path(path).name == "last.pt":
            raise _Killed
        return out

    monkeypatch.setattr(itp.models, "save_checkpoint", killed_after_first_epoch)
    cut = tmp_path / "cut"
    with pytest.raises(_Killed):
        roar.run_cell(*args, out=cut, **kw)
    monkeypatch.undo()
    assert (cut / "last.pt").is_file() and not (cut / "provenance.json").exists()
    assert [r["cell"] for r in roar.table(tmp_path)] == ["whole"]  # the cut one is unfinished
    resumed = roar.run_cell(*args, out=cut, **kw)
    assert not (cut / "last.pt").exists() and not (tmp_path / "whole" / "last.pt").exists()
    assert resumed["test_acc"] == whole["test_acc"]
    assert len((cut / "log.jsonl").read_text().splitlines()) == 2
    assert resumed["test_top5"] == whole["test_top5"]
    a = itp.models.read_checkpoint(tmp_path / "whole" / "final.pt")["state_dict"]
    b = itp.models.read_checkpoint(cut / "final.pt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    again = roar.run_cell(*args, out=cut, **kw)  # finished: skipped
    assert again["skipped"] and again["test_acc"] == whole["test_acc"]
    with pytest.raises(ValueError, match="another finished cell.*epochs"):
        roar.run_cell(*args, out=cut, **{**kw, "epochs": 3})


def test_the_unmodified_cell_reuses_the_pilot_run(task, tmp_path):
    train, test, _ = task
    small = (ImageSet(train.images[:64], train.targets[:64]),
             ImageSet(test.images[:32], test.targets[:32], split="test"))
    kw = {"root": tmp_path, "epochs": 1, "overrides": TINY, "datasets": small}
    pilot = roar.run_cell("unmodified", out=plan.pilot_dir(tmp_path, 1, 0), **kw)
    cell = roar.run_cell("unmodified", **kw)
    assert cell["copied_from"] == str(plan.pilot_dir(tmp_path, 1, 0))
    assert cell["test_acc"] == pilot["test_acc"] and cell["method"] is None
    assert (tmp_path / "unmodified" / "summary.json").is_file()
    assert plan.pilot_results(tmp_path) == {(1, 0): pilot["test_acc"]}
    assert [r["mode"] for r in roar.table(tmp_path)] == ["unmodified"]


def test_a_cell_with_the_recipes_float16_final_weights_finishes(task, tmp_path):
    # The recipe stores final.pt in float16 and asks for no alignment: finishing must not
    # feed float32 images to the float16 copy (the pilot of session 16 failed there).
    train, test, _ = task
    small = (ImageSet(train.images[:64], train.targets[:64]),
             ImageSet(test.images[:32], test.targets[:32], split="test"))
    cell = roar.run_cell("unmodified", root=tmp_path, epochs=1, datasets=small,
                         overrides={**TINY, "final_fp16": True})
    assert cell["weights_dtype"] == "float16"
    summary = json.loads((tmp_path / "unmodified" / "summary.json").read_text())
    assert summary["test_acc_float16_weights"] == pytest.approx(cell["test_acc"], abs=0.1)
    assert "test_align_logit" not in summary
    final = itp_models.read_checkpoint(tmp_path / "unmodified" / "final.pt", "cpu")
    assert final["meta"]["weights_dtype"] == "float16"


# ---------------------------------------------------------------------------- (d) errors


def test_bad_fraction_method_mode_and_ranks_are_clear_errors(task, tmp_path):
    train, test, oracle = task
    kw = {"root": tmp_path, "epochs": 1, "datasets": (train, test), "rank_arrays": oracle}
    for bad in (0, 1, 1.5, -0.1, float("nan"), True, "0.5", None):
        with pytest.raises(ValueError, match="fraction must be a number strictly between"):
            roar.run_cell("roar", "oracle", bad, **kw)
    with pytest.raises(ValueError, match="method must be one of"):
        roar.run_cell("roar", "saliency", 0.5, **kw)
    with pytest.raises(ValueError, match="oracle.*tests only"):
        roar.run_cell("roar", "oracle", 0.5, root=tmp_path, epochs=1)
    with pytest.raises(ValueError, match="mode must be one of"):
        roar.run_cell("remove", "oracle", 0.5, **kw)
    with pytest.raises(ValueError, match="must not be given with mode 'unmodified'"):
        roar.run_cell("unmodified", "random", 0.5, **kw)
    with pytest.raises(ValueError, match="pilot .* has not chosen"):
        roar.run_cell("roar", "random", 0.5, root=tmp_path)
    fill = roar.train_mean(train)
    with pytest.raises(ValueError, match=r"ranks must have shape \(384, 1024\).*\(384, 1023\)"):
        roar.modified(train, oracle[0][:, 1:], 0.5, "roar", fill)
    dup = oracle[0].copy()
    dup[3, 0] = dup[3, 1]
    with pytest.raises(ValueError, match=r"rows \[3\] are not permutations"):
        roar.modified(train, dup, 0.5, "roar", fill)
    with pytest.raises(ValueError, match="mean must be 3"):
        roar.modified(train, oracle[0], 0.5, "kar", [1, 2])
    with pytest.raises(TypeError, match="Subset is not accepted"):
        roar.modified(torch.utils.data.Subset(train, [0]), oracle[0][:1], 0.5, "kar", fill)
    with pytest.raises(ValueError, match="split must be"):
        roar.ranks("random", "val", datasets=(train, test), cache=tmp_path)


def test_a_rank_file_of_the_wrong_shape_or_changed_is_refused(task, tmp_path):
    train, test, _ = task
    cache = tmp_path / "cache"
    out, info = roar.rank_file("random", cache=cache, datasets=(train, test))
    assert out.shape == (512, 1024) and out.dtype == np.uint16
    np.save(cache / "random.npy", out[:, :100])
    with pytest.raises(ValueError, match=r"holds uint16 \(512, 100\); expected uint16 "
                                         r"\(512, 1024\)"):
        roar.rank_file("random", cache=cache, datasets=(train, test))
    np.save(cache / "random.npy", out[::-1])
    with pytest.raises(ValueError, match="changed since it was written"):
        roar.rank_file("random", cache=cache, datasets=(train, test))
    with pytest.raises(ValueError, match="its data_sha256 is"):  # other images, same file name
        roar.rank_file("random", cache=cache, datasets=(test, train))


def test_command_line_errors_are_one_line_naming_the_argument(capsys, tmp_path):
    cases = [(["cell", "--mode", "roar", "--method", "gradcam", "--fraction", "2"],
              "--fraction"),
             (["cell", "--mode", "bogus"], "--mode"),
             (["ranks", "--method", "nope"], "--method"),
             (["cell", "--mode", "roar", "--method", "smoe", "--fraction", "0.5",
               "--epochs", "0"], "--epochs")]
    for argv, name in cases:
        with pytest.raises(SystemExit) as exc:
            roar.main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and name in err and err.count("\n") == 1, err
    for argv, msg in [(["cell", "--mode", "kar", "--fraction", "0.5"],
                       "--method is required with --mode kar"),
                      (["cell", "--mode", "unmodified", "--method", "smoe"],
                       "--method is not used with --mode unmodified"),
                      (["cell", "--mode", "roar", "--method", "smoe", "--fraction", "0.5",
                        "--root", str(tmp_path)], "has not chosen them yet")]:
        assert roar.main(argv) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    assert roar.main(["table", "--root", str(tmp_path)]) == 0
    assert "epochs chosen by the pilot rule: not yet" in capsys.readouterr().out


# -------------------------------------------------------------- rank computation and cache


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = itp.models.create("resnet18", width=0.125)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    itp.models.save_checkpoint(path, model)
    return path


def test_ranks_of_each_method_are_batched_cached_and_recorded(task, tiny_checkpoint, tmp_path,
                                                              monkeypatch):
    train, test, _ = task
    small = (ImageSet(train.images[:20], train.targets[:20]),
             ImageSet(test.images[:12], test.targets[:12], split="test"))
    cache = tmp_path / "cache"
    for method in roar.METHODS:
        out, info = roar.rank_file(method, checkpoint=tiny_checkpoint, cache=cache,
                                   datasets=small, batch_size=8)
        assert out.shape == (32, 1024) and out.dtype == np.uint16
        roar.check_ranks(out, 32, 1024)
        assert info["sha256"] == sha256_file(cache / f"{method}.npy")
        assert info["splits"] == {"train": [0, 20], "test": [20, 32]}
        assert info["checkpoint_sha256"] == (None if method == "random" else
                                             sha256_file(tiny_checkpoint))
        assert json.loads((cache / f"{method}.json").read_text())["method"] == method
        assert info["format"] == RANKS_FORMAT
    # the second call reads the files: nothing is computed again
    monkeypatch.setattr(roar.ranking, "compute_ranks", lambda *a, **k: pytest.fail("computed"))
    test_ranks = roar.ranks("gradcam", "test", checkpoint=tiny_checkpoint, cache=cache,
                            datasets=small)
    assert test_ranks.shape == (12, 1024)
    monkeypatch.undo()
    p = roar.run_cell("roar", "gradcam", 0.5, root=tmp_path, epochs=1, cache=cache,
                      checkpoint=tiny_checkpoint, datasets=small,
                      overrides={**TINY, "batch_size": 8})
    assert p["rank_sha256"] == sha256_file(cache / "gradcam.npy")
    assert p["explained_checkpoint_sha256"] == sha256_file(tiny_checkpoint)
    assert p["ranks"]["file"] == str(cache / "gradcam.npy") and p["fill"] is not None
    assert (tmp_path / "roar_gradcam_t0.5" / "summary.json").is_file()
    other = tmp_path / "other.pt"
    torch.manual_seed(1)  # other weights than the tiny checkpoint's
    itp.models.save_checkpoint(other, itp.models.create("resnet18", width=0.125))
    with pytest.raises(ValueError, match="its checkpoint_sha256 is"):
        roar.rank_file("gradcam", checkpoint=other, cache=cache, datasets=small)
    # maps of the true class, ranked as insertion / deletion ranks them (one batch: the
    # plain forward, so the arithmetic is the same as the direct call's)
    model, _ = itp.models.load_checkpoint(tiny_checkpoint)
    x, y = small[1].tensors()
    got = roar.compute_ranks("gradcam", model, small[1], batch_size=12)
    maps = itp.attribution.GradCAM(model, optimize=False)(x, y)
    np.testing.assert_array_equal(got, roar.pixel_ranks(maps, x).numpy())
    fresh, _ = itp.models.load_checkpoint(tiny_checkpoint)
    got = roar.compute_ranks("smoe", fresh, small[1], batch_size=12)
    maps = itp.fastcam.saliency(fresh, x, optimize=False)[0]
    np.testing.assert_array_equal(got, roar.pixel_ranks(maps, x).numpy())


def test_random_ranks_are_seeded_per_split_and_independent_of_the_batch_size(task):
    train = task[0]
    a = roar.compute_ranks("random", None, train, batch_size=256)
    b = roar.compute_ranks("random", None, train, batch_size=7)
    np.testing.assert_array_equal(a, b)
    roar.check_ranks(a, len(train), 1024)
    assert not np.array_equal(a, roar.compute_ranks("random", None, train, stream=1))
    assert not np.array_equal(a, roar.compute_ranks("random", None, train, seed=1))
    assert not np.array_equal(a[0], a[1])


# -------------------------------------------------------------------- plan and run_all jobs


def test_the_pilot_rule():
    bar = plan.REFERENCE_TOP1 - plan.TOLERANCE
    summary = json.loads((REPO / "reference/resnet18_baseline/summary.json").read_text())
    assert plan.REFERENCE_TOP1 == summary["test_acc"] and plan.PILOT_EPOCHS == (4, 6, 8)
    assert plan.choose_epochs({}) is None
    assert plan.choose_epochs({4: bar}) == 4                 # decided without waiting for 6, 8
    assert plan.choose_epochs({4: bar - 1, 6: None, 8: 70}) is None
    assert plan.choose_epochs({4: bar - 1, 6: bar + 1}) == 6
    assert plan.choose_epochs({4: 40, 6: 50, 8: bar - 0.01}) == 8   # none qualifies: the most
    r = plan.recipe(6)
    assert r["lam"] == 0 and r["align_eval_images"] == 0 and r["warmup_epochs"] == 0.9
    assert r["width"] == 0.25 and r["schedule"] == "onecycle" and r["label_smoothing"] == 0.1
    itp.training.TrainConfig(**r).validate()
    assert len(plan.grid()) == 24 and len(set(plan.grid())) == 24
    assert plan.cell_dir("r", "kar", "fastcam", 0.9) == Path("r/kar_fastcam_t0.9")


def _write_pilot(root: Path, epochs: int, top1: float, seed: int = 0) -> None:
    folder = plan.pilot_dir(root, epochs, seed)
    folder.mkdir(parents=True)
    (folder / "provenance.json").write_text(json.dumps(
        {"format": plan.CELL_FORMAT, "mode": "unmodified", "method": None, "fraction": None,
         "epochs": epochs, "seed": seed, "test_acc": top1, "test_top5": 90.0}))


def test_scheduler_jobs_wait_for_the_pilot_then_run_the_grid(tmp_path, monkeypatch):
    from interpretable.roar.jobs import roar_jobs
    from interpretable.study import jobs as study

    jobs = roar_jobs(study.ConditionalJob, lambda: study.HERE)  # as the job list adds them
    monkeypatch.setattr(study, "HERE", tmp_path)
    every = study.JOBS + [j for j in jobs if j.name not in {k.name for k in study.JOBS}]
    assert len({j.name for j in every}) == len({j.target for j in every}) == len(every)
    names = [j.name for j in jobs]
    assert names[:3] == [f"roar/pilot/unmodified_e{e}_seed0" for e in (4, 6, 8)]
    assert [n for n in names if n.startswith("roar/cache/")] == [
        f"roar/cache/{m}.npy" for m in roar.METHODS]
    assert names.index("roar/cache/fastcam.npy") < names.index("roar/unmodified")
    assert len([n for n in names if "_t0." in n]) == 25 and len(jobs) == 3 + 6 + 4 + 25 + 1
    cell = next(j for j in jobs if j.name == "roar/roar_gradcam_t0.5")
    seeds = [j for j in jobs if "seed1" in j.name or "seed2" in j.name]
    assert cell.args[:2] == ["cell", "--mode"] and cell.target == "reference/roar/roar_gradcam_t0.5"
    assert not cell.ready() and not cell.done() and not cell.started()
    assert all(j.needed() and not j.ready() for j in seeds)   # undecided: waiting
    assert jobs[0].ready() and jobs[0].command()[:3] == ["roar", "cell", "--mode"]
    _write_pilot(tmp_path / "roar", 4, plan.REFERENCE_TOP1 - plan.TOLERANCE - 1)
    _write_pilot(tmp_path / "roar", 6, plan.REFERENCE_TOP1)
    assert [j.name for j in seeds if j.needed()] == ["roar/pilot/unmodified_e6_seed1",
                                                     "roar/pilot/unmodified_e6_seed2"]
    assert all(j.done() for j in seeds if not j.needed())
    assert not cell.ready()                                   # its rank file is missing
    (tmp_path / "roar" / "cache").mkdir()
    for suffix in (".npy", ".json"):
        (tmp_path / "roar" / "cache" / f"gradcam{suffix}").write_bytes(b"")
    assert cell.ready() and cell.command()[-2:] == ["--epochs", "6"]
    (tmp_path / cell.name).mkdir(parents=True)
    (tmp_path / cell.name / "last.pt").write_bytes(b"")
    assert cell.started() and not cell.done()
    again = jobs[-1]  # the reproduction waits for its cell and for the pilot's seeds
    assert again.name == "roar/reproduce/roar_fastcam_t0.5" and again.args[0] == "reproduce"
    assert again.needed() and not again.ready()
    for seed in (1, 2):
        _write_pilot(tmp_path / "roar", 6, plan.REFERENCE_TOP1 - seed, seed)
    assert not again.ready()                                  # its cell is not finished
    done = tmp_path / "roar" / "roar_fastcam_t0.5"
    done.mkdir()
    (done / "provenance.json").write_text("{}")
    assert again.ready() and again.command()[:2] == ["roar", "reproduce"]


def test_a_cell_trained_again_from_its_record_reproduces_its_accuracy(task, tmp_path,
                                                                      capsys):
    train, test, _ = task
    small = (ImageSet(train.images[:128], train.targets[:128]),
             ImageSet(test.images[:64], test.targets[:64], split="test"))
    ranks = _random_ranks(*small)
    kw = {"overrides": TINY, "datasets": small, "rank_arrays": ranks}
    cell = roar.run_cell("roar", "random", 0.5, root=tmp_path, epochs=1, **kw)
    folder = plan.cell_dir(tmp_path, "roar", "random", 0.5)
    with pytest.raises(ValueError, match="has not chosen the epochs"):
        roar.reproduce_cell(folder, root=tmp_path, **kw)
    _write_pilot(tmp_path, 4, plan.REFERENCE_TOP1)
    _write_pilot(tmp_path, 4, plan.REFERENCE_TOP1 - 1.5, seed=1)
    with pytest.raises(ValueError, match="seed.s. 2 are not finished"):
        roar.reproduce_cell(folder, root=tmp_path, **kw)
    _write_pilot(tmp_path, 4, plan.REFERENCE_TOP1 + 0.5, seed=2)
    assert roar.pilot_spread(tmp_path)["spread"] == pytest.approx(2.0)

    r = roar.reproduce_cell(folder, root=tmp_path, **kw)
    assert r["holds"] and r["identical"] and r["difference"] == 0
    assert r["reproduced"] == cell["test_acc"] and r["spread"] == pytest.approx(2.0)
    out = tmp_path / "reproduce" / "roar_random_t0.5"
    assert json.loads((out / "reproduction.json").read_text())["holds"]
    assert roar.table(tmp_path)[0]["cell"] == "roar_random_t0.5"  # not a cell of the grid
    lines = roar.table_lines(tmp_path)
    assert lines[0].endswith("vs random  vs Grad-CAM") and lines[1].split()[-2:] == ["+0.00",
                                                                                 "-"]
    assert "spread of the pilot's seeds: 2.00 points" in lines[-1]

    # a committed accuracy the recipe cannot reach again: not reproduced (exit 1)
    record = json.loads((folder / "provenance.json").read_text())
    (folder / "provenance.json").write_text(json.dumps(
        {**record, "test_acc": record["test_acc"] + 2.5}))
    r = roar.reproduce_cell(folder, root=tmp_path, **kw)  # the finished re-run is read again
    assert not r["holds"] and not r["identical"] and r["difference"] == pytest.approx(-2.5)
    # another recipe, or other ranks: an error before (recipe) or after (ranks) training
    with pytest.raises(ValueError, match="recipe changed.*recipe.lr"):
        roar.reproduce_cell(folder, root=tmp_path, **{**kw, "overrides": {**TINY, "lr": 0.01}})
    flipped = (ranks[0][:, ::-1].copy(), ranks[1])
    with pytest.raises(ValueError, match="ranks differ"):
        roar.reproduce_cell(folder, out=tmp_path / "other", root=tmp_path,
                            **{**kw, "rank_arrays": flipped})
    with pytest.raises(FileNotFoundError, match="no finished ROAR / KAR cell"):
        roar.reproduce_cell(tmp_path / "nowhere", root=tmp_path, **kw)
    with pytest.raises(ValueError, match="out must differ"):
        roar.reproduce_cell(folder, out=folder, root=tmp_path, **kw)
    assert roar.main(["reproduce", str(tmp_path / "nowhere"), "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no finished ROAR / KAR cell" in err and err.count("\n") == 1


def test_roar_figure_draws_each_method_per_mode_with_the_seed_band():
    import matplotlib

    matplotlib.use("Agg")
    from interpretable.book.roar import roar_figure

    rows = [{"mode": "unmodified", "method": None, "fraction": None, "top1": 60.0}]
    for mode in plan.MODES:
        for method in ("random", "gradcam"):
            for t in (0.9, 0.1, 0.5):  # any order: drawn by fraction
                rows.append({"mode": mode, "method": method, "fraction": t,
                             "top1": 50.0 + 10 * t if mode == "kar" else 50.0 - 10 * t})
    fig = roar_figure(rows, seeds=(59.0, 61.5))
    roar_ax, kar_ax = fig.axes
    drawn = [line for line in roar_ax.get_lines() if line.get_marker() == "o"]
    assert len(drawn) == 2
    assert all(list(line.get_xdata()) == [10.0, 50.0, 90.0] for line in drawn)
    assert list(drawn[1].get_ydata()) == [49.0, 45.0, 41.0]
    band = roar_ax.patches[0]
    low, high = band.get_y(), band.get_y() + band.get_height()
    assert (low, high) == pytest.approx((59.0, 61.5))  # the seeds and the unmodified run
    assert "Grad-CAM" in [t.get_text() for t in fig.legends[0].get_texts()]
    assert kar_ax.get_title().startswith("KAR") and kar_ax.get_xlim() == (0, 100)
    with pytest.raises(ValueError, match="no finished ROAR or KAR cell"):
        roar_figure(rows[:1])


def test_reading_signs_each_cell_against_random_and_grad_cam_with_the_seed_spread():
    def row(mode, method, t, top1):
        return {"mode": mode, "method": method, "fraction": t, "top1": top1}

    rows = [row("unmodified", None, None, 60.0),
            row("roar", "random", 0.5, 50.0), row("roar", "gradcam", 0.5, 40.0),
            row("roar", "fastcam", 0.5, 41.5), row("roar", "smoe", 0.5, 49.5),
            row("kar", "random", 0.5, 30.0), row("kar", "gradcam", 0.5, 45.0),
            row("kar", "fastcam", 0.5, 45.8), row("kar", "smoe", 0.1, 20.0)]
    got = roar.reading(rows, 1.0)
    assert list(got)[:2] == [("roar", "random", 0.5), ("roar", "gradcam", 0.5)]  # row order
    assert len(got) == 8 and ("unmodified", None, None) not in got
    g, f, s = (got["roar", m, 0.5] for m in ("gradcam", "fastcam", "smoe"))
    assert (g["vs_random"], g["beats_random"], g["vs_reference"], g["on_par"]) == (
        10.0, True, 0.0, True)        # lower under ROAR = the map removed what was needed
    assert f["vs_reference"] == pytest.approx(-1.5) and f["worse_than_reference"]
    assert not f["on_par"] and f["beats_random"]
    assert s["vs_random"] == pytest.approx(0.5) and s["beats_random"] is False
    k = got["kar", "fastcam", 0.5]   # higher under KAR = what it kept was enough
    assert k["vs_random"] == pytest.approx(15.8) and k["vs_reference"] == pytest.approx(0.8)
    assert k["on_par"] and not k["better_than_reference"]
    assert got["roar", "random", 0.5]["beats_random"] is None
    lone = got["kar", "smoe", 0.1]    # no random or Grad-CAM cell at t = 0.1
    assert lone["vs_random"] is lone["vs_reference"] is lone["on_par"] is None
    for bad in (-1, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="spread must be"):
            roar.reading(rows, bad)


# ------------------------------------------------------------- (g) the committed records


def _committed_cells() -> list[Path]:
    return sorted(p.parent for p in (REPO / "reference" / "roar").glob("**/provenance.json"))


def test_the_committed_cells_were_trained_with_todays_recipe_and_agree():
    # Every committed cell record (pilot runs included) is in today's format and recipe, its
    # summary and log agree with it, all saw the same data, and the cells explain the
    # committed baseline with the epoch count the pilot rule gives.
    from interpretable.roar.cells import _differences

    folders = _committed_cells()
    assert folders, "no committed ROAR record below reference/roar"
    root = REPO / "reference" / "roar"
    baseline_sha = sha256_file(REPO / DEFAULT_CHECKPOINT)
    chosen = plan.chosen_epochs(root)
    fingerprints = set()
    for folder in folders:
        p = json.loads((folder / "provenance.json").read_text())
        name = folder.relative_to(root)
        assert p["format"] == plan.CELL_FORMAT, name
        mine = {k: p[k] for k in ("mode", "method", "fraction", "epochs", "seed")}
        mine["recipe"] = plan.recipe(p["epochs"], p["seed"])
        assert _differences(p, mine) == [], name
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["test_acc"] == p["test_acc"] and summary["epochs"] == p["epochs"], name
        assert summary["weights_dtype"] == p["weights_dtype"] == "float16", name
        log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in log] == list(range(1, p["epochs"] + 1)), name
        assert log[-1]["test_acc"] == p["test_acc"], name
        fingerprints.add(p["data_sha256"])
        if folder.parent == root and p["mode"] != "unmodified":  # a grid cell
            assert p["epochs"] == chosen, name
            explained = None if p["method"] == "random" else baseline_sha  # random: no model
            assert p["explained_checkpoint_sha256"] == explained, name
            assert p["rank_sha256"] and p["ranks"]["sha256"] == p["rank_sha256"], name
    assert len(fingerprints) == 1, "the committed cells saw different data"


def test_modified_figure_draws_the_cells_images_per_map_and_mode():
    import matplotlib

    matplotlib.use("Agg")
    from interpretable.book.roar import modified_figure

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    ranks = {"first": np.arange(64), "random": rng.permutation(64)}
    fill = (1, 2, 3)
    fig = modified_figure(image, ranks, fill, fractions=(0.25, 0.75))
    assert len(fig.axes) == 2 * 4
    drawn = fig.axes[1].images[0].get_array()  # row "first", ROAR t = 0.75
    replaced = (np.asarray(drawn) == fill).all(axis=-1)
    assert replaced.reshape(-1)[:48].all() and not replaced.reshape(-1)[48:].any()
    kar = np.asarray(fig.axes[2].images[0].get_array())  # KAR t = 0.25: 16 pixels kept
    assert ((kar == fill).all(axis=-1).reshape(-1)[16:]).all()
    assert fig.axes[0].get_title() == "ROAR, t = 0.25"
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        modified_figure(image.astype(float), ranks, fill)


def test_side_by_side_puts_each_maps_two_families_in_one_row():
    import pandas as pd

    from interpretable.book.roar import side_by_side

    faith = pd.DataFrame({"AD ↓": [30.0, 95.0], "AG ↑": [1.0, 2.0], "Insertion ↑": [35.0, 14.0],
                          "Deletion ↓": [8.0, 4.0]}, index=["Grad-CAM", "random map"])
    rows = [{"mode": "unmodified", "method": None, "fraction": None, "top1": 55.0},
            {"mode": "roar", "method": "gradcam", "fraction": 0.5, "top1": 30.0},
            {"mode": "kar", "method": "random", "fraction": 0.5, "top1": 40.0},
            {"mode": "roar", "method": "fastcam", "fraction": 0.1, "top1": 50.0}]
    t = side_by_side(faith, rows)
    assert list(t.index) == ["random map", "Grad-CAM", "FastCAM"]
    assert list(t.columns) == ["AD ↓", "Insertion ↑", "Deletion ↓", "ROAR t=0.1 ↓",
                               "ROAR t=0.5 ↓", "KAR t=0.1 ↑", "KAR t=0.5 ↑"]
    assert t.loc["Grad-CAM", "ROAR t=0.5 ↓"] == 30.0
    assert t.loc["random map", "KAR t=0.5 ↑"] == 40.0
    assert t.loc["random map", "Deletion ↓"] == 4.0
    assert np.isnan(t.loc["FastCAM", "AD ↓"]) and np.isnan(t.loc["Grad-CAM", "KAR t=0.5 ↑"])
    assert list(side_by_side(faith, rows, fractions=[0.5]).columns)[-2:] == [
        "ROAR t=0.5 ↓", "KAR t=0.5 ↑"]


def test_the_reference_readme_shows_the_committed_roar_cells():
    """reference/README.md holds ``python -m interpretable roar table`` as the committed
    records give it today, so a cell that lands cannot leave a stale table behind."""
    root = REPO / "reference" / "roar"
    readme = (REPO / "reference" / "README.md").read_text()
    block = "```text\n" + "\n".join(plan.table_lines(root)) + "\n```"
    assert block in readme, ("reference/README.md's ROAR table is out of date: paste the "
                             "output of `python -m interpretable roar table` into it")


def test_the_findings_page_quotes_the_committed_roar_cells():
    """book/findings.md's ROAR / KAR table (three fractions, two modes) and the numbers its prose
    quotes are the committed cells' top-1, rounded to one decimal."""
    import re

    text = (REPO / "book" / "findings.md").read_text()
    top1 = {(r["mode"], r["method"], r["fraction"]): r["top1"]
            for r in plan.table(REPO / "reference" / "roar")}
    names = {"random (seeded)": "random", "SMOE saliency alone": "smoe",
             "Grad-CAM": "gradcam", "FastCAM": "fastcam"}
    rows = {label: cells.split(" | ") for label, cells in re.findall(
        r"^\| (.+?) \| ((?:[\d.]+ \| ){5}[\d.]+) \|$", text, flags=re.M)}
    assert set(names) <= set(rows), "the findings' ROAR table lost a row"
    columns = [(mode, t) for mode in ("roar", "kar") for t in (0.1, 0.5, 0.9)]
    for label, method in names.items():
        for (mode, t), cell in zip(columns, rows[label], strict=True):
            assert float(cell) == round(top1[mode, method, t], 1), (label, mode, t)
    prose = text[text.index("At half the pixels FastCAM"):]
    quoted = [top1["roar", "random", 0.1], top1["roar", "gradcam", 0.1],
              top1["kar", "random", 0.1], top1["kar", "gradcam", 0.1],
              top1["roar", "fastcam", 0.1], top1["kar", "fastcam", 0.1],
              top1["roar", "random", 0.9]]
    for value in quoted:
        assert f"{value:.1f}" in prose, value
    for t in (0.5, 0.9):  # how far Grad-CAM's kept share lies above the unmodified images
        gap = top1["kar", "gradcam", t] - top1["unmodified", None, None]
        assert f"{gap:.1f}" in prose[prose.index("One caution"):], t


def test_a_committed_cell_was_reproduced_within_the_seed_spread():
    """One cell trained again from its committed record (``python -m interpretable roar
    reproduce``, the last job of run_all.sh) lands within the pilot's seed spread, on the same
    ranks, data, explained checkpoint and recipe."""
    from interpretable.roar.cells import REPRODUCTION_FORMAT

    root = REPO / "reference" / "roar"
    records = sorted((root / "reproduce").glob("*/reproduction.json"))
    assert records, "no committed reproduction.json below reference/roar/reproduce"
    spread = plan.pilot_spread(root)
    for path in records:
        rec = json.loads(path.read_text())
        cell = json.loads((root / rec["cell"] / "provenance.json").read_text())
        again = json.loads((path.parent / "provenance.json").read_text())
        assert rec["format"] == REPRODUCTION_FORMAT
        assert rec["committed"] == cell["test_acc"] and rec["reproduced"] == again["test_acc"]
        assert rec["spread"] == spread["spread"]
        assert abs(rec["reproduced"] - rec["committed"]) <= spread["spread"], rec["cell"]
        assert rec["holds"] is True
        for key in ("mode", "method", "fraction", "epochs", "seed", "rank_sha256",
                    "data_sha256", "explained_checkpoint_sha256"):
            assert again[key] == cell[key], (rec["cell"], key)
