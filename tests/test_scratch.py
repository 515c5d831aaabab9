"""interpretable.study.scratch: the from-scratch study's folders, commands and rule."""

from __future__ import annotations

import json

import pytest

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
    # known as soon as it is certain: 0.2 outside, 0.1 inside, 0.05 cannot change it
    (scratch.run_dir(tmp_path, "resnet18", 0.05) / "summary.json").unlink()
    assert scratch.mobilenet_lambda(tmp_path) == (0.1, 0.1)
    (scratch.run_dir(tmp_path, "resnet18", 0.1) / "summary.json").unlink()
    assert scratch.mobilenet_lambda(tmp_path) is None  # 0.2 outside, 0.1 unfinished
    _summary(tmp_path, "resnet18", 0.2, 63.6)
    assert scratch.mobilenet_lambda(tmp_path) == (0.2, 0.2)  # the largest inside: certain
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


# --- per-image alignment (interpretable.study.alignment) and the from-scratch table ---------


def _finished_tiny_run(folder, seed=0):
    import torch

    from interpretable import models

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    net = models.create("resnet18", width=0.0625)
    models.save_checkpoint(folder / "final.pt", net)
    return net


def test_measure_writes_per_image_cosines_that_an_independent_path_reproduces(tmp_path):
    import numpy as np

    from interpretable import data, mapstats
    from interpretable.attribution import gradient, guided_backprop
    from interpretable.study import alignment

    net = _finished_tiny_run(tmp_path / "run").eval()
    record = alignment.measure(tmp_path / "run", images=12)
    assert record == alignment.read(tmp_path / "run") and record["images"] == 12
    assert len(record["cos_logit"]) == len(record["cos_loss"]) == 12
    # the logit gradient's cosine through the attribution methods (another code path)
    x, y = data.cifar100("test").tensors(range(12))
    expected = mapstats.cosine(gradient(net, x, y), guided_backprop(net, x, y)).numpy()
    np.testing.assert_allclose(record["cos_logit"], expected, atol=1e-5)
    s = record["summary"]["logit"]
    assert s["low"] < s["mean"] < s["high"]
    assert abs(s["mean"] - np.mean(record["cos_logit"])) < 1e-12
    assert len(record["provenance"]["checkpoint_sha256"]) == 64


def test_verify_catches_a_changed_value_and_a_changed_checkpoint(tmp_path):
    import json

    from interpretable.study import alignment

    run = tmp_path / "run"
    _finished_tiny_run(run)
    alignment.measure(run, images=10)
    check = alignment.verify(run, sample=4)
    assert check["ok"], check["problems"]
    assert len(check["images"]) == 4 and check["max_difference"] < 1e-4
    record = json.loads((run / alignment.FILE).read_text())
    record["cos_logit"] = [v + 0.01 for v in record["cos_logit"]]  # stale values
    (run / alignment.FILE).write_text(json.dumps(record))
    problems = alignment.verify(run, sample=4)["problems"]
    assert any("summary of logit" in p for p in problems)
    assert any("re-computed cosines differ" in p for p in problems)
    _finished_tiny_run(run, seed=1)  # another network in final.pt
    assert any("not the checkpoint" in p for p in alignment.verify(run)["problems"])


def test_measure_names_what_is_missing(tmp_path, capsys):
    import pytest

    from interpretable.cli import main
    from interpretable.study import alignment

    with pytest.raises(FileNotFoundError, match="no final.pt"):
        alignment.measure(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["measure", str(tmp_path)])
    assert exit_.value.code == 2 and "no final.pt" in capsys.readouterr().err
    _finished_tiny_run(tmp_path)
    with pytest.raises(ValueError, match="images must be at least 2"):
        alignment.measure(tmp_path, images=1)
    assert main(["measure", str(tmp_path), "--images", "3", "--out", str(tmp_path / "a.json")]) == 0
    assert "logit gradient on 3 test images" in capsys.readouterr().out
    assert (tmp_path / "a.json").is_file() and not (tmp_path / alignment.FILE).exists()


def _run(root, name, lam, acc=None, cos=None, epochs_done=20, align=None):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"lam": lam, "epochs": 20}))
    (folder / "log.jsonl").write_text("{}\n" * epochs_done)
    if acc is not None:
        (folder / "summary.json").write_text(json.dumps({
            "lam": lam, "epochs": 20, "test_acc": acc, "test_top5": acc + 20,
            "test_align_logit": 1 - cos, "test_align_logit_ci": [0.99 - cos, 1.01 - cos],
            "align_images": 2000}))
    if align is not None:
        (folder / "alignment.json").write_text(json.dumps({
            "images": 2, "cos_logit": [align - 0.01, align + 0.01], "cos_loss": [0.0, 0.0],
            "summary": {"logit": {"mean": align, "low": align - 0.1, "high": align + 0.1}}}))


