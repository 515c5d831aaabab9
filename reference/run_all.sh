#!/usr/bin/env bash
# Every long run of the book (reference trainings, the lambda sweep, ...) in two lanes of one
# thread each. The job list is interpretable/study/jobs.py, the scheduler
# interpretable/study/scheduler.py. Re-running resumes every unfinished job, skips finished ones.
#   bash reference/run_all.sh            run / resume everything (logs in reference/logs/)
#   bash reference/run_all.sh pause      SIGSTOP the running jobs (e.g. while benchmarking)
#   bash reference/run_all.sh resume     SIGCONT them
#   bash reference/run_all.sh status     what is finished, running and waiting
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
pids() { cat reference/logs/lane*.pid 2>/dev/null; }
case "${1:-run}" in
  run) exec "$PY" -m interpretable.study.scheduler ;;
  pause) for p in $(pids); do kill -STOP "$p" && echo "paused $p"; done ;;
  resume) for p in $(pids); do kill -CONT "$p" && echo "resumed $p"; done ;;
  status) exec "$PY" -m interpretable.study.scheduler status ;;
  *) echo "usage: bash reference/run_all.sh [run|pause|resume|status]" >&2; exit 2 ;;
esac
