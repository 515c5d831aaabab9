"""interpretable.study.scratch: the from-scratch study's folders, commands and rule."""

from __future__ import annotations

import json

from interpretable.study import scratch


def test_rule_takes_the_largest_lambda_within_the_tolerance():
    assert scratch.choose_lambda(65.0, {0.05: 64.9, 0.1: 63.5, 0.2: 63.4}) == 0.1
    assert scratch.choose_lambda(65.0, {0.05: 66.0, 0.1: 65.2, 0.2: 63.6}) == 0.2
    assert scratch.choose_lambda(65.0, {0.05: 63.4, 0.1: 60.0, 0.2: 50.0}) is None
    assert scratch.choose_lambda(65.0, {0.0: 65.0}) is None  # a baseline seed is no candidate


def _summary(root, arch, lam, acc, seed=0):
    folder = scratch.run_dir(root, arch, lam, seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps({"test_acc": acc}))


def test_mobilenet_waits_for_every_resnet_run_then_follows_the_rule(tmp_path):
    (tmp_path / "resnet18_baseline").mkdir()
    (tmp_path / "resnet18_baseline" / "summary.json").write_text('{"test_acc": 65.07}')
    _summary(tmp_path, "resnet18", 0.05, 64.8)
    _summary(tmp_path, "resnet18", 0.1, 63.6)
    assert scratch.mobilenet_lambda(tmp_path) is None  # lambda 0.2 unfinished
    _summary(tmp_path, "resnet18", 0.2, 63.5)
    assert scratch.mobilenet_lambda(tmp_path) == (0.1, 0.1)
    _summary(tmp_path, "resnet18", 0.05, 60.0)
    _summary(tmp_path, "resnet18", 0.1, 60.0)
    _summary(tmp_path, "resnet18", 0.2, 60.0)
    assert scratch.mobilenet_lambda(tmp_path) == (None, 0.05)  # none qualified: 0.05


def test_commands_repeat_the_baseline_and_aligned_recipes():
    assert str(scratch.run_dir("reference", "resnet18", 0.1)) == "reference/scratch/resnet18/lam0.1"
    assert scratch.run_dir("r", "resnet18", 0.0, 1).name == "lam0_seed1"
    reg = scratch.train_args("resnet18", 0.2)
    assert reg[:6] == ["train", "--preset", "cpu", "--arch", "resnet18", "--lam"]
    assert reg[reg.index("--lam-warmup") + 1] == "3" and "logit" in reg
    base = scratch.train_args("resnet18", 0.0, seed=1)
    assert "--lam-warmup" not in base and base[base.index("--seed") + 1] == "1"
