"""Training-step cost: plain vs regularized (METHODS.md section 2), CIFAR ResNet-18, CPU.

Targets (issue 6): a full regularized step costs at most 3x our plain step; our plain step is
at least 1.5x faster than a straightforward NCHW float32 loop. Also reported: the
regularized step with ``reg_fraction`` 0.5 and 0.25, with exact autograd through the BN
statistics (``bn_stats="batch"``), and a straightforward regularized step (one shared forward,
switchable ReLUs, PyTorch's native double backward), so one can see where the time went.

    python -m benchmarks.training [--width 1.0] [--batch 128] [--repeats 3] [--quick]
                                  [--threads N]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from benchmarks.common import Target, count_flops, matmul_gflops, measure_interleaved, print_table
from interpretable.attribution.relu_rules import switchable_relus
from interpretable.models import create
from interpretable.training import regularized_loss

LAM = 7.5e-3


def _naive_plain(model, opt, x, y):
    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def _naive_regularized(model, opt, x, y):
    """One shared forward, guided then standard gradient, PyTorch's own double backward."""
    def step():
        xx = x.detach().requires_grad_(True)
        with switchable_relus(model) as sw:
            z = model(xx)
        target = z.gather(1, y[:, None]).sum()
        sw.guided = True
        (gg,) = torch.autograd.grad(target, xx, retain_graph=True)
        sw.guided = False
        (g,) = torch.autograd.grad(target, xx, create_graph=True)
        lr = (1 - F.cosine_similarity(g.flatten(1), gg.flatten(1))).mean()
        loss = F.cross_entropy(z, y) + LAM * lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def _ours(model, opt, x, y, lam, **kw):
    gen = torch.Generator().manual_seed(0)

    def step():
        loss, _ = regularized_loss(model, x, y, lam=lam, generator=gen, **kw)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def run(width: float = 1.0, batch: int = 128, repeats: int = 3, quick: bool = False,
        arch: str = "resnet18") -> dict:
    """Time the steps side by side (interleaved, medians); return timings and targets."""
    if quick:
        width, batch, repeats = min(width, 0.25), min(batch, 32), min(repeats, 2)
    torch.manual_seed(0)
    cl = torch.channels_last
    base = create(arch, width=width).train()
    naive = base                                           # NCHW float32
    ours = create(arch, width=width).to(memory_format=cl).train()
    ours.load_state_dict(base.state_dict())
    # a model per variant so momentum buffers and BN statistics do not interact
    models = {k: create(arch, width=width).to(memory_format=cl).train()
              for k in ("reg", "reg_0.5", "reg_0.25", "reg_bn_batch", "reg_naive")}
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 100, (batch,))
    xc = x.contiguous(memory_format=cl)

    def sgd(m):
        return torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

    fns = {
        "naive_plain_nchw": _naive_plain(naive, sgd(naive), x, y),
        "plain": _ours(ours, sgd(ours), xc, y, 0.0),
        "reg": _ours(models["reg"], sgd(models["reg"]), xc, y, LAM),
        "reg_0.5": _ours(models["reg_0.5"], sgd(models["reg_0.5"]), xc, y, LAM, reg_fraction=0.5),
        "reg_0.25": _ours(models["reg_0.25"], sgd(models["reg_0.25"]), xc, y, LAM,
                          reg_fraction=0.25),
        "reg_bn_batch": _ours(models["reg_bn_batch"], sgd(models["reg_bn_batch"]), xc, y, LAM,
                              bn_stats="batch"),
        "reg_naive": _naive_regularized(models["reg_naive"], sgd(models["reg_naive"]), xc, y),
    }
    timings = measure_interleaved(fns, repeats=repeats, warmup=1)
    med = {k: t.median for k, t in timings.items()}
    targets = [
        Target("regularized step / plain step (full regularization)", med["reg"] / med["plain"],
               3.0),
        Target("straightforward NCHW fp32 plain step / our plain step",
               med["naive_plain_nchw"] / med["plain"], 1.5, at_least=True),
    ]
    flop = count_flops(fns["naive_plain_nchw"])  # forward + backward convolutions, one step
    roofline = {"step_gflop": flop / 1e9, "matmul_peak_gflops": matmul_gflops()["median"],
                "naive_plain_gflops": flop / med["naive_plain_nchw"] / 1e9,
                "plain_gflops": flop / med["plain"] / 1e9,
                "needed_for_1.5x_gflops": flop / (med["naive_plain_nchw"] / 1.5) / 1e9}
    return {
        "roofline": roofline,
        "setup": {"arch": arch, "width": width, "batch": batch, "repeats": repeats,
                  "threads": torch.get_num_threads()},
        "timings": {k: t.as_dict() for k, t in timings.items()},
        "ms_per_image": {k: 1e3 * v / batch for k, v in med.items()},
        "ratios_to_plain": {k: v / med["plain"] for k, v in med.items()},
        "targets": [t.as_dict() for t in targets],
        "_timings": timings, "_targets": targets,
    }


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
