#!/usr/bin/env bash
# The four reference runs (cpu preset, full CIFAR-100 training set), in two lanes of one
# thread each (two 1-thread processes use a 2-core machine better than two 2-thread ones).
# Re-running this script resumes every unfinished run from its last completed epoch and skips
# finished ones (final.pt present; their last.pt, optimizer state for resuming, is removed).
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
run() {  # name arch lam
  if [ -f "reference/$1/final.pt" ]; then
    rm -f "reference/$1/last.pt"
    return 0
  fi
  OMP_NUM_THREADS=1 "$PY" -m interpretable train --preset cpu --arch "$2" --lam "$3" \
    --out "reference/$1" --no-progress >> "reference/$1.out" 2>&1 \
    && rm -f "reference/$1/last.pt"
}
# Lanes balanced by measured cost (a regularized epoch costs about 2x a plain one).
(run resnet18_baseline resnet18 0; run mobilenet_v2_regularized mobilenet_v2 7.5e-3) &
(run resnet18_regularized resnet18 7.5e-3; run mobilenet_v2_baseline mobilenet_v2 0) &
wait