def _scratch_tree(root, lam02=True):
    _run(root, "resnet18_baseline", 0.0, 65.0, 0.2, align=0.01)  # alignment.json wins
    _run(root, "resnet18_regularized", 7.5e-3, 65.5, 0.012)
    _run(root, "resnet18_aligned", 0.5, 45.0, 0.85)
    _run(root, "scratch/resnet18/lam0_seed1", 0.0, 64.6, 0.011)
    _run(root, "scratch/resnet18/lam0.05", 0.05, 64.0, 0.3)
    _run(root, "scratch/resnet18/lam0.1", 0.1, 63.6, 0.6)
    if lam02:
        _run(root, "scratch/resnet18/lam0.2", 0.2, 60.0, 0.8)
    else:
        _run(root, "scratch/resnet18/lam0.2", 0.2, epochs_done=14)


def test_table_gathers_the_reference_and_the_study_runs(tmp_path):
    _scratch_tree(tmp_path, lam02=False)
    rows = scratch.table(tmp_path, "resnet18")
    assert [(r["lam"], r["seed"], r["variant"]) for r in rows] == [
        (0.0, 0, "baseline"), (0.0, 1, "baseline"), (7.5e-3, 0, "loss"), (0.05, 0, "logit"),
        (0.1, 0, "logit"), (0.2, 0, "logit"), (0.5, 0, "logit")]
    base, seed1 = rows[0], rows[1]
    assert base["cos"] == 0.01 and base["images"] == 2 and base["cos_low"] == 0.01 - 0.1
    assert abs(seed1["cos"] - 0.011) < 1e-12 and seed1["images"] == 2000
    assert abs(seed1["cos_low"] - (0.011 - 0.01)) < 1e-12
    assert rows[5] == {"run": "scratch/resnet18/lam0.2", "variant": "logit", "lam": 0.2,
                       "seed": 0, "finished": False, "epochs": 20, "epoch": 14}
    assert scratch.table(tmp_path, "mobilenet_v2") == []


