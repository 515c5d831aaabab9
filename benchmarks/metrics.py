"""Benchmark of the metrics (issue 5): batched insertion/deletion and the whole metric suite.

1. Insertion + deletion for ``n_images`` CIFAR-100 test images, ``step`` pixels per step, a
   CIFAR ResNet-18 of ``width`` on the CPU, timed side by side (interleaved, medians) for
   - ours: :func:`interpretable.metrics.insertion_deletion`, all points in chunked batches;
   - the per-image, per-step loop (one forward per image per curve point, the obvious way);
     it costs the same for every image, so it is timed on the first few images and scaled to
     ``n_images`` (an extrapolation, reported as such);
   - torchcam 0.5's ``DeletionInsertionMetric`` on the same inputs, maps and targets (its
     CAM extractor replaced by one returning our maps). Its conventions differ: one baseline
     (black here) serves both curves, so its insertion starts from black, not from a blur;
     ``steps`` counts intervals; AUC by ``torch.trapezoid`` over the changed fraction (the
     same number as ours when ``step`` divides H*W). Its deletion curve is checked equal to
     ours.
   - ours with ``optimize=False`` (the model's own forward in the batched chunks), which
     separates the gain of batching from that of the inference-optimized forward;
2. The whole suite (AD, AG, AI, insertion, deletion for 4 methods: Grad-CAM, Grad-CAM++,
   Score-CAM, FastCAM) of :func:`evaluate` with its defaults on a width-0.25 ResNet-18,
   measured on ``suite_images`` test images and extrapolated linearly to the 10,000 test
   images (the cost per image does not depend on which images).

Weights are the random initialization: costs do not depend on them.
Run: ``python -m benchmarks.metrics [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from functools import partial

import torch

import interpretable as itp
from benchmarks.common import (
    FixedMaps,
    Target,
    Timing,
    count_flops,
    matmul_gflops,
    measure_interleaved,
    print_table,
)
from interpretable.attribution import DEFAULT_CAMS, METHODS, build_method
from interpretable.metrics import (
    auc,
    black,
    blur_substrate,
    evaluate,
    insertion_deletion,
    prepare_maps,
)

__all__ = ["run", "per_image_loop", "main"]

TEST_IMAGES = 10_000


def per_image_loop(model, x, maps, target, step):
    """The obvious implementation: one image, one curve point, one forward at a time.

    Same conventions as ours (METHODS.md section 5), so the results agree.
    Returns insertion and deletion AUCs x100, (B,) each.
    """
    ins, dele = [], []
    h, w = x.shape[-2:]
    with torch.no_grad():
        for i in range(x.shape[0]):
            xi = x[i:i + 1]
            s = prepare_maps(maps[i:i + 1], xi)
            order = torch.argsort(s.flatten(), descending=True, stable=True)
            blurred = blur_substrate(xi)
            dark = black(xi)
            c = int(target[i])
            curve_i, curve_d = [], []
            for k in range(h * w // step + 1):
                moved = torch.zeros(h * w, dtype=torch.bool, device=x.device)
                moved[order[:k * step]] = True
                moved = moved.view(1, 1, h, w)
                for inp, curve in ((torch.where(moved, xi, blurred), curve_i),
                                   (torch.where(moved, dark, xi), curve_d)):
                    curve.append(torch.softmax(model(inp), dim=1)[0, c])
            ins.append(100 * auc(torch.stack(curve_i)))
            dele.append(100 * auc(torch.stack(curve_d)))
    return torch.stack(ins), torch.stack(dele)


def _suite(n_images: int, step: int, batch_size: int) -> dict:
    """Time :func:`evaluate` with all metrics and 4 methods on a width-0.25 ResNet-18."""
    torch.manual_seed(0)
    model = itp.models.create("resnet18", width=0.25).eval()
    data = itp.data.cifar100("test")
    methods = {METHODS[k].name: build_method(k, model) for k in DEFAULT_CAMS}
    kw = dict(step=step, progress=False)
    # warm-up on a few images so one-off costs (allocator, kernels) do not count
    evaluate(model, data, methods, n_images=2, batch_size=2, **kw)
    t0, c0 = time.perf_counter(), time.process_time()
    table = evaluate(model, data, methods, n_images=n_images, batch_size=batch_size, **kw)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    per_image = seconds / n_images
    return {
        "methods": list(methods),
        "metrics": [m.column for m in itp.metrics.METRICS],
        "n_images_measured": n_images,
        "step": step,
        "seconds_measured": seconds,
        "seconds_per_image": per_image,
        "extrapolated_minutes_10000": per_image * TEST_IMAGES / 60,
        "cpu_seconds_measured": cpu,
        "extrapolated_cpu_minutes_10000": cpu / n_images * TEST_IMAGES / 60,
        "rows": len(table),
    }


def run(width: float = 1.0, n_images: int = 256, step: int = 32, repeats: int = 3,
        quick: bool = False, *, batch_size: int = 256, loop_images: int | None = None,
        suite: bool = True, suite_images: int = 500, threads: int | None = None,
        arch: str = "resnet18", peer_images: int = 64) -> dict:
    """Run the benchmark; returns timings, targets and the suite timing as plain dicts.

    ``quick=True`` (CI): width 0.125, 16 images, step 256, 1 repeat, a 4-image loop and an
    4-image suite; well under 20 s on an idle 2-core machine. ``threads`` sets torch's
    intra-op threads for the run (restored after); on a machine shared with other busy
    processes 1 thread avoids OpenMP barrier stalls that slow small batches several-fold.
    """
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(width, n_images, step, repeats, quick, batch_size, loop_images, suite,
                    suite_images, arch, peer_images)
    finally:
        torch.set_num_threads(old_threads)


def _run(width, n_images, step, repeats, quick, batch_size, loop_images, suite, suite_images,
         arch="resnet18", peer_images=64):
    if quick:
        width, n_images, step, repeats = 0.125, 16, 256, 1
        loop_images, suite_images = 4, 4
    if loop_images is None:
        loop_images = min(n_images, 4 if width >= 0.5 else 16)
    loop_images = min(loop_images, n_images)
    peer_images = min(peer_images, n_images)
    torch.manual_seed(0)
    model = itp.models.create(arch, width=width).eval()
    data = itp.data.cifar100("test")
    x, y = data.tensors(range(n_images))
    maps = torch.rand(n_images, 4, 4)  # the cost does not depend on the map's values
    steps = x.shape[-2] * x.shape[-1] // step

    soft = partial(torch.softmax, dim=-1)
    tc = None
    with contextlib.suppress(ImportError):
        from torchcam.metrics import DeletionInsertionMetric

        tc = DeletionInsertionMetric(FixedMaps(model, maps[:peer_images]), soft, steps=steps,
                                     baseline=black(x), batch_size=batch_size)
    results: dict = {}
    tc_key = f"torchcam DeletionInsertionMetric ({peer_images} img)"
    q_key = f"quantus PixelFlipping, deletion only ({peer_images} img)"

    def ours():
        results["ours"] = insertion_deletion(model, x, maps, y, step=step, batch_size=batch_size)

    def ours_plain():
        results["ours_plain"] = insertion_deletion(model, x, maps, y, step=step,
                                                   batch_size=batch_size, optimize=False)

    def loop():
        sl = slice(0, loop_images)
        results["loop"] = per_image_loop(model, x[sl], maps[sl], y[sl], step)

    def torchcam():
        tc.reset()
        tc.update(x[:peer_images], class_idx=y[:peer_images].tolist())
        results["torchcam"] = tc.summary()

    qs = None
    with contextlib.suppress(ImportError):
        import quantus

        # Quantus's nearest operation: PixelFlipping, a deletion curve (no insertion) with
        # softmax probabilities. It flips array elements (one channel of one pixel), and its
        # step must divide H*W, so it takes ``step`` elements per step: 3x our points per
        # curve; the per-point ratio below accounts for that. Its "black" is each image's
        # minimum value; attributions are our maps broadcast over the channels.
        qs = quantus.PixelFlipping(features_in_step=step, perturb_baseline="black",
                                   disable_warnings=True)  # curves: its AUC needs np.trapz,
        # which numpy 2 removed
        q_points = x[0].numel() // step
        sl = slice(0, peer_images)
        s_np = prepare_maps(maps[sl], x[sl])[:, None].expand_as(x[sl]).numpy()
        x_np, y_np = x[sl].numpy(), y[sl].numpy()

    def quantus_deletion():
        results["quantus"] = qs(model=model, x_batch=x_np, y_batch=y_np, a_batch=s_np,
                                device=str(x.device), batch_size=batch_size, softmax=True)

    fns = {"ours (batched)": ours, "ours, optimize=False": ours_plain,
           f"per-image loop ({loop_images} img)": loop}
    if tc is not None:
        fns[tc_key] = torchcam
    if qs is not None:
        fns[q_key] = quantus_deletion
    # process CPU time beside the wall clock: on a machine shared with busy processes the
    # wall clock includes waiting for a core, CPU time (1 thread) is what an idle core needs
    cpu: dict[str, list[float]] = {k: [] for k in fns}

    def with_cpu(name, fn):
        def timed():
            c0 = time.process_time()
            fn()
            cpu[name].append(time.process_time() - c0)
        return timed

    fns = {k: with_cpu(k, f) for k, f in fns.items()}
    # warmup=0: a full warm-up would double the run; one small call warms the kernels instead
    insertion_deletion(model, x[:2], maps[:2], y[:2], step=step)
    timings = measure_interleaved(fns, repeats=repeats, warmup=0)
    loop_key = f"per-image loop ({loop_images} img)"
    loop_scaled = timings[loop_key].median * n_images / loop_images
    ours_t = timings["ours (batched)"].median

    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    cpu_loop_scaled = cpu_med[loop_key] * n_images / loop_images
    ins, dele = results["ours"]
    l_ins, l_del = results["loop"]
    agree_loop = bool(torch.allclose(ins[:loop_images], l_ins, atol=1e-3)
                      and torch.allclose(dele[:loop_images], l_del, atol=1e-3))
    # quick mode checks that everything runs; its tiny sizes say nothing about the goals
    tag = " [quick: not the issue's setting]" if quick else ""
    targets = [Target(f"insertion+deletion: per-image loop / ours (>= 10x){tag}",
                      loop_scaled / ours_t, 10.0, at_least=True)]
    out = {
        "name": "metrics",
        "config": {"arch": arch, "width": width, "n_images": n_images, "step": step, "steps": steps,
                   "repeats": repeats, "batch_size": batch_size, "loop_images": loop_images,
                   "peer_images": peer_images,
                   "threads": torch.get_num_threads(), "quick": quick},
        "timings": {k: t.as_dict() for k, t in timings.items()},
        "loop_seconds_scaled_to_n_images": loop_scaled,
        "cpu_seconds": cpu_med,
        "cpu_loop_over_ours": cpu_loop_scaled / cpu_med["ours (batched)"],
        "loop_over_ours_unoptimized": loop_scaled / timings["ours, optimize=False"].median,
        "agree_with_loop": agree_loop,
        "notes": [f"torchcam and quantus timed on {peer_images} images and scaled linearly to "
                  f"{n_images} (their cost per image is constant beyond a batch)",
                  f"per-image loop timed on {loop_images} images and scaled linearly to "
                  f"{n_images} (extrapolation)"],
    }
    if tc is not None:
        tc_t = timings[tc_key].median * n_images / peer_images
        out["torchcam_over_ours"] = tc_t / ours_t
        out["cpu_torchcam_over_ours"] = (cpu_med[tc_key]
                                         * n_images / peer_images / cpu_med["ours (batched)"])
        out["agree_with_torchcam_deletion"] = abs(
            results["torchcam"]["deletion_auc"] - dele[:peer_images].mean().item() / 100) < 1e-4
        out["notes"].append("torchcam: one baseline (black) for both curves, so its insertion "
                            "starts from black instead of our blur; both need 2T forwards per "
                            "image (T steps), so about 1x is expected; reported, no target")
    if qs is not None:
        q_t = timings[q_key].median * n_images / peer_images
        out["quantus_deletion_only_over_ours_both"] = q_t / ours_t
        # time per curve point (one model input per image): ours makes 2 * steps of them
        out["quantus_over_ours_per_curve_point"] = (q_t / q_points) / (ours_t / (2 * steps))
        out["notes"].append(f"quantus PixelFlipping computes the deletion curve only, {q_points} "
                            f"points (ours: both curves, {2 * steps} points), with its own "
                            "black (the image minimum); reported, no target")
    # roofline: the speed at which each side runs its forwards, against the matmul peak
    flop_img = count_flops(lambda: model(x[:1]))
    peak = matmul_gflops()
    ours_flop = n_images * 2 * steps * flop_img
    out["roofline"] = {
        "forward_gflop_per_image": flop_img / 1e9,
        "matmul_peak_gflops": peak["median"],
        "ours_gflops": ours_flop / ours_t / 1e9,
        "loop_gflops": n_images * 2 * (steps + 1) * flop_img / loop_scaled / 1e9,
        "needed_for_10x_gflops": ours_flop / (loop_scaled / 10) / 1e9,
    }
    out["roofline"]["needed_for_10x_over_peak"] = (out["roofline"]["needed_for_10x_gflops"]
                                                   / peak["median"])
    if suite:
        s = _suite(suite_images, 32 if not quick else 256, batch_size=64)
        out["suite"] = s
        targets.append(Target(f"whole suite, 10,000 images, minutes (extrapolated, <= 60){tag}",
                              s["extrapolated_minutes_10000"], 60.0))
    out["targets"] = [t.as_dict() for t in targets]
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--n-images", type=int, default=256)
    p.add_argument("--step", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--loop-images", type=int, default=None)
    p.add_argument("--suite-images", type=int, default=500)
    p.add_argument("--no-suite", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    out = run(a.width, a.n_images, a.step, a.repeats, a.quick, loop_images=a.loop_images,
              suite=not a.no_suite, suite_images=a.suite_images, threads=a.threads)
    targets = [Target(t["name"], t["ratio"], t["limit"], t["at_least"]) for t in out["targets"]]
    timings = {k: Timing(**t) for k, t in out["timings"].items()}
    c = out["config"]
    print(f"metrics: insertion+deletion, ResNet-18 width {c['width']}, {c['n_images']} images, "
          f"step {c['step']} ({c['steps']} steps), {c['threads']} threads, "
          f"{c['repeats']} repeat(s), medians")
    print_table(timings, reference="ours (batched)")
    print(f"  per-image loop scaled to {c['n_images']} images: "
          f"{out['loop_seconds_scaled_to_n_images']:.2f} s (extrapolated from "
          f"{c['loop_images']} images); results agree: {out['agree_with_loop']}")
    print(f"  process CPU time: loop / ours {out['cpu_loop_over_ours']:.2f}x; batching alone "
          f"(optimize=False): loop / ours {out['loop_over_ours_unoptimized']:.2f}x")
    if "torchcam_over_ours" in out:
        print(f"  torchcam / ours: {out['torchcam_over_ours']:.2f}x (CPU time "
              f"{out['cpu_torchcam_over_ours']:.2f}x); deletion AUC agrees: "
              f"{out['agree_with_torchcam_deletion']}")
    if "quantus_deletion_only_over_ours_both" in out:
        print(f"  quantus PixelFlipping (deletion only) / ours (both curves): "
              f"{out['quantus_deletion_only_over_ours_both']:.2f}x; per curve point "
              f"{out['quantus_over_ours_per_curve_point']:.2f}x")
    r = out["roofline"]
    print(f"  roofline: ours runs its forwards at {r['ours_gflops']:.0f} GFLOP/s, the loop at "
          f"{r['loop_gflops']:.0f}; float32 matmul peak here {r['matmul_peak_gflops']:.0f}; "
          f"10x the loop would need {r['needed_for_10x_gflops']:.0f} GFLOP/s "
          f"({r['needed_for_10x_over_peak']:.2f}x the peak)")
    if "suite" in out:
        s = out["suite"]
        print(f"suite: {len(s['methods'])} methods ({', '.join(s['methods'])}) x "
              f"{len(s['metrics'])} metrics, ResNet-18 width 0.25, step {s['step']}: "
              f"{s['seconds_measured']:.1f} s for {s['n_images_measured']} images "
              f"-> {s['extrapolated_minutes_10000']:.1f} min for 10,000 (extrapolated); "
              f"CPU time {s['cpu_seconds_measured']:.1f} s -> "
              f"{s['extrapolated_cpu_minutes_10000']:.1f} CPU-min")
    for t in targets:
        print(t.line())
    for note in out["notes"]:
        print(f"  note: {note}")
    return out


if __name__ == "__main__":
    main()
