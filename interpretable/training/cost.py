"""What a training step costs: plain against regularized (METHODS.md section 2), and against
straightforward reference steps, measured side by side on this machine."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from interpretable.attribution.relu_rules import switchable_relus
from interpretable.models import create
from interpretable.timing import count_flops, matmul_gflops, measure_interleaved
from interpretable.training.losses import regularized_loss

__all__ = ["step_costs", "LAM"]

#: lambda of the regularized steps (the paper's; the cost does not depend on it)
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


def step_costs(width: float = 1.0, batch: int = 128, repeats: int = 3, quick: bool = False,
               arch: str = "resnet18") -> dict:
    """Time the training steps side by side (interleaved, medians) on random inputs.

    Steps: ``plain`` (our cross-entropy step, channels-last), ``reg`` (full regularization,
    lambda 7.5e-3), ``reg_0.5`` / ``reg_0.25`` (``reg_fraction``), ``reg_bn_batch`` (exact
    autograd through the BN statistics), ``reg_naive`` (one shared forward, switchable
    ReLUs, PyTorch's own double backward) and ``naive_plain_nchw`` (a straightforward NCHW
    float32 loop). ``quick``: width <= 0.25, batch <= 32, at most 2 repeats.

    Returns ``{"setup", "timings" (Timing per step), "ms_per_image", "ratios_to_plain",
    "roofline"}``; the roofline sets the step's convolution GFLOP/s beside the machine's
    float32 matmul peak.
    """
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
    flop = count_flops(fns["naive_plain_nchw"])  # forward + backward convolutions, one step
    roofline = {"step_gflop": flop / 1e9, "matmul_peak_gflops": matmul_gflops()["median"],
                "naive_plain_gflops": flop / med["naive_plain_nchw"] / 1e9,
                "plain_gflops": flop / med["plain"] / 1e9,
                "needed_for_1.5x_gflops": flop / (med["naive_plain_nchw"] / 1.5) / 1e9}
    return {
        "roofline": roofline,
        "setup": {"arch": arch, "width": width, "batch": batch, "repeats": repeats,
                  "threads": torch.get_num_threads()},
        "timings": timings,
        "ms_per_image": {k: 1e3 * v / batch for k, v in med.items()},
        "ratios_to_plain": {k: v / med["plain"] for k, v in med.items()},
    }
