"""interpretable.study.reference.describe on reference folders built in a temporary directory."""

from __future__ import annotations

import json

import pytest
import torch

import interpretable as itp
from interpretable.study import reference


def _record(epoch: int, acc: float) -> dict:
    return {"epoch": epoch, "lr": 0.1, "train_ce": 3.0, "train_align": None, "train_loss": 3.0,
            "train_acc": acc - 1, "test_acc": acc, "test_top5": acc + 30, "test_align": 0.9,
            "train_seconds": 1700.0, "seconds": 1800.0}


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """resnet18_baseline in progress (3 of 20 epochs, last.pt only) and resnet18_regularized
    finished (final.pt whose meta differs from the log, so the test sees which one is read)."""
    monkeypatch.setenv("INTERPRETABLE_REFERENCE", str(tmp_path))
    torch.manual_seed(0)
    net = itp.models.create("resnet18", width=0.125)
    history = [_record(e, 10.0 * e) for e in (1, 2, 3)]

    a = tmp_path / "resnet18_baseline"
    a.mkdir()
    (a / "config.json").write_text(json.dumps({"arch": "resnet18", "width": 0.125, "lam": 0.0,
                                               "epochs": 20}))
    (a / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    itp.models.save_checkpoint(a / "last.pt", net, {"arch": "resnet18", "width": 0.125},
                               extra={"history": history})

    b = tmp_path / "resnet18_regularized"
    b.mkdir()
    cfg = {"arch": "resnet18", "width": 0.125, "lam": 7.5e-3, "epochs": 2}
    (b / "config.json").write_text(json.dumps(cfg))
    (b / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history[:2]))
    itp.models.save_checkpoint(b / "final.pt", net, {
        "arch": "resnet18", "width": 0.125, "training": cfg, "test_acc": 21.5,
        "test_top5": 50.25, "test_align": 0.5, "history": history[:2], "note": "short run"})
    return tmp_path


def test_in_progress_run(runs):
    d = reference.describe("resnet18_baseline")
    assert d["arch"] == "resnet18" and d["width"] == 0.125 and d["lam"] == 0.0
    assert (d["epoch"], d["epochs"]) == (3, 20)
    assert d["finished"] is False and d["state"] == "in progress"
    assert (d["top1"], d["top5"], d["test_align"]) == (30.0, 60.0, 0.9)
    assert d["hours"] == pytest.approx(3 * 1800 / 3600)
    assert d["text"] == reference.describe_line("resnet18_baseline")
    assert "epoch 3 of 20 (IN PROGRESS)" in d["text"] and "top-1 30.00%" in d["text"]
    assert "lambda 0," in d["text"]


def test_finished_run_reads_the_final_meta(runs):
    d = reference.describe("resnet18_regularized")
    assert d["finished"] is True and d["state"] == "finished"
    assert (d["epoch"], d["epochs"], d["lam"]) == (2, 2, 7.5e-3)
    assert (d["top1"], d["top5"]) == (21.5, 50.25)  # the checkpoint's, not the log's 20.0
    assert d["note"] == "short run"
    assert "epoch 2 of 2 (finished)" in d["text"] and "[short run]" in d["text"]
    assert "lambda 0.0075" in d["text"]


def test_without_config_and_log_falls_back_to_the_checkpoint(runs):
    folder = runs / "resnet18_baseline"
    (folder / "config.json").unlink()
    (folder / "log.jsonl").unlink()
    d = reference.describe("resnet18_baseline")
    assert d["epoch"] == 3 and d["top1"] == 30.0  # from last.pt's history
    assert d["epochs"] is None and d["lam"] is None
    assert "epoch 3 of ? (IN PROGRESS)" in d["text"] and "lambda ?" in d["text"]


def test_missing_run_and_bad_name(runs):
    with pytest.raises(FileNotFoundError, match="mobilenet_v2_baseline"):
        reference.describe("mobilenet_v2_baseline")
    with pytest.raises(ValueError, match="name must be one of"):
        reference.describe("resnet50")
    assert reference.available() == ["resnet18_baseline", "resnet18_regularized"]


def test_root_from_argument_environment_or_checkout_and_one_error_without(tmp_path, monkeypatch):
    monkeypatch.delenv("INTERPRETABLE_REFERENCE", raising=False)
    assert reference.find_root() == reference.CHECKOUT  # this repository's reference/
    monkeypatch.setenv("INTERPRETABLE_REFERENCE", str(tmp_path))
    assert reference.find_root() == tmp_path
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert reference.find_root(other) == other and reference.available(other) == []
    # an installed wheel: no checkout beside the package, no variable
    monkeypatch.delenv("INTERPRETABLE_REFERENCE")
    monkeypatch.setattr(reference, "CHECKOUT", tmp_path / "site-packages" / "reference")
    with pytest.raises(FileNotFoundError, match="INTERPRETABLE_REFERENCE") as err:
        reference.load("resnet18_baseline")
    assert "site-packages" in str(err.value) and "root=" in str(err.value)
    with pytest.raises(FileNotFoundError, match="missing"):
        reference.find_root(tmp_path / "missing")
