"""torchrun with two gloo processes: DDP training with the double backward, identical replicas."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

import interpretable as itp

REPO = Path(__file__).resolve().parent.parent


def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--standalone", "-m", "interpretable", "train", "--preset", "ci", "--epochs", "1",
           "--width", "0.0625", "--batch-size", "16", "--train-per-class", "1",
           "--device", "cpu", "--out", str(out), "--no-progress"]
    # own session: on a timeout the launcher AND its two workers are killed
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    # every rank compared its weights with rank 0's, bit for bit, after the last step
    assert summary["world_size"] == 2 and summary["replicas_identical"] is True
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["train_align"] is not None
    model, meta = itp.models.load_checkpoint(out / "final.pt")
    # the run trained: the weights moved away from the seeded initialisation
    torch.manual_seed(0)
    init = itp.models.create("resnet18", width=0.0625)
    assert not torch.equal(model.stem[0].weight, init.stem[0].weight)