def test_scratch_frame_marks_the_rule_and_the_figure_draws_finished_runs(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from interpretable.book.scratch_curve import scratch_curve_figure, scratch_frame, scratch_table

    _scratch_tree(tmp_path, lam02=False)
    f = scratch_frame(tmp_path, ["resnet18"])
    assert not f["lam_star"].any()  # lambda 0.2 is still training: the rule waits
    t = scratch_table(f).set_index(["lambda", "seed"])
    assert t.loc[(0.2, 0), "state"] == "epoch 14 of 20"
    assert t.loc[(0.1, 0), "vs baseline"] == -1.4 and t.loc[(0.0, 0), "network"] == "ResNet-18"
    assert t.loc[(0.0, 0), "cos(g, g~) [95% CI]"] == "0.010 [-0.090, 0.110]"
    _scratch_tree(tmp_path / "done")
    f = scratch_frame(tmp_path / "done", ["resnet18", "mobilenet_v2"])
    assert list(f.loc[f["lam_star"], "lam"]) == [0.1]  # 63.6 >= 65.0 - 1.5 > 60.0
    assert list(f.loc[f["within"], "lam"]) == [0.0, 0.0, 7.5e-3, 0.05, 0.1]
    assert set(f["arch"]) == {"resnet18"}
    fig = scratch_curve_figure(f)
    assert len(fig.axes) == 2  # one architecture: cos above, top-1 below
    acc_ax = fig.axes[1]
    drawn = {tuple(line.get_xdata()) for line in acc_ax.get_lines() if line.get_marker() == "D"}
    assert (0.05, 0.1, 0.2, 0.5) in drawn  # the logit runs, by lambda
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("seed 1" in t for t in labels) and any("lambda^*" in t for t in labels)


def test_markdown_lists_finished_and_training_runs(tmp_path):
    _scratch_tree(tmp_path, lam02=False)
    text = scratch.markdown(tmp_path, "resnet18")
    assert ("| `resnet18_baseline` | 0 | 0 | baseline | 65.00 | 85.00 "
            "| 0.0100 [-0.0900, 0.1100] | 2 |") in text
    assert "| `scratch/resnet18/lam0.2` | 0.2 | 0 | | epoch 14 of 20 | | | |" in text


def _results(folder, shift, seed, methods=("Grad-CAM", "Score-CAM"), file="metrics.csv.gz",
             complete=True, n=40):
    """A per-image result file of ``methods`` on ``n`` images: a common per-image value,
    noise of ``seed`` and ``shift`` added to every metric (METHODS.md section 5 columns)."""
    import numpy as np
    import pandas as pd

    from interpretable.metrics import METRICS

    every = ("Grad-CAM", "Score-CAM")  # the same images in every file: a common value per cell
    common = np.random.default_rng(123).uniform(0, 60, size=(len(every), n, len(METRICS)))
    common = common[[every.index(m) for m in methods]]
    noise = np.random.default_rng(seed).normal(0, 1, size=common.shape)
    rows = [{"index": i, "label": 1, "predicted": 1, "target": 1, "method": m, "Y": 0.5, "O": 0.4,
             **{mt.column: common[j, i, k] + noise[j, i, k] + shift
                for k, mt in enumerate(METRICS)}}
            for j, m in enumerate(methods) for i in range(n)]
    pd.DataFrame(rows).to_csv(folder / file, index=False, compression="gzip")
    (folder / f"{file}.meta.json").write_text("{}")
    if complete:
        (folder / f"{file}.provenance.json").write_text("{}")


def test_verdicts_pair_each_complete_run_with_the_baseline_and_the_seed(tmp_path):
    from interpretable.tables import beyond_seed, paired_comparison

    _scratch_tree(tmp_path)
    _results(tmp_path / "resnet18_baseline", 0.0, seed=0)
    seed1 = tmp_path / "scratch/resnet18/lam0_seed1"
    _results(seed1, 0.5, seed=1, methods=("Grad-CAM",))
    _results(seed1, 0.5, seed=1, methods=("Score-CAM",), file="metrics_scorecam.csv.gz")
    lam01 = tmp_path / "scratch/resnet18/lam0.1"
    _results(lam01, 3.0, seed=2, methods=("Grad-CAM",))
    _results(lam01, 3.0, seed=2, methods=("Score-CAM",), file="metrics_scorecam.csv.gz")
    lam02 = tmp_path / "scratch/resnet18/lam0.2"  # Score-CAM still to come: left out
    _results(lam02, 3.0, seed=3, methods=("Grad-CAM",))
    lam005 = tmp_path / "scratch/resnet18/lam0.05"  # evaluation still running: left out
    _results(lam005, 3.0, seed=4, methods=("Grad-CAM",), complete=False)
    _results(lam005, 3.0, seed=4, methods=("Score-CAM",), file="metrics_scorecam.csv.gz")
    assert not scratch.results_complete(lam02) and not scratch.results_complete(lam005)
    assert scratch.results_complete(tmp_path / "resnet18_baseline")

    rows = {r["run"]: r for r in scratch.verdicts(tmp_path, "resnet18")}
    assert list(rows) == ["scratch/resnet18/lam0_seed1", "scratch/resnet18/lam0.1"]
    assert rows["scratch/resnet18/lam0_seed1"]["counted"] is None  # the yardstick itself
    one = rows["scratch/resnet18/lam0.1"]
    # +3 on every metric: AG, AI, Ins better; AD, Del (lower is better) worse; all beyond
    # the seed's +0.5
    assert (one["cells"], one["better"], one["worse"], one["counted"]) == (10, 6, 4, 10)
    assert "Score-CAM Del worse" in one["which"].split(", ")
    # the same reading computed directly from the files
    from interpretable.compare import load_results

    base = load_results(tmp_path / "resnet18_baseline")
    direct = beyond_seed(paired_comparison(base, load_results(lam01)),
                         paired_comparison(base, load_results(seed1)))
    assert one["counted"] == int(direct["counts"].sum())
    text = scratch.verdicts_markdown(tmp_path, "resnet18")
    assert "| `scratch/resnet18/lam0.1` | 0.1 | 0 | 63.60 |" in text
    assert "| 6 / 4 (" in text and "| all 10 cells |" in text and "| yardstick |" in text
    (tmp_path / "resnet18_baseline/metrics.csv.gz.provenance.json").unlink()
    with pytest.raises(FileNotFoundError, match="resnet18_baseline: its CAM results"):
        scratch.verdicts(tmp_path, "resnet18")


def test_the_reference_readme_shows_every_finished_run_as_committed():
    """reference/README.md's from-scratch tables are generated (``scratch.markdown`` and
    ``scratch.verdicts_markdown``): every finished run's line must be there as the committed
    files give it today, so a run that finishes cannot leave stale numbers behind."""
    from interpretable.study import reference

    root = reference.find_root()
    readme = (root / "README.md").read_text()
    for arch in scratch.BASELINES:
        lines = [line for line in scratch.markdown(root, arch).splitlines()[2:]
                 if "| epoch " not in line]  # runs still training change every epoch
        lines += scratch.verdicts_markdown(root, arch).splitlines()[2:]
        missing = [line for line in lines if line not in readme]
        assert not missing, (f"reference/README.md is out of date for {arch}: regenerate its "
                             f"tables (python -m interpretable.study.scratch); missing {missing}")


def test_measure_verify_reports_a_reproduced_and_a_stale_run(tmp_path, capsys):
    from interpretable.cli import main
    from interpretable.study import alignment
    from interpretable.training import GRADIENT_OF

    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        main(["measure", str(run), "--verify"])
    assert exit_.value.code == 2 and "holds no summary.json" in capsys.readouterr().err
    net = _finished_tiny_run(run).eval()
    from interpretable import data
    from interpretable.training import accuracy_and_alignment

    got = accuracy_and_alignment(net, data.cifar100("test"), align_images=8,
                                 gradient_of=GRADIENT_OF)
    (run / "summary.json").write_text(json.dumps({**got, "align_images": 8}))
    alignment.measure(run, images=8)
    assert main(["measure", str(run), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "summary.json reproduced" in out and "alignment.json images" in out
    assert "NOT" not in out
    (run / "summary.json").write_text(json.dumps({**got, "align_images": 8,
                                                  "test_acc": got["test_acc"] + 0.01}))
    assert main(["measure", str(run), "--verify"]) == 1
    assert "summary.json NOT reproduced" in capsys.readouterr().out


def test_scratch_epochs_reads_the_logs_of_the_logit_runs_and_the_seed1_baseline(tmp_path):
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    from interpretable.book.scratch_curve import (
        scratch_epochs,
        scratch_epochs_figure,
        scratch_frame,
    )

    _scratch_tree(tmp_path)
    for name, lam in (("scratch/resnet18/lam0.1", 0.1), ("scratch/resnet18/lam0_seed1", 0.0),
                      ("resnet18_aligned", 0.5), ("resnet18_baseline", 0.0)):
        (tmp_path / name / "log.jsonl").write_text("".join(
            json.dumps({"epoch": e, "test_align": 1 - lam * e / 4, "test_acc": 10.0 * e,
                        "lr": 0.1 / e, **({"lam": lam} if "scratch" in name else {})}) + "\n"
            for e in range(1, 5)))
    for name in ("scratch/resnet18/lam0.05", "scratch/resnet18/lam0.2"):
        (tmp_path / name / "log.jsonl").write_text(json.dumps(
            {"epoch": 1, "test_align": 0.9, "test_acc": 5.0, "lr": 0.1, "lam": 0.1}) + "\n")
    (tmp_path / "scratch/resnet18/lam0.2/summary.json").unlink()  # still training: left out
    e = scratch_epochs(scratch_frame(tmp_path, ["resnet18"]), tmp_path)
    # the seed-0 baseline (its log measured the loss gradient) and the unfinished run are out
    assert list(e.groupby("run").size().items()) == [
        ("resnet18_aligned", 4), ("scratch/resnet18/lam0.05", 1), ("scratch/resnet18/lam0.1", 4),
        ("scratch/resnet18/lam0_seed1", 4)]
    one = e[e["run"] == "scratch/resnet18/lam0.1"]
    assert np.allclose(one["cos"], [0.025, 0.05, 0.075, 0.1])
    assert list(one["top1"]) == [10.0, 20.0, 30.0, 40.0]
    assert e.loc[e["run"] == "resnet18_aligned", "lam_now"].isna().all()
    fig = scratch_epochs_figure(e)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [r"baseline ($\lambda$ = 0), seed 1", r"$\lambda$ = 0.05",
                      r"$\lambda$ = 0.1", r"$\lambda$ = 0.5, aligned"]
    assert len(fig.axes[0].get_lines()) == 4 + 1  # four runs and the warm-up mark
