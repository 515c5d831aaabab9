"""The ROAR / KAR jobs of the long-run scheduler (METHODS.md section 5).

:func:`roar_jobs` builds them as instances of the scheduler's job class, so the job list adds
them with two lines at its end (``interpretable/study/jobs.py``, formerly
``reference/run_all.py``)::

    from interpretable.roar.jobs import roar_jobs  # noqa: E402  (METHODS.md section 5)
    JOBS += roar_jobs(ConditionalJob, lambda: HERE)

In run order: the pilot (the unmodified retrain for 4, 6 and 8 epochs, seed 0; then seeds 1
and 2 at the epoch count the pilot rule of :mod:`interpretable.roar.plan` chooses: one
conditional job per candidate count), the four rank files, then ``unmodified`` (copied from the
seed-0 pilot run at the chosen count), the 24 cells of :func:`interpretable.roar.plan.grid`
and last one cell trained again from its record (``roar reproduce``, :data:`REPRODUCED`).
The cells wait (``ready()``) until the pilot rule has chosen and their rank file exists; their
``--epochs`` is the choice, added when the job starts.

How they run: the scheduler runs ``python -m interpretable <command()>`` and ``command()`` is
``["roar", *args]``, so the jobs need ``python -m interpretable roar ...`` (interpretable.cli
wired to :func:`interpretable.roar.add_arguments` / :func:`interpretable.roar.run`); ``args``
is exactly what follows ``python -m interpretable.roar``, the equivalent command today. With
``interpretable`` as an argument of its own, a running job is also found in /proc by the
scheduler (``--out`` is each job's unique target).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._common import METHODS
from .plan import (
    PILOT_EPOCHS,
    PILOT_SEEDS,
    cell_dir,
    chosen_epochs,
    grid,
    pilot_dir,
    pilot_spread,
)

__all__ = ["roar_jobs"]

#: Where the study lives, relative to the reference folder of the scheduler.
FOLDER = "roar"
#: The cell trained a second time from its record (``roar reproduce``): FastCAM, ROAR, t 0.5.
REPRODUCED = ("roar", "fastcam", 0.5)


def roar_jobs(base: type, here: Callable[[], Path]) -> list[Any]:
    """The ROAR / KAR jobs, in run order, as dataclass instances of a subclass of ``base``.

    Args:
        base: the scheduler's ``ConditionalJob`` (fields ``name, args, needs, makes, wanted``;
            paths in ``needs`` / ``makes`` relative to the reference folder).
        here: returns the reference folder (read at every call, so it can be changed).
    """

    def epochs() -> int | None:
        return chosen_epochs(here() / FOLDER)

    @dataclass
    class RoarJob(base):
        """A ``python -m interpretable roar <args>`` job; ``wanted`` as for ConditionalJob
        (None: undecided, it waits); ``pilot_epochs``: append the pilot's ``--epochs``."""

        pilot_epochs: bool = False

        def command(self) -> list[str]:
            extra: list[str] = []
            if self.pilot_epochs:
                e = epochs()
                assert e is not None, f"{self.name}: the ROAR pilot has not chosen the epochs"
                extra = ["--epochs", str(e)]
            return ["roar", *self.args, *extra]

        def started(self) -> bool:
            return (here() / self.name / "last.pt").is_file()

    def decided() -> bool | None:
        return True if epochs() is not None else None

    def at(count: int) -> Callable[[], bool | None]:
        def wanted() -> bool | None:
            e = epochs()
            return None if e is None else e == count
        return wanted

    def cell(name: str, args: list[str], needs: tuple[str, ...] = (),
             wanted: Callable[[], bool | None] = lambda: True, pilot: bool = False) -> Any:
        return RoarJob(name, ["cell", *args, "--out", f"reference/{name}", "--no-progress"],
                       needs, (f"{name}/summary.json", f"{name}/provenance.json"),
                       wanted=wanted, pilot_epochs=pilot)

    def unmodified(e: int, seed: int) -> list[str]:
        return ["--mode", "unmodified", "--epochs", str(e), "--seed", str(seed)]

    pilot = [cell(str(pilot_dir(FOLDER, e, 0)), unmodified(e, 0)) for e in PILOT_EPOCHS]
    seeds = [cell(str(pilot_dir(FOLDER, e, s)), unmodified(e, s), wanted=at(e))
             for e in PILOT_EPOCHS for s in PILOT_SEEDS]
    ranks = []
    for method in METHODS:
        files = (f"{FOLDER}/cache/{method}.npy", f"{FOLDER}/cache/{method}.json")
        ranks.append(RoarJob(files[0], ["ranks", "--method", method, "--out",
                                        f"reference/{files[0]}", "--no-progress"],
                             () if method == "random" else ("resnet18_baseline/final.pt",),
                             files))
    cells = [cell(f"{FOLDER}/unmodified", ["--mode", "unmodified"], wanted=decided, pilot=True)]
    for mode, method, t in grid():
        cells.append(cell(str(cell_dir(FOLDER, mode, method, t)),
                          ["--mode", mode, "--method", method, "--fraction", f"{t:g}"],
                          needs=(f"{FOLDER}/cache/{method}.npy", f"{FOLDER}/cache/{method}.json"),
                          wanted=decided, pilot=True))
    def spread_known() -> bool | None:
        try:
            pilot_spread(here() / FOLDER)
        except ValueError:
            return None
        return True

    cell_name = str(cell_dir(FOLDER, *REPRODUCED))
    again = f"{FOLDER}/reproduce/{Path(cell_name).name}"
    reproduce = RoarJob(again, ["reproduce", f"reference/{cell_name}", "--out",
                                f"reference/{again}", "--no-progress"],
                        (f"{cell_name}/provenance.json",), (f"{again}/reproduction.json",),
                        wanted=spread_known)
    return pilot + seeds + ranks + cells + [reproduce]
