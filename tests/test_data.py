"""Real CIFAR-100 loading: the shared copy, normalization, augmentation, subsets, bad files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import interpretable as itp
from interpretable import data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar100"


def test_real_test_split(test_set):
    assert len(test_set) == 10_000
    assert np.bincount(test_set.targets, minlength=100).tolist() == [100] * 100
    assert test_set.classes[:3] == ["apple", "aquarium_fish", "baby"]
    # published reference values (shared README): red channel of pixel (0,0), first ten images
    assert test_set.images[:10, 0, 0, 0].tolist() == [199, 113, 61, 93, 80, 168, 37, 175, 233, 182]
    names = [test_set.classes[i] for i in test_set.targets[:10]]
    assert names == [
        "mountain",
        "forest",
        "seal",
        "mushroom",
        "sea",
        "tulip",
        "camel",
        "butterfly",
        "cloud",
        "apple",
    ]
    x, y = test_set[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 49


def test_real_train_split_statistics():
    train = itp.data.cifar100("train")
    assert len(train) == 50_000
    assert np.bincount(train.targets, minlength=100).tolist() == [500] * 100
    assert train.images[:10, 0, 0, 0].tolist() == [255, 255, 250, 124, 43, 190, 50, 178, 122, 255]
    pixels = train.images.reshape(-1, 3).astype(np.float64) / 255
    np.testing.assert_allclose(pixels.mean(0), data.MEAN, atol=1e-4)
    np.testing.assert_allclose(pixels.std(0), data.STD, atol=1e-4)
    # each fine class lies in exactly one superclass
    pairs = {(int(f), int(c)) for f, c in zip(train.targets, train.coarse_targets, strict=True)}
    assert len(pairs) == 100


def test_normalize_round_trip():
    x01 = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    x = data.normalize(x01)
    assert torch.allclose(data.denormalize(x), x01)
    # normalized channel means of the mean colour are zero
    mean_img = torch.tensor(data.MEAN).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert data.normalize(mean_img).abs().max() < 1e-6
    assert data.normalize(x01[0]).shape == (3, 32, 32)


def test_augment_batch_crops_and_flips():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    g = torch.Generator().manual_seed(1)
    out = data.augment_batch(x, g)
    assert out.shape == x.shape
    # every output is a shifted (and maybe flipped) window of the zero-padded input
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(2):
        found = any(
            torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1))
            for dy in range(9)
            for dx in range(9)
            for w in [padded[i, :, dy : dy + 32, dx : dx + 32]]
        )
        assert found
    # seeded: same generator state, same result
    assert torch.equal(out, data.augment_batch(x, torch.Generator().manual_seed(1)))


def test_balanced_subset(test_set):
    sub = data.balanced_subset(test_set, per_class=3, seed=5)
    assert len(sub) == 300
    labels = test_set.targets[np.asarray(sub.indices)]
    assert np.bincount(labels, minlength=100).tolist() == [3] * 100
    assert sub.indices == data.balanced_subset(test_set, 3, seed=5).indices
    assert sub.indices != data.balanced_subset(test_set, 3, seed=6).indices
    with pytest.raises(ValueError, match="per_class"):
        data.balanced_subset(test_set, per_class=101)


def test_batches_match_getitem(test_set):
    sub = data.balanced_subset(test_set, per_class=1, seed=0)
    xs, ys = zip(*(next(iter(data.batches(sub, 100))),), strict=True)
    x, y = xs[0], ys[0]
    assert x.shape == (100, 3, 32, 32)
    x0, y0 = sub[0]
    assert torch.allclose(x[0], x0) and int(y[0]) == y0
    total = sum(len(b[1]) for b in data.batches(test_set, 3000))
    assert total == 10_000


def test_explicit_root_and_env(monkeypatch, tmp_path):
    ds = data.cifar100("test", root=SHARED)
    assert len(ds) == 10_000
    monkeypatch.setenv("INTERPRETABLE_DATA", str(SHARED))
    assert data.find_cifar100() == SHARED / "cifar100.npz"


def test_missing_data_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "_REPO_ROOT", tmp_path / "repo")  # no ../shared there
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("INTERPRETABLE_DATA", raising=False)
    with pytest.raises(FileNotFoundError) as err:
        data.find_cifar100(tmp_path / "nowhere", download=False)
    msg = str(err.value)
    assert "nowhere" in msg and "INTERPRETABLE_DATA" in msg and "torchvision" in msg
    with pytest.raises(FileNotFoundError, match="no such file"):
        data.find_cifar100(tmp_path / "missing.npz")


def test_download_failure_is_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "_REPO_ROOT", tmp_path / "repo")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("INTERPRETABLE_DATA", raising=False)

    def offline(folder):
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(FileNotFoundError, match="network unreachable"):
        data.find_cifar100()


def _fake_archive(path, n_test=10_000, **override):
    arrays = {
        "x_test": np.zeros((n_test, 32, 32, 3), np.uint8),
        "y_test": np.arange(n_test, dtype=np.int64) % 100,
        "y_test_coarse": np.arange(n_test, dtype=np.int64) % 20,
    }
    arrays.update(override)
    np.savez(path, **arrays)


def test_corrupt_and_wrong_files(tmp_path):
    good = tmp_path / "good" / "cifar100.npz"
    good.parent.mkdir()
    _fake_archive(good)
    assert len(data.cifar100("test", root=good.parent)) == 10_000

    truncated = tmp_path / "trunc" / "cifar100.npz"
    truncated.parent.mkdir()
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        data.cifar100("test", root=truncated.parent)

    wrong_shape = tmp_path / "shape" / "cifar100.npz"
    wrong_shape.parent.mkdir()
    _fake_archive(wrong_shape, n_test=500)
    with pytest.raises(ValueError, match=r"x_test should be uint8 of shape"):
        data.cifar100("test", root=wrong_shape.parent)

    bad_labels = tmp_path / "labels" / "cifar100.npz"
    bad_labels.parent.mkdir()
    _fake_archive(bad_labels, y_test=np.full(10_000, 100, np.int64))
    with pytest.raises(ValueError, match="0..99"):
        data.cifar100("test", root=bad_labels.parent)

    missing_key = tmp_path / "keys" / "cifar100.npz"
    missing_key.parent.mkdir()
    np.savez(missing_key, foo=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        data.cifar100("test", root=missing_key.parent)

    pickled = tmp_path / "pickle" / "cifar100.npz"
    pickled.parent.mkdir()
    _fake_archive(pickled, y_test=np.array([object()] * 10_000, dtype=object))
    with pytest.raises(ValueError):
        data.cifar100("test", root=pickled.parent)

    with pytest.raises(ValueError, match="split"):
        data.cifar100("validation")
    assert zipfile.is_zipfile(good)


def test_classes_json_is_used(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    _fake_archive(folder / "cifar100.npz")
    names = [f"class{i}" for i in range(100)]
    (folder / "classes.json").write_text(json.dumps({"fine_label_names": names}))
    assert data.cifar100("test", root=folder).classes == names
