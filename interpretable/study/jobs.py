"""Every long run of the book, in the order the lanes take them: the job list of
``bash reference/run_all.sh`` (the scheduler is :mod:`interpretable.study.scheduler`).

A job is one ``python -m interpretable ...`` command: a training run (``train``, resumable
from ``last.pt``) or the per-image metrics of a finished run (``evaluate``, resumable by
batch). It is finished when the files it ``makes`` exist, and ready when the files it
``needs`` do; conditional jobs depend on a rule of the study (:mod:`.sweep`,
:mod:`.scratch`) that finished runs decide.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..roar.jobs import roar_jobs
from . import reference, scratch, sweep

__all__ = ["Job", "ConditionalJob", "AlignedJob", "JOBS", "HERE"]

#: The reference folder the jobs read and write (``$INTERPRETABLE_REFERENCE`` or the
#: checkout's ``reference/``); commands run from its parent with paths like reference/...
HERE = Path(os.environ.get("INTERPRETABLE_REFERENCE") or reference.CHECKOUT).resolve()


@dataclass
class Job:
    name: str                    # unique; for training jobs the run folder below reference/
    args: list[str]              # after ``python -m interpretable``
    needs: tuple[str, ...] = ()  # files (relative to reference/) that must exist first
    makes: tuple[str, ...] = ()  # files (relative to reference/) that exist once it is done

    @property
    def out(self) -> Path:
        return HERE / self.name

    def needed(self) -> bool:
        """False for a job its rule skips (see ConditionalJob)."""
        return True

    def done(self) -> bool:
        return all((HERE / n).is_file() for n in self.makes)

    def command(self) -> list[str]:
        """The arguments after ``python -m interpretable``."""
        return self.args

    def ready(self) -> bool:
        return all((HERE / n).is_file() for n in self.needs)

    def started(self) -> bool:
        """Partly done: a training checkpoint or a partial result file exists."""
        first = self.makes[0]
        return ((HERE / first).with_name("last.pt").is_file() if first.endswith("final.pt")
                else (HERE / first).is_file())


    @property
    def target(self) -> str:
        """The ``--out`` of the command: what identifies a running job in /proc."""
        return self.args[self.args.index("--out") + 1]


def _sweep_done(arch: str, curves: tuple[str, ...]) -> bool:
    return all((sweep.run_dir(HERE, arch, g, lam) / "summary.json").is_file()
               for g, lam in sweep.planned(arch, curves))


def _mobilenet_curves() -> tuple[str, ...] | None:
    """Rule 3 of interpretable.study.sweep: MobileNet-V2's loss curve only if ResNet-18 picks loss
    (None until ResNet-18's sweep is complete)."""
    if not _sweep_done("resnet18", ("logit", "loss")):
        return None
    pick = sweep.choose_lambda(sweep.summaries(HERE, "resnet18"))["gradient_of"]
    return ("logit", "loss") if pick == "loss" else ("logit",)


def _curves(arch: str) -> tuple[str, ...] | None:
    return ("logit", "loss") if arch == "resnet18" else _mobilenet_curves()


# lambda ramps up over the cpu preset's 3 learning-rate warm-up epochs. Pilot (ResNet-18 from
# scratch on a 5,000-image subset, 6 epochs): without a ramp lambda 0.3 and 0.5 sent the test
# cos(g, g~) to 0.74-0.95 within two epochs with top-1 stuck at 2-8% (lambda 0: cos 0.04-0.09,
# top-1 6-16%); with the 3-epoch ramp lambda 0.3 still reached cos 0.72 but kept more accuracy
# (13.0% against 15.7% at epoch 6). reference/README.md has the table.
ALIGNED_LAM_WARMUP = 3.0


@dataclass
class AlignedJob(Job):
    """From scratch with the ``cpu`` preset at the architecture's lambda* and better
    gradient_of, both read from the finished sweep when the job starts."""

    arch: str = ""

    def _choice(self) -> dict | None:
        curves = _curves(self.arch)
        if curves is None or not _sweep_done(self.arch, curves):
            return None
        c = sweep.choose_lambda(sweep.summaries(HERE, self.arch))
        return c if c["lam"] is not None else None

    def ready(self) -> bool:
        return self._choice() is not None

    def command(self) -> list[str]:
        c = self._choice()
        assert c is not None, f"{self.name}: the sweep of {self.arch} is not finished"
        return ["train", "--preset", "cpu", "--arch", self.arch, "--lam", f"{c['lam']:g}",
                "--gradient-of", c["gradient_of"], "--lam-warmup", f"{ALIGNED_LAM_WARMUP:g}",
                *self.args]


@dataclass
class ConditionalJob(Job):
    """A job needed only when ``wanted()`` says so (MobileNet-V2's loss curve, rule 3)."""

    wanted: Callable[[], bool | None] = lambda: True

    def needed(self) -> bool:
        return self.wanted() is not False

    def done(self) -> bool:
        return not self.needed() or super().done()

    def ready(self) -> bool:
        return bool(self.wanted()) and super().ready()


def _aligned(arch: str) -> AlignedJob:
    name = f"{arch}_aligned"
    return AlignedJob(name, ["--out", f"reference/{name}", "--no-progress"], (),
                      (f"{name}/final.pt", f"{name}/summary.json"), arch=arch)


def _train(name: str, *args: str, needs: tuple[str, ...] = ()) -> Job:
    return Job(name, ["train", *args, "--out", f"reference/{name}", "--no-progress"], needs,
               (f"{name}/final.pt", f"{name}/summary.json"))


def _evaluate(run: str, methods: str, images: str = "all", out: str = "metrics.csv.gz",
              conventions: str = "ours") -> Job:
    """Per-image CAM metrics of a finished run (``python -m interpretable evaluate``), with
    the insertion/deletion ``conventions`` (METHODS.md section 5)."""
    path = f"{run}/{out}"
    extra = [] if conventions == "ours" else ["--conventions", conventions]
    return Job(f"{run}:{out}", ["evaluate", f"reference/{run}", "--methods", methods,
                                "--images", images, "--seed", "0", *extra,
                                "--out", f"reference/{path}", "--no-progress"],
               (f"{run}/final.pt",), (path, f"{path}.provenance.json"))


# The four reference runs (cpu preset), all finished.
REFERENCE = [
    _train("resnet18_baseline", "--preset", "cpu", "--arch", "resnet18", "--lam", "0"),
    _train("mobilenet_v2_regularized", "--preset", "cpu", "--arch", "mobilenet_v2",
           "--lam", "7.5e-3"),
    _train("resnet18_regularized", "--preset", "cpu", "--arch", "resnet18", "--lam", "7.5e-3"),
    _train("mobilenet_v2_baseline", "--preset", "cpu", "--arch", "mobilenet_v2", "--lam", "0"),
]

# Order within a sweep: the control, then lambdas spread over the range so the curve's shape
# is known early, then the rest (the rule in interpretable.study.sweep does not depend on order;
# after lambda = 1 had cost 4.4 points, the candidates below it were moved forward).
_ORDER = {"resnet18": [("logit", 0.0), ("logit", 1.0), ("logit", 0.3), ("logit", 2.0),
                       ("logit", 0.5), ("logit", 0.1), ("logit", 7.5e-3), ("logit", 1.5),
                       ("logit", 3.0), ("logit", 5.0), ("loss", 1.0), ("loss", 3.0),
                       ("loss", 7.5e-3), ("loss", 2.0), ("loss", 5.0)],
          "mobilenet_v2": [("logit", 0.0), ("logit", 1.0), ("logit", 0.3), ("logit", 2.0),
                           ("logit", 0.5), ("logit", 0.1), ("logit", 3.0), ("logit", 1.5),
                           ("logit", 7.5e-3)]}


def _sweep_jobs(arch: str, curve: str | None = None) -> list[Job]:
    base = f"{sweep.BASELINES[arch]}/final.pt"
    jobs = []
    assert sorted(_ORDER[arch]) == sorted(sweep.planned(arch, ("logit", "loss")
                                                         if arch == "resnet18" else ("logit",)))
    order = _ORDER[arch] if curve is None else [(curve, lam) for lam in sweep.GRID[arch][curve]]
    for g, lam in order:
        name = str(sweep.run_dir("", arch, g, lam))
        jobs.append(_train(name, "--preset", "finetune", "--arch", arch, "--lam", f"{lam:g}",
                           "--gradient-of", g, "--init", f"reference/{base}", needs=(base,)))
    return jobs


CAMS = "gradcam,gradcam++,scorecam,fastcam"
NO_SCORECAM = "gradcam,gradcam++,fastcam"
# Full-test-set metrics of the reference runs. MobileNet-V2's Score-CAM (1,280 masked
# forwards per image, ~8 h for 10,000 images here) runs on a seeded 2,000-image subset.
METRICS = [
    _evaluate("resnet18_baseline", CAMS), _evaluate("resnet18_regularized", CAMS),
    _evaluate("mobilenet_v2_baseline", NO_SCORECAM),
    _evaluate("mobilenet_v2_regularized", NO_SCORECAM),
    _evaluate("mobilenet_v2_baseline", "scorecam", "2000", "metrics_scorecam.csv.gz"),
    _evaluate("mobilenet_v2_regularized", "scorecam", "2000", "metrics_scorecam.csv.gz"),
]
# The sweep runs: the same seeded 2,000 test images for every run, no Score-CAM. First the
# runs chapter 6 compares (the control, lambda* = 0.5 as the logit curve gave it, the paper's
# lambda), then the rest in sweep order; the order changes when results arrive, not what
# they are.
_FIRST = {"resnet18": ["sweep/resnet18/logit_lam0", "sweep/resnet18/logit_lam0.5",
                       "sweep/resnet18/logit_lam0.0075"],
          "mobilenet_v2": ["sweep/mobilenet_v2/logit_lam0", "sweep/mobilenet_v2/logit_lam0.5",
                           "sweep/mobilenet_v2/logit_lam0.0075"]}


def _sweep_metrics(arch: str) -> list[Job]:
    names = [j.name for j in _sweep_jobs(arch)]
    first = [n for n in _FIRST.get(arch, []) if n in names]
    return [_evaluate(n, NO_SCORECAM, "2000") for n in first + [n for n in names
                                                                if n not in first]]


SWEEP_METRICS = {arch: _sweep_metrics(arch) for arch in ("resnet18", "mobilenet_v2")}

# MobileNet-V2's loss curve, run only if ResNet-18's sweep picks the loss gradient (rule 3).
def _mobilenet_loss_wanted() -> bool | None:
    curves = _mobilenet_curves()
    return None if curves is None else "loss" in curves


def _conditional(job: Job) -> ConditionalJob:
    return ConditionalJob(job.name, job.args, job.needs, job.makes,
                          wanted=_mobilenet_loss_wanted)


MOBILENET_LOSS = [_conditional(j) for j in _sweep_jobs("mobilenet_v2", "loss")]


def _replicate_jobs() -> list[Job]:
    """Sweep runs trained again with another seed (sweep.REPLICATES), then their metrics on
    the sweep's 2,000 images."""
    train, metrics = [], []
    for arch, runs in sweep.REPLICATES.items():
        base = f"{sweep.BASELINES[arch]}/final.pt"
        for (g, lam), seeds in runs.items():
            for seed in seeds:
                name = str(sweep.replicate_dir("", arch, g, lam, seed))
                train.append(_train(name, "--preset", "finetune", "--arch", arch, "--lam",
                                    f"{lam:g}", "--gradient-of", g, "--init",
                                    f"reference/{base}", "--seed", str(seed), needs=(base,)))
                metrics.append(_evaluate(name, NO_SCORECAM, "2000"))
    return train + metrics


REPLICATE_JOBS = _replicate_jobs()
ALIGNED = [_aligned("resnet18"), _aligned("mobilenet_v2")]
ALIGNED_METRICS = [_evaluate("resnet18_aligned", CAMS),
                   _evaluate("mobilenet_v2_aligned", NO_SCORECAM),
                   _evaluate("mobilenet_v2_aligned", "scorecam", "2000",
                             "metrics_scorecam.csv.gz")]


def _measure(run: str) -> Job:
    """Per-image cos(g, g~) of both gradients on the first 2,000 test images of a finished
    run (``python -m interpretable measure``; interpretable.study.alignment)."""
    return Job(f"{run}:alignment.json",
               ["measure", f"reference/{run}", "--out", f"reference/{run}/alignment.json"],
               (f"{run}/final.pt",), (f"{run}/alignment.json",))


def _scratch_train(arch: str, lam: float, seed: int = 0) -> Job:
    name = str(scratch.run_dir("", arch, lam, seed))
    return _train(name, *scratch.train_args(arch, lam, seed)[1:])


def _scratch_metrics(arch: str, lam: float, seed: int = 0) -> list[Job]:
    """Grad-CAM, Grad-CAM++ and FastCAM on all 10,000 test images; Score-CAM on the seeded
    2,000-image subset."""
    run = str(scratch.run_dir("", arch, lam, seed))
    return [_evaluate(run, NO_SCORECAM), _evaluate(run, "scorecam", "2000",
                                                   "metrics_scorecam.csv.gz")]


def _mobilenet_at(lam: float) -> Callable[[], bool | None]:
    """Whether rule 2 of interpretable.study.scratch trains MobileNet-V2 at ``lam`` (None
    until ResNet-18's from-scratch runs are finished)."""
    def wanted() -> bool | None:
        choice = scratch.mobilenet_lambda(HERE)
        return None if choice is None else choice[1] == lam
    return wanted


def _scratch_jobs() -> list[Job]:
    """The from-scratch study (interpretable.study.scratch): ResNet-18 at lambda 0.1, 0.2, a
    seed-1 baseline, 0.05; MobileNet-V2 at the lambda the rule gives (one conditional job per
    candidate); the metrics of the ResNet-18 runs; MobileNet-V2's seed-1 baseline; its metrics."""
    r18 = [(0.1, 0), (0.2, 0), (0.0, 1), (0.05, 0)]
    mnv2 = [ConditionalJob(j.name, j.args, j.needs, j.makes, wanted=_mobilenet_at(lam))
            for lam in scratch.LAMBDAS for j in [_scratch_train("mobilenet_v2", lam)]]
    mnv2_metrics = [ConditionalJob(j.name, j.args, j.needs, j.makes, wanted=_mobilenet_at(lam))
                    for lam in scratch.LAMBDAS for j in _scratch_metrics("mobilenet_v2", lam)]
    # per-image alignment (minutes each) right after each run, for the chapter's checks
    measure = [_measure(str(scratch.run_dir("", "resnet18", lam, seed))) for lam, seed in r18]
    measure += [ConditionalJob(j.name, j.args, j.needs, j.makes, wanted=_mobilenet_at(lam))
                for lam in scratch.LAMBDAS
                for j in [_measure(str(scratch.run_dir("", "mobilenet_v2", lam)))]]
    mnv2_seed1 = str(scratch.run_dir("", "mobilenet_v2", 0.0, 1))
    train = [_scratch_train("resnet18", lam, seed) for lam, seed in r18]
    # per run: all CAMs but Score-CAM on 10,000 images, then Score-CAM on 2,000
    metrics = [m for lam, seed in r18 for m in _scratch_metrics("resnet18", lam, seed)]
    # Reordered once rule 1 had picked lambda* = 0.1 (lambda 0.05 had run one epoch): the CAM
    # metrics of lambda* and of the seed-1 baseline (the question chapter 6 answers, and its
    # yardstick) before the runs that cannot change the answer.
    first = [metrics[0], metrics[4], metrics[1], metrics[5]]  # lambda 0.1, seed 1
    return (train[:3] + first + train[3:] + mnv2 + measure
            + [m for m in metrics if m not in first]
            + [_scratch_train("mobilenet_v2", 0.0, 1), _measure(mnv2_seed1)] + mnv2_metrics
            + _scratch_metrics("mobilenet_v2", 0.0, 1))


SCRATCH = _scratch_jobs()


def _star_at(lam: float) -> Callable[[], bool | None]:
    """Whether rule 1 of interpretable.study.scratch picks ``lam`` for ResNet-18 (None until
    its from-scratch runs are finished)."""
    def wanted() -> bool | None:
        choice = scratch.mobilenet_lambda(HERE)
        return None if choice is None else choice[0] == lam
    return wanted


def _authors_jobs() -> list[Job]:
    """The convention sensitivity (METHODS.md section 5, "Conventions as options"): the
    paper-lambda comparison of both architectures and ResNet-18's from-scratch lambda* again,
    on the seeded 2,000-image subset, with the paper authors' insertion/deletion conventions
    (Grad-CAM, Grad-CAM++, FastCAM; Score-CAM's maps cost hours and do not depend on them)."""
    paper = [_evaluate(run, NO_SCORECAM, "2000", "metrics_authors.csv.gz", "authors")
             for run in ("resnet18_baseline", "resnet18_regularized", "mobilenet_v2_baseline",
                         "mobilenet_v2_regularized")]
    star = [ConditionalJob(j.name, j.args, j.needs, j.makes, wanted=_star_at(lam))
            for lam in scratch.LAMBDAS
            for j in [_evaluate(str(scratch.run_dir("", "resnet18", lam)), NO_SCORECAM, "2000",
                                "metrics_authors.csv.gz", "authors")]]
    return paper + star


AUTHORS = _authors_jobs()


# The reference runs' alignment as the from-scratch runs report it (their summaries hold the
# loss gradient on 1,000 images, or the logit gradient on 1,000): minutes, not hours.
MEASURE = [_measure(r) for r in reference.RUNS]

# lambda*'s Insertion/Deletion under the authors' conventions (minutes: 4 curve steps) right
# after the first metrics of the from-scratch study
_AFTER_FIRST = 1 + max(i for i, j in enumerate(SCRATCH)
                       if j.name == f"{scratch.run_dir('', 'resnet18', 0.0, 1)}:metrics.csv.gz")

# ResNet-18's full-test-set metrics first: the book's metric chapter waits for them. Each
# aligned run starts as soon as its sweep is complete (a lane takes the first ready job).
# The aligned ResNet-18's metrics complete ResNet-18's comparisons in chapter 6; then
# MobileNet-V2's sweep and aligned run, the longest chain left (about 7 lane-hours), before
# the remaining metric jobs, which nothing waits for. Of those, first the files that give
# chapter 6 a MobileNet-V2 comparison each (baseline and paper lambda on 10,000 images; the
# sweep's control, lambda* and paper lambda; the aligned run), then the slow Score-CAM
# subsets, then the rest of the sweep. Then the replicates with another seed (no issue
# waits for them). Then the from-scratch study (~18 lane-hours), after the paper-lambda runs'
# metrics under the authors' conventions (short: 4 curve steps); its lambda* under them last.
_N_FIRST = len(_FIRST["mobilenet_v2"])
JOBS: list[Job] = (REFERENCE + METRICS[:2] + _sweep_jobs("resnet18") + ALIGNED[:1]
                   + ALIGNED_METRICS[:1] + _sweep_jobs("mobilenet_v2") + MOBILENET_LOSS
                   + ALIGNED[1:] + SWEEP_METRICS["resnet18"] + METRICS[2:4]
                   + SWEEP_METRICS["mobilenet_v2"][:_N_FIRST] + ALIGNED_METRICS[1:2]
                   + METRICS[4:] + ALIGNED_METRICS[2:] + SWEEP_METRICS["mobilenet_v2"][_N_FIRST:]
                   + [_conditional(_evaluate(j.name, NO_SCORECAM, "2000")) for j in MOBILENET_LOSS]
                   + REPLICATE_JOBS + AUTHORS[:4] + MEASURE + SCRATCH[:_AFTER_FIRST]
                   + AUTHORS[4:] + SCRATCH[_AFTER_FIRST:])
# ROAR / KAR (METHODS.md section 5; interpretable.roar): its pilot, rank files and grid, after
# the from-scratch study (FastCAM judged by its own paper's measure; ~10 lane-hours)
JOBS += roar_jobs(ConditionalJob, lambda: HERE)
