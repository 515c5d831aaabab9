"""Training-step cost: plain vs regularized (METHODS.md section 2), CIFAR ResNet-18, CPU.

Targets (issue 6): a full regularized step costs at most 3x our plain step; our plain step is
at least 1.5x faster than a straightforward NCHW float32 loop. The measurement itself is
:func:`interpretable.training.cost.step_costs` (also used by the speed chapter); it also
reports the regularized step with ``reg_fraction`` 0.5 and 0.25, with exact autograd through
the BN statistics (``bn_stats="batch"``), and a straightforward regularized step, so one can
see where the time went.

    python -m benchmarks.training [--width 1.0] [--batch 128] [--repeats 3] [--quick]
                                  [--threads N]
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import Target, print_table
from interpretable.training.cost import step_costs


def run(width: float = 1.0, batch: int = 128, repeats: int = 3, quick: bool = False,
        arch: str = "resnet18") -> dict:
    """:func:`step_costs` and the targets; timings as plain dicts."""
    res = step_costs(width, batch, repeats, quick, arch)
    r = res["ratios_to_plain"]
    targets = [
        Target("regularized step / plain step (full regularization)", r["reg"], 3.0),
        Target("straightforward NCHW fp32 plain step / our plain step",
               r["naive_plain_nchw"], 1.5, at_least=True),
    ]
    timings = res["timings"]
    return {**res, "timings": {k: t.as_dict() for k, t in timings.items()},
            "targets": [t.as_dict() for t in targets], "_timings": timings,
            "_targets": targets}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    res = run(a.width, a.batch, a.repeats, a.quick)
    s = res["setup"]
    print(f"CIFAR ResNet-18 width {s['width']}, batch {s['batch']}, CPU threads {s['threads']}, "
          f"median of {s['repeats']} (interleaved)")
    print_table(res["_timings"], reference="plain")
    for k, v in res["ms_per_image"].items():
        print(f"  {k:<18} {v:8.2f} ms/image")
    r = res["roofline"]
    print(f"  roofline: plain step {r['plain_gflops']:.0f} GFLOP/s, naive "
          f"{r['naive_plain_gflops']:.0f}; 1.5x the naive step needs "
          f"{r['needed_for_1.5x_gflops']:.0f}; float32 matmul peak {r['matmul_peak_gflops']:.0f}")
    for t in res["_targets"]:
        print(t.line())


if __name__ == "__main__":
    main()
