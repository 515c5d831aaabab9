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
from interpretable.training import TrainConfig
from interpretable.training.presets import PRESETS, preset

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
    (["RUN", "--conventions", "paper"], "--conventions: invalid choice: 'paper'"),
    (["RUN", "--substrate", "grey"], "--substrate: invalid choice: 'grey'"),
    (["RUN", "--blur-kernel", "4"], "blur_kernel must be an odd positive int"),
    (["RUN", "--blur-sigma", "0"], "--blur-sigma: expected a positive number"),
    (["RUN", "--step", "7"], "step must divide the 32x32 = 1024 pixels"),
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
    # building the parser reads the method registry without importing torch
    code = ("import sys; from interpretable.cli import build_parser; build_parser(); "
            "print('torch' in sys.modules)")
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert probe.stdout.strip() == "False", probe.stderr
    sub = build_parser()._subparsers._group_actions[0].choices["evaluate"]
    text = sub.format_help()
    assert "RUN_DIR_OR_CHECKPOINT" in text
    for action in sub._actions:
        assert action.help, action.dest  # every option is explained
    for option in ("--methods", "--images", "--seed", "--target", "--batch-size", "--out",
                   "--data-root", "--device", "--no-progress", "--conventions", "--substrate",
                   "--blur-kernel", "--blur-sigma", "--step"):
        assert option in text


def test_evaluate_interrupted_says_how_to_resume(run_dir, tmp_path, capsys, monkeypatch):
    from interpretable.metrics import runs

    def interrupted(key, model, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "build_method", interrupted)
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(run_dir), "--images", "2", "--out", str(tmp_path / "m.csv"),
              "--no-progress"])
    assert exc.value.code == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "run the same command again to resume" in err


def test_evaluate_authors_conventions_go_to_their_own_file(run_dir, tmp_path, capsys):
    from interpretable.metrics import read_results, runs

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "last.pt").write_bytes((run_dir / "last.pt").read_bytes())
    argv = ["evaluate", str(folder), "--methods", "gradcam", "--images", "2", "--device", "cpu",
            "--no-progress", "--conventions", "authors"]
    assert main(argv) == 0
    assert "conventions authors" in capsys.readouterr().out
    out = folder / "metrics_authors.csv.gz"  # the default file of these conventions
    assert len(read_results(out)) == 2 and not (folder / "metrics.csv.gz").exists()
    prov = json.loads(runs.provenance_path(out).read_text())
    assert (prov["conventions"], prov["substrate"], prov["blur_kernel"], prov["blur_sigma"],
            prov["step"]) == ("authors", "mean", 5, 5.0, 256)
    # the same file with other conventions: refused, one line
    for extra in (["--substrate", "black"], ["--conventions", "ours"]):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--out", str(out), *extra])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "other settings" in err
    # an override alone: its own default file, named custom
    assert main([*argv[:-2], "--substrate", "blur"]) == 0
    prov = json.loads(runs.provenance_path(folder / "metrics_custom.csv.gz").read_text())
    assert (prov["conventions"], prov["substrate"], prov["step"]) == ("custom", "blur", 32)
