"""Benchmark of FastCAM (issue 4): SMOE saliency and FastCAM against a forward pass and Grad-CAM.

On a CIFAR ResNet-18 of ``width`` (random initialization: costs do not depend on the weights),
a batch of ``batch`` real CIFAR-100 test images, on the CPU, timed side by side (interleaved,
medians over ``repeats``):

- ``forward (no_grad)``: one plain forward pass under ``torch.no_grad()``;
- ``saliency``: :func:`interpretable.fastcam.saliency`, default Gamma normalization (and the
  Gaussian one, for information);
- ``GradCAM`` / ``FastCAM``: Grad-CAM normalized to [0, 1] and FastCAM, which shares its one
  forward pass (also the Grad-CAM++ pair);
- ``guided backprop`` (one forward, full backward to the input).

SmoothGrad (n = 25, vanilla gradient) costs ~25 backward passes, so it is timed after the
interleaved round, in the same run, with fewer repeats (``smoothgrad_repeats``).

Targets (issue 4): saliency / forward <= 1.15; FastCAM / GradCAM <= 1.1. Reported without a
target: guided backprop / FastCAM and SmoothGrad / FastCAM ([P2] claims one to several
orders of magnitude for FastCAM against gradient methods).
Run: ``python -m benchmarks.fastcam [--quick]``.
"""

from __future__ import annotations

import argparse

import torch

import interpretable as itp
from benchmarks.common import Target, Timing, measure, measure_interleaved, print_table
from interpretable.attribution import (
    GradCAM,
    GradCAMPlusPlus,
    gradient,
    guided_backprop,
    smoothgrad,
)
from interpretable.fastcam import FastCAM, saliency

__all__ = ["run", "main"]

SAL_LIMIT = 1.15
FASTCAM_LIMIT = 1.1


def run(width: float = 1.0, batch: int = 64, repeats: int = 5, quick: bool = False, *,
        arch: str = "resnet18",
        smoothgrad_n: int = 25, smoothgrad_repeats: int | None = None,
        threads: int | None = None) -> dict:
    """Run the benchmark; returns config, timings (plain dicts), ratios and targets.

    ``quick=True`` (CI): width 0.125, batch 8, 1 repeat; well under 20 s on an idle 2-core
    machine. ``smoothgrad_repeats`` defaults to 1 (quick) or 2. ``threads`` sets torch's
    intra-op threads for the run (restored after); None keeps the current setting.
    """
    if threads is None:
        return _run(width, batch, repeats, quick, smoothgrad_n, smoothgrad_repeats, arch)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(width, batch, repeats, quick, smoothgrad_n, smoothgrad_repeats, arch)
    finally:
        torch.set_num_threads(before)


def _run(width: float, batch: int, repeats: int, quick: bool, smoothgrad_n: int,
         smoothgrad_repeats: int | None, arch: str = "resnet18") -> dict:
    if quick:
        width, batch, repeats = 0.125, 8, 1
    if smoothgrad_repeats is None:
        smoothgrad_repeats = 1 if quick else min(2, repeats)
    torch.manual_seed(0)
    model = itp.models.create(arch, width=width).eval()
    x, _ = itp.data.cifar100("test").tensors(range(batch))
    target = None  # the predicted class, the same for every method

    gc, gcpp = GradCAM(model), GradCAMPlusPlus(model)
    fc, fcpp = FastCAM(model), FastCAM(model, cam="gradcam++")

    def forward():
        with torch.no_grad():
            model(x)

    fns = {
        "forward (no_grad)": forward,
        "saliency (gamma)": lambda: saliency(model, x),
        "saliency (gaussian)": lambda: saliency(model, x, norm="gaussian"),
        "GradCAM": lambda: gc(x, target, normalize=True),
        "FastCAM": lambda: fc(x, target),
        "GradCAM++": lambda: gcpp(x, target, normalize=True),
        "FastCAM (Grad-CAM++)": lambda: fcpp(x, target),
        "guided backprop": lambda: guided_backprop(model, x, target),
    }
    # sub-second calls: 3x the repeats (close calls, +-15% call-to-call variation here);
    # two warm-up calls: the CAMs build their optimized forward on their second call
    timings = measure_interleaved(fns, repeats=repeats if quick else 3 * repeats, warmup=2)
    sg_name = f"SmoothGrad (n={smoothgrad_n})"
    timings[sg_name] = measure(
        sg_name, lambda: smoothgrad(gradient, model, x, target, n=smoothgrad_n),
        repeats=smoothgrad_repeats, warmup=0)

    med = {k: t.median for k, t in timings.items()}
    ratios = {
        "saliency / forward": med["saliency (gamma)"] / med["forward (no_grad)"],
        "saliency (gaussian) / forward": med["saliency (gaussian)"] / med["forward (no_grad)"],
        "FastCAM / GradCAM": med["FastCAM"] / med["GradCAM"],
        "FastCAM++ / GradCAM++": med["FastCAM (Grad-CAM++)"] / med["GradCAM++"],
        "GradCAM / forward": med["GradCAM"] / med["forward (no_grad)"],
        "guided backprop / FastCAM": med["guided backprop"] / med["FastCAM"],
        f"{sg_name} / FastCAM": med[sg_name] / med["FastCAM"],
        f"{sg_name} / saliency": med[sg_name] / med["saliency (gamma)"],
    }
    targets = [
        Target(f"saliency / forward (<= {SAL_LIMIT})", ratios["saliency / forward"], SAL_LIMIT),
        Target(f"FastCAM / GradCAM (<= {FASTCAM_LIMIT})", ratios["FastCAM / GradCAM"],
               FASTCAM_LIMIT),
    ]
    return {
        "name": "fastcam",
        "config": {"arch": arch, "width": width, "batch": batch, "repeats": repeats,
                   "smoothgrad_n": smoothgrad_n, "smoothgrad_repeats": smoothgrad_repeats,
                   "threads": torch.get_num_threads(), "device": "cpu", "quick": quick},
        "timings": {k: t.as_dict() for k, t in timings.items()},
        "ratios": ratios,
        "targets": [t.as_dict() for t in targets],
        "notes": [f"SmoothGrad timed after the interleaved round with {smoothgrad_repeats} "
                  "repeat(s), same process and inputs"]
        + (["quick mode: a tiny model where fixed per-call costs dominate; the targets are "
            "about width 1.0, batch 64"] if quick else []),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--smoothgrad-repeats", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    out = run(a.width, a.batch, a.repeats, a.quick, smoothgrad_repeats=a.smoothgrad_repeats,
              threads=a.threads)
    c = out["config"]
    print(f"fastcam: ResNet-18 width {c['width']}, batch {c['batch']}, CPU, {c['threads']} "
          f"threads, {c['repeats']} repeat(s), medians")
    print_table({k: Timing(**t) for k, t in out["timings"].items()},
                reference="forward (no_grad)")
    for name, r in out["ratios"].items():
        print(f"  {name}: {r:.3f}")
    for t in out["targets"]:
        print(Target(t["name"], t["ratio"], t["limit"], t["at_least"]).line())
    for note in out["notes"]:
        print(f"  note: {note}")
    return out


if __name__ == "__main__":
    main()
