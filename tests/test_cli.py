"""The command line: help, one-line errors, presets and overrides, a paper-preset smoke step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from interpretable.cli import build_parser, config_from_args, main
from interpretable.presets import PRESETS, preset
from interpretable.training import TrainConfig

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "interpretable", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def test_help_explains_every_option():
    res = _run("train", "--help")
    assert res.returncode == 0
    text = res.stdout
    for f in fields(TrainConfig):
        if f.name == "progress":
            assert "--no-progress" in text
            continue
        assert "--" + f.name.replace("_", "-") in text, f.name
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["train"]
    for action in sub._actions:
        assert action.help, action.dest  # every option is explained


@pytest.mark.parametrize("args, words", [
    (["train", "--out", "x", "--arch", "vgg"], "invalid choice"),
    (["train", "--out", "x", "--lr", "abc"], "invalid float"),
    (["train", "--out", "x", "--reg-fraction", "1.5"], "reg_fraction"),
    (["train", "--arch", "resnet18"], "--out"),
    (["train", "--out", "x", "--milestones", "a,b"], "milestones"),
    (["train", "--out", "x", "--warmup-epochs", "5", "--epochs", "2"], "warmup_epochs"),
])
def test_bad_options_give_one_clear_line(args, words, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert words in lines[0]


def test_bad_option_from_the_shell_has_no_traceback():
    res = _run("train", "--out", "x", "--lr", "-1")
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "lr must be > 0" in lines[0], res.stderr


def test_presets_and_explicit_overrides():
    args = build_parser().parse_args(["train", "--preset", "cpu", "--arch", "mobilenet_v2",
                                      "--epochs", "3", "--lam", "0", "--out", "o"])
    cfg = config_from_args(args)
    assert cfg.epochs == 3 and cfg.lam == 0.0 and cfg.arch == "mobilenet_v2"
    assert cfg.width == preset("cpu", "mobilenet_v2")["width"]
    assert cfg.schedule == PRESETS["cpu"]["schedule"]
    paper = config_from_args(build_parser().parse_args(["train", "--out", "o"]))
    assert (paper.epochs, paper.lr, paper.batch_size, paper.milestones, paper.gamma) == \
        (200, 0.1, 128, [60, 120, 160], 0.2)
    assert (paper.momentum, paper.weight_decay, paper.warmup_epochs, paper.width) == \
        (0.9, 5e-4, 1.0, 1.0)
    assert paper.lam == 7.5e-3 and paper.schedule == "step" and paper.label_smoothing == 0


def test_resume_with_other_settings_is_one_clear_error(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--preset", "ci", "--epochs", "1", "--width", "0.0625",
            "--train-per-class", "1", "--out", str(out), "--no-progress"]
    assert main(base) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and (out / "final.pt").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(base[:-3] + ["--lam", "0.5", "--out", str(out), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "lam" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_paper_preset_runs_one_step_on_cpu(tmp_path):
    # The paper recipe (full width, batch 128, lambda 7.5e-3) for a single step: a 2-image-
    # per-class subset is one batch of 128, and one epoch.
    out = tmp_path / "paper"
    assert main(["train", "--preset", "paper", "--epochs", "1", "--train-per-class", "2",
                 "--test-per-class", "1", "--align-eval-images", "8", "--out", str(out),
                 "--no-progress", "--final-fp16", "false"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["train_align"] is not None
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["width"] == 1.0 and cfg["batch_size"] == 128 and cfg["lr"] == 0.1
    assert cfg["lam"] == 7.5e-3 and cfg["schedule"] == "step"


# -- evaluate ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import torch

    import interpretable as itp

    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = itp.models.create("resnet18", width=0.0625).eval()
    itp.models.save_checkpoint(folder / "last.pt", model, meta={"epoch": 1})
    return folder


@pytest.mark.parametrize("args, words", [
    (["MISSING"], "is neither a run folder nor a checkpoint file"),
    (["RUN", "--methods", "gradcam,gradcamm"], "unknown method 'gradcamm'"),
    (["RUN", "--images", "0"], "--images: expected 'all' or a positive whole number"),
    (["RUN", "--images", "-5"], "--images: expected 'all' or a positive whole number"),
    (["RUN", "--images", "many"], "--images: expected 'all' or a positive whole number"),
    (["RUN", "--images", "10001"], "images must be 'all' or a whole number in 1..10000"),
    (["RUN", "--target", "truth"], "--target: invalid choice: 'truth'"),
    (["RUN", "--batch-size", "0"], "--batch-size: expected a positive whole number"),
    (["RUN", "--seed", "x"], "--seed: expected a whole number >= 0"),
    (["RUN", "--out", "m.xlsx"], "out must end in .csv, .csv.gz or .json"),
    (["RUN", "--device", "gpu"], "device must be cpu, cuda"),
])
def test_evaluate_bad_arguments_give_one_clear_line(run_dir, args, words, capsys):
    args = [str(run_dir) if a == "RUN" else str(run_dir / "nothing") if a == "MISSING" else a
            for a in args]
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", *args, "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interpretable evaluate: error:"), err
    assert words in lines[0]
    assert not (run_dir / "metrics.csv.gz").exists()


def test_evaluate_command_writes_rows_summary_and_provenance(run_dir, tmp_path, capsys):
    from interpretable.metrics import read_results, runs

    out = tmp_path / "m.csv.gz"
    argv = ["evaluate", str(run_dir), "--methods", "gradcam,xgradcam", "--images", "3",
            "--seed", "4", "--batch-size", "2", "--out", str(out), "--device", "cpu",
            "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    table = read_results(out)
    assert len(table) == 6 and list(dict.fromkeys(table["method"])) == ["Grad-CAM", "XGrad-CAM"]
    summary = [line for line in text.splitlines() if line.startswith(("Grad-CAM", "XGrad-CAM"))]
    assert len(summary) == 2
    for line in summary:  # method, then the means of AD, AG, AI, Ins, Del, then images
        name, *values, images = line.split()
        rows = table[table["method"] == name]
        want = [rows[c].mean() for c in ("ad", "ag", "ai", "insertion", "deletion")]
        assert [float(v) for v in values] == pytest.approx(want, abs=0.006) and images == "3"
    prov = json.loads(runs.provenance_path(out).read_text())
    assert prov["command"] == "python -m interpretable " + " ".join(argv)
    assert prov["checkpoint"].endswith("last.pt") and prov["methods"] == ["gradcam", "xgradcam"]
    assert (prov["images"], prov["seed"], prov["batch_size"]) == (3, 4, 2)
    # the same command again: nothing left to compute, the same rows
    assert main(argv) == 0
    assert read_results(out).equals(table)


def test_evaluate_from_the_shell_has_no_traceback(tmp_path):
    res = _run("evaluate", str(tmp_path / "no_such_run"), "--no-progress")
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "neither a run folder nor a checkpoint" in lines[0], res.stderr
    from interpretable.cli import EVALUATE_DEFAULT, EVALUATE_METHODS
    from interpretable.metrics.runs import DEFAULT_METHODS, METHOD_NAMES

    assert EVALUATE_METHODS == tuple(METHOD_NAMES) and EVALUATE_DEFAULT == ",".join(DEFAULT_METHODS)
    sub = build_parser()._subparsers._group_actions[0].choices["evaluate"]
    text = sub.format_help()
    assert "RUN_DIR_OR_CHECKPOINT" in text
    for action in sub._actions:
        assert action.help, action.dest  # every option is explained
    for option in ("--methods", "--images", "--seed", "--target", "--batch-size", "--out",
                   "--data-root", "--device", "--no-progress"):
        assert option in text


def test_evaluate_interrupted_says_how_to_resume(run_dir, tmp_path, capsys, monkeypatch):
    from interpretable.metrics import runs

    def interrupted(model, methods):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "build_methods", interrupted)
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(run_dir), "--images", "2", "--out", str(tmp_path / "m.csv"),
              "--no-progress"])
    assert exc.value.code == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "run the same command again to resume" in err
