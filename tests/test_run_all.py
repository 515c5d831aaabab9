"""The long runs' job list (interpretable.study.jobs) and scheduler (.scheduler)."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from interpretable.study import jobs, scheduler, sweep


@pytest.fixture
def run_all():
    """Both modules' public and private names in one namespace (as the tests read them)."""
    names = {k: getattr(m, k) for m in (jobs, scheduler) for k in dir(m) if not k.startswith("__")}
    return SimpleNamespace(**names)


def _here(monkeypatch, path) -> None:
    """Point the job list and the scheduler at another reference folder."""
    monkeypatch.setattr(jobs, "HERE", path)
    monkeypatch.setattr(scheduler, "HERE", path)


def test_every_planned_run_has_a_training_and_a_metrics_job(run_all):
    names = [j.name for j in run_all.JOBS]
    targets = [j.target for j in run_all.JOBS]
    assert len(set(names)) == len(names) and len(set(targets)) == len(targets)
    for arch in sweep.GRID:
        for g, lam in sweep.planned(arch):
            run = str(sweep.run_dir("", arch, g, lam))
            assert run in names and f"{run}:metrics.csv.gz" in names, run
    for run in ("resnet18_baseline", "resnet18_regularized", "resnet18_aligned"):
        assert f"{run}:metrics.csv.gz" in names
    for run in ("mobilenet_v2_baseline", "mobilenet_v2_regularized", "mobilenet_v2_aligned"):
        assert f"{run}:metrics_scorecam.csv.gz" in names  # Score-CAM on a 2,000 subset
    sweep_train = [j for j in run_all.JOBS if j.name.startswith("sweep/") and ":" not in j.name]
    for j in sweep_train:  # one schedule for all: the finetune preset from the baseline
        assert j.args[:2] == ["train", "--preset"] and j.args[2] == "finetune"
        assert j.args[j.args.index("--init") + 1].endswith("_baseline/final.pt")
    for arch, runs in sweep.REPLICATES.items():  # the same schedule again, another seed
        for (g, lam), seeds in runs.items():
            for seed in seeds:
                run = str(sweep.replicate_dir("", arch, g, lam, seed))
                job = next(j for j in run_all.JOBS if j.name == run)
                twin = next(j for j in sweep_train if j.name == str(sweep.run_dir("", arch, g,
                                                                                  lam)))
                assert job.args[job.args.index("--seed") + 1] == str(seed)
                assert job.args[:job.args.index("--out")] == \
                    twin.args[:twin.args.index("--out")] + ["--seed", str(seed)]
                assert f"{run}:metrics.csv.gz" in names


def test_running_jobs_are_found_and_adopted_not_started_twice(run_all, tmp_path):
    job = run_all.Job("sweep/x/logit_lam9", ["train", "--out", "reference/sweep/x/logit_lam9"],
                      makes=("sweep/x/logit_lam9/final.pt",))
    other = run_all.Job("y", ["evaluate", "y", "--out", "reference/y/metrics.csv.gz"],
                        makes=("y/metrics.csv.gz",))
    # a stand-in process with the job's command line (and "interpretable" in it)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                             "interpretable", *job.args])
    try:
        deadline = time.time() + 10
        while time.time() < deadline and not run_all._running([job, other]):
            time.sleep(0.05)
        assert run_all._running([job, other]) == {job.name: proc.pid}
        sched = run_all.Scheduler([job, other], sys.executable)
        assert sched.adopted == {0: (proc.pid, job)} and job.name in sched.taken
        picked = sched._next()
        assert picked is other  # never the running one
    finally:
        proc.kill()
        proc.wait()
    assert not run_all._alive(proc.pid)
    assert run_all._running([job]) == {}


def test_conditional_and_aligned_jobs_wait_for_the_sweep(run_all, monkeypatch):
    c = run_all.ConditionalJob("z", ["train", "--out", "reference/z"], makes=("z/final.pt",),
                               wanted=lambda: None)
    assert not c.done() and not c.ready()       # undecided: waits
    c.wanted = lambda: False
    assert c.done()                             # not needed: counts as done
    c.wanted = lambda: True
    assert not c.done() and c.ready()
    monkeypatch.setattr(jobs, "_sweep_done", lambda arch, curves: False)
    aligned = run_all._aligned("resnet18")
    assert not aligned.ready()
    with pytest.raises(AssertionError, match="not finished"):
        aligned.command()


