"""The scheduler of the long runs: two lanes of one thread each (``bash
reference/run_all.sh``; also ``pause``, ``resume``, ``status``).

A lane takes the first job of :data:`interpretable.study.jobs.JOBS` that is neither finished
nor taken and whose inputs exist (a sweep waits for its baseline), runs it as ``python -m
interpretable ...`` with ``OMP_NUM_THREADS=1`` and its output in ``reference/logs/<job>.out``
(not committed), and repeats. Each job resumes by itself (training from ``last.pt``), so a
killed scheduler loses at most an epoch per lane. A finished training job leaves ``final.pt``
and loses ``last.pt``. The child process ids are in ``reference/logs/lane<N>.pid`` (for
SIGSTOP / SIGCONT). Jobs left running by an earlier scheduler are adopted, never started twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from .jobs import HERE, JOBS, Job

__all__ = ["Scheduler", "status", "main", "LOGS", "LANES"]

ROOT = HERE.parent
LOGS = HERE / "logs"
LANES = int(os.environ.get("LANES", "2"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    state = Path(f"/proc/{pid}/stat")
    return not state.exists() or state.read_text().split()[2] != "Z"


def _running(jobs: list[Job]) -> dict[str, int]:
    """``{job name: pid}`` of the jobs some live process is running now (found by command
    line in /proc): those an earlier run_all left running when it was killed, or another
    caller's. They are never started a second time."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if "interpretable" not in args:
            continue
        outs = {args[i + 1] for i, a in enumerate(args[:-1]) if a == "--out"}
        job = next((j for j in jobs if j.target in outs), None)
        if job is not None and _alive(int(proc.name)):
            found[job.name] = int(proc.name)
    return found


class Scheduler:
    def __init__(self, jobs: list[Job], python: str) -> None:
        self.jobs, self.python = jobs, python
        self.taken: set[str] = set()
        self.failed: set[str] = set()
        self.lock = threading.Lock()
        # jobs left running by an earlier run_all: lane i waits for the i-th before its own
        running = _running(jobs)
        by_name = {j.name: j for j in jobs}
        self.adopted = {i: (pid, by_name[name]) for i, (name, pid) in enumerate(running.items())}
        self.taken.update(running)

    def _next(self) -> Job | None | bool:
        """A job to run; None when nothing is left; False when the rest wait for inputs."""
        with self.lock:
            waiting = False
            for job in self.jobs:
                if job.name in self.taken or job.name in self.failed or job.done():
                    continue
                if job.name in _running([job]):  # started by someone else meanwhile
                    continue
                if not job.ready():
                    waiting = True
                    continue
                self.taken.add(job.name)
                return job
            return False if waiting and any(j.name in self.taken for j in self.jobs) else None

    def lane(self, index: int) -> None:
        if index in self.adopted:  # wait for the job an earlier run_all left running here
            pid, job = self.adopted[index]
            print(f"[lane {index}] {time.strftime('%H:%M')} adopted {job.name} (pid {pid})",
                  flush=True)
            while _alive(pid):
                time.sleep(20)
            with self.lock:
                self.taken.discard(job.name)
                if not job.done():
                    print(f"[lane {index}] adopted {job.name} ended unfinished; it is "
                          "resumed later", flush=True)
                else:
                    self._finished(index, job)
        while True:
            job = self._next()
            if job is None:
                return
            if job is False:   # inputs are being made by the other lane
                time.sleep(30)
                continue
            self._run(index, job)

    def _run(self, index: int, job: Job) -> None:
        log = LOGS / (job.name.replace("/", "__") + ".out")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        t0 = time.time()
        print(f"[lane {index}] {time.strftime('%H:%M')} start {job.name}", flush=True)
        with open(log, "a") as f:
            proc = subprocess.Popen([self.python, "-m", "interpretable", *job.command()], cwd=ROOT,
                                    stdout=f, stderr=subprocess.STDOUT, env=env)
            (LOGS / f"lane{index}.pid").write_text(f"{proc.pid}\n")
            rc = proc.wait()
        (LOGS / f"lane{index}.pid").unlink(missing_ok=True)
        minutes = (time.time() - t0) / 60
        with self.lock:
            self.taken.discard(job.name)
            if rc != 0 or not job.done():
                self.failed.add(job.name)
                print(f"[lane {index}] FAILED {job.name} (exit {rc}, {minutes:.0f} min); "
                      f"see {log}", flush=True)
                return
        self._finished(index, job, f" ({minutes:.0f} min)")

    def _finished(self, index: int, job: Job, took: str = "") -> None:
        if job.makes[0].endswith("final.pt"):  # a finished run needs no optimizer state
            (HERE / job.makes[0]).with_name("last.pt").unlink(missing_ok=True)
        print(f"[lane {index}] {time.strftime('%H:%M')} done {job.name}{took}", flush=True)


def _progress(job: Job) -> str:
    """Epochs logged of a training job ("epoch 3 of 20"), "" for other jobs."""
    log, config = job.out / "log.jsonl", job.out / "config.json"
    if not job.makes[0].endswith("final.pt") or not log.is_file():
        return ""
    epochs = sum(1 for line in log.read_text().splitlines() if line.strip())
    try:
        total = json.loads(config.read_text())["epochs"]
    except (OSError, ValueError, KeyError):
        return f"epoch {epochs}"
    return f"epoch {epochs} of {total}"


def status(jobs: list[Job]) -> list[str]:
    """One line per job: finished, not needed (a conditional job its rule skips), running (with
    its pid), in progress (started, not running now: resumed by the next run), waiting (for
    inputs another job makes) or to do."""
    running = _running(jobs)
    lines = []
    for j in jobs:
        if not j.needed():
            state = "not needed"
        elif j.done():
            state = "finished"
        elif j.name in running:
            state = "running"
        elif j.started():
            state = "in progress"
        else:
            state = "to do" if j.ready() else "waiting"
        extra = [x for x in (_progress(j) if state not in ("finished", "not needed") else "",
                             f"pid {running[j.name]}" if j.name in running else "") if x]
        lines.append(f"{state:12} {j.name}" + (f"  ({', '.join(extra)})" if extra else ""))
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["status"]:
        print("\n".join(status(JOBS)))
        return 0
    if argv:
        print("usage: python -m interpretable.study.scheduler [status]", file=sys.stderr)
        return 2
    LOGS.mkdir(exist_ok=True)
    python = os.environ.get("PY", sys.executable)
    with open(LOGS / "run_all.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("run_all is already running (reference/logs/run_all.lock)", file=sys.stderr)
            return 1
        for job in JOBS:  # finished runs need no optimizer state
            if job.makes[0].endswith("final.pt") and job.done():
                (job.out / "last.pt").unlink(missing_ok=True)
        left = [j.name for j in JOBS if not j.done()]
        print(f"{len(JOBS) - len(left)} of {len(JOBS)} jobs finished; {LANES} lanes for the "
              f"other {len(left)}", flush=True)
        sched = Scheduler(JOBS, python)
        lanes = [threading.Thread(target=sched.lane, args=(i,)) for i in range(LANES)]
        for t in lanes:
            t.start()
        for t in lanes:
            t.join()
        if sched.failed:
            print(f"failed: {sorted(sched.failed)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