def test_status_names_each_state_with_progress_and_pid(run_all, tmp_path, monkeypatch):
    _here(monkeypatch, tmp_path)
    run = tmp_path / "sweep" / "x" / "logit_lam9"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"epochs": 2}')
    (run / "log.jsonl").write_text('{"epoch": 1}\n')
    (run / "last.pt").write_bytes(b"")
    started = run_all.Job("sweep/x/logit_lam9", ["train", "--out", "reference/sweep/x/logit_lam9"],
                          makes=("sweep/x/logit_lam9/final.pt",))
    waiting = run_all.Job("w", ["evaluate", "--out", "reference/w/m.csv.gz"], needs=("nope",),
                          makes=("w/m.csv.gz",))
    todo = run_all.Job("t", ["evaluate", "--out", "reference/t/m.csv.gz"], makes=("t/m.csv.gz",))
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "m.csv.gz").write_bytes(b"")
    done = run_all.Job("f", ["evaluate", "--out", "reference/f/m.csv.gz"], makes=("f/m.csv.gz",))
    skipped = run_all.ConditionalJob("s", ["evaluate", "--out", "reference/s/m.csv.gz"],
                                     makes=("s/m.csv.gz",), wanted=lambda: False)
    jobs = [started, waiting, todo, done, skipped]
    assert run_all.status(jobs) == [
        "in progress  sweep/x/logit_lam9  (epoch 1 of 2)", "waiting      w", "to do        t",
        "finished     f", "not needed   s"]
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                             "interpretable", *todo.args])
    try:
        deadline = time.time() + 10
        while time.time() < deadline and not run_all._running([todo]):
            time.sleep(0.05)
        assert run_all.status([todo]) == [f"running      t  (pid {proc.pid})"]
    finally:
        proc.kill()
        proc.wait()


def test_adopted_job_that_finishes_loses_its_last_checkpoint(run_all, tmp_path, monkeypatch):
    _here(monkeypatch, tmp_path)
    real_sleep = time.sleep
    monkeypatch.setattr(scheduler.time, "sleep", lambda s: real_sleep(0.05))
    run = tmp_path / "r"
    run.mkdir()
    job = run_all.Job("r", ["train", "--out", "reference/r"], makes=("r/final.pt",))
    (run / "last.pt").write_bytes(b"")
    # the stand-in "training" writes final.pt and exits, as a finished run does
    code = f"import time, pathlib; time.sleep(0.5); pathlib.Path({str(run / 'final.pt')!r}).touch()"
    proc = subprocess.Popen([sys.executable, "-c", code, "interpretable", *job.args])
    try:
        deadline = time.time() + 10
        while time.time() < deadline and not run_all._running([job]):
            real_sleep(0.05)
        sched = run_all.Scheduler([job], sys.executable)
        assert sched.adopted == {0: (proc.pid, job)}
        sched.lane(0)  # waits for the adopted process, then finds nothing left to do
    finally:
        proc.kill()
        proc.wait()
    assert (run / "final.pt").is_file() and not (run / "last.pt").exists()


def test_convention_sensitivity_jobs_use_the_authors_conventions(run_all):
    jobs = {j.name: j for j in run_all.JOBS}
    for run in ("resnet18_baseline", "resnet18_regularized", "mobilenet_v2_baseline",
                "mobilenet_v2_regularized"):
        args = jobs[f"{run}:metrics_authors.csv.gz"].args
        assert args[args.index("--conventions") + 1] == "authors" and "2000" in args
    star = [j for n, j in jobs.items() if n.startswith("scratch/resnet18/lam")
            and n.endswith(":metrics_authors.csv.gz")]
    assert len(star) == 3
    from interpretable.study import scratch

    choice = scratch.mobilenet_lambda(run_all.HERE)  # None until the rule decides
    for j in star:
        lam = float(j.name.split("/lam")[1].split(":")[0])
        picked = None if choice is None else choice[0] == lam
        assert j.needed() is (picked is not False)  # only lambda*'s job, once it is known
        inputs = all((run_all.HERE / n).is_file() for n in j.needs)
        assert j.ready() is (bool(picked) and inputs)
