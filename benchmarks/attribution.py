"""Attribution and CAM speed against one forward pass and against the peers (issue 3).

Run: ``python -m benchmarks.attribution`` (add ``--quick`` for the CI-sized run). Everything
is timed round-robin with :func:`benchmarks.common.measure_interleaved` (medians), so every
ratio comes from one run under the same machine load. Model: a seeded, randomly initialized
CIFAR model; inputs: the first images of the real CIFAR-100 test split (random normal
inputs if the data set is not available).

Sections:

Timings are steady state: two warm-up calls (our CAM objects build their cached,
inference-optimized forwards on the second call; the one-time build cost is printed apart).

- gradient CAMs (Grad-CAM, Grad-CAM++, XGrad-CAM, Layer-CAM) on ``batch`` images: ours vs one
  forward pass with autograd on (the floor), vs pytorch-grad-cam, vs torchcam (its
  documented use: the caller's forward, then ``extractor(class_idx, scores)``);
- guided backpropagation vs the plain input gradient on ``batch`` images;
- captum beside ours (reported ratios, no targets): Saliency vs ``gradient``, GuidedBackprop
  vs ``guided_backprop``, NoiseTunnel(Saliency) vs ``smoothgrad`` (n = 25), LayerGradCam vs
  ``GradCAM``;
- Score-CAM on ``score_images`` images (Score-CAM costs one forward per channel: 64 images
  at width 1 are 32,768 ResNet-18 forwards, minutes per run on a CPU, and neither our cost
  nor pytorch-grad-cam's per image depends on how many images there are beyond the first
  chunk): ours vs the plain forwards of the distinct masked inputs it must make (the floor),
  and vs pytorch-grad-cam at its best batch size, with the same upsampling convention as the
  peer (``align_corners=True``) so the maps are the same (the maximum difference is printed);
- the same Score-CAM comparison on the trained reference ResNet-18 (``reference/``, width
  0.25) when it is there, reported without a target: a random network has almost no constant
  or duplicate channels, a trained one has many, and those share forwards.
"""

from __future__ import annotations

import argparse
import time

import torch

import interpretable as itp
from interpretable.attribution import (
    GRADIENT_CAMS,
    GradCAM,
    ScoreCAM,
    build_method,
    gradient,
    guided_backprop,
    smoothgrad,
)
from interpretable.checks import eval_mode
from interpretable.inference import inference_forward, split_forward
from interpretable.peers import installed, peer
from interpretable.study import reference

from .common import Target, count_flops, matmul_gflops, measure_interleaved, print_table

__all__ = ["run", "main"]

#: the gradient CAMs, timed against their peers
CAMS = GRADIENT_CAMS


def _inputs(n: int) -> torch.Tensor:
    try:
        ds = itp.data.cifar100("test")
        return torch.stack([ds[i][0] for i in range(n)])
    except Exception:  # no data set here: the timings do not depend on the pixel values
        return torch.randn(n, 3, 32, 32)


def _bound(fn, x, target):
    """A peer adapter bound to its inputs, for the timer (which calls without arguments)."""
    return lambda: fn(x, target)


def _forward_autograd(model, x):
    def run():
        with torch.enable_grad():
            return model(x)
    return run


def _gradient_cams(model, layer, x, target, repeats, warmup, with_peers=True):
    fns = {"forward (autograd)": _forward_autograd(model, x)}
    for key in CAMS:
        cam = build_method(key, model, layer=layer)
        fns[f"ours {key}"] = lambda cam=cam: cam(x, target)
        if with_peers:
            for lib in ("pytorch-grad-cam", "torchcam"):
                fns[f"{lib} {key}"] = _bound(peer(lib, key, model, layer), x, target)
    timings = measure_interleaved(fns, repeats=repeats, warmup=warmup)
    t0 = time.perf_counter()
    with eval_mode(model):
        split_forward(model, layer, x[:1])
    build = time.perf_counter() - t0
    targets = []
    floor = timings["forward (autograd)"].median
    for key in CAMS:
        ours = timings[f"ours {key}"].median
        targets.append(Target(f"{key}: ours / forward with autograd", ours / floor, 1.15))
        if with_peers:
            targets.append(Target(f"{key}: pytorch-grad-cam / ours",
                                  timings[f"pytorch-grad-cam {key}"].median / ours, 2.0,
                                  at_least=True))
            targets.append(Target(f"{key}: ours / torchcam",
                                  ours / timings[f"torchcam {key}"].median, 1.0))
    return timings, targets, {"gradient_cam_optimized_forward_build_seconds": build}


def _guided(model, x, target, repeats, warmup):
    timings = measure_interleaved({
        "gradient": lambda: gradient(model, x, target),
        "guided backprop": lambda: guided_backprop(model, x, target),
    }, repeats=repeats, warmup=warmup)
    ratio = timings["guided backprop"].median / timings["gradient"].median
    return timings, [Target("guided backprop / plain gradient", ratio, 1.3)]


def _chunked(forward, inputs, batch_size, fmt=torch.contiguous_format):
    def run():
        with torch.no_grad():
            for i in range(0, inputs.shape[0], batch_size):
                forward(inputs[i:i + batch_size].contiguous(memory_format=fmt))
    return run


def _score_cam(model, layer, x, target, repeats, warmup, pgc_batch_sizes):
    cam = ScoreCAM(model, layer, align_corners=True)  # the peer's mask upsampling
    inputs, counts = cam.masked_inputs(x, target)
    n_const, n_dup = counts["constant"], counts["duplicates"]
    n_pairs = counts["channels"] - n_const
    t0 = time.perf_counter()
    with eval_mode(model):
        fast, fast_fmt = inference_forward(model, x.device, cam.input_format(x.device))
    build = time.perf_counter() - t0
    fns = {
        "ours score-cam": lambda: cam(x, target),
        "plain forwards of the distinct masked inputs": _chunked(model, inputs, cam.batch_size),
        "optimized forwards of the same inputs": _chunked(fast, inputs, cam.batch_size,
                                                          fast_fmt),
    }
    for bs in pgc_batch_sizes:
        fns[f"pytorch-grad-cam score-cam, batch {bs}"] = _bound(
            peer("pytorch-grad-cam", "scorecam", model, layer, batch_size=bs), x, target)
    timings = measure_interleaved(fns, repeats=repeats, warmup=warmup)
    ours = timings["ours score-cam"].median
    best_bs = min(pgc_batch_sizes,
                  key=lambda b: timings[f"pytorch-grad-cam score-cam, batch {b}"].median)
    best = timings[f"pytorch-grad-cam score-cam, batch {best_bs}"].median
    ours_maps = cam(x, target, normalize=True)
    peer_maps = peer("pytorch-grad-cam", "scorecam", model, layer, batch_size=64)(x, target)
    targets = [
        Target("score-cam: ours / plain forwards of the distinct masked inputs",
               ours / timings["plain forwards of the distinct masked inputs"].median, 1.1),
        Target(f"score-cam: pytorch-grad-cam (best batch {best_bs}) / ours", best / ours, 1.3,
               at_least=True),
    ]
    info = {
        "score_cam_masked_forwards": int(inputs.shape[0]),
        "score_cam_pairs": n_pairs,
        "score_cam_constant_channels": n_const,
        "score_cam_duplicate_channels": n_dup,
        "score_cam_pgc_best_batch": best_bs,
        "score_cam_max_map_difference_vs_pgc": float((ours_maps - peer_maps).abs().max()),
        "score_cam_overhead_vs_optimized_forwards":
            ours / timings["optimized forwards of the same inputs"].median,
        "score_cam_optimized_forward_build_seconds": build,
    }
    # roofline: each side's forwards in GFLOP/s (the peer runs one forward per channel)
    flop = count_flops(lambda: model(x[:1]))
    info.update({
        "score_cam_matmul_peak_gflops": matmul_gflops()["median"],
        "score_cam_ours_gflops": inputs.shape[0] * flop / ours / 1e9,
        "score_cam_pgc_gflops": n_pairs * flop / best / 1e9,
        "score_cam_needed_for_1.3x_gflops": inputs.shape[0] * flop / (best / 1.3) / 1e9,
    })
    return timings, targets, info


#: images for the trained-reference Score-CAM section (width 0.25: 128 channels each)
TRAINED_IMAGES = 16


def _trained_reference(arch: str):
    """(model, name) of the finished reference baseline of ``arch``, or None."""
    name = f"{arch}_baseline"
    if not (reference.run_dir(name) / "final.pt").is_file():  # finished runs only
        return None
    model, _ = reference.load(name)
    return model.eval(), name


def _captum(model, layer, x, target, repeats, warmup, smooth_images):
    """Our gradient methods and Grad-CAM beside captum's (Saliency, GuidedBackprop,
    NoiseTunnel(Saliency) as SmoothGrad with n = 25, LayerGradCam); None if captum is absent.

    Reported as peer / ours ratios (no target in the issues). SmoothGrad runs on
    ``smooth_images`` images (25 noisy copies each)."""
    if not installed()["captum"]:
        return None
    xs, ts = x[:smooth_images], target[:smooth_images]
    cam = GradCAM(model, layer)
    fns = {
        "ours gradient": lambda: gradient(model, x, target),
        "captum Saliency": _bound(peer("captum", "gradient", model), x, target),
        "ours guided backprop": lambda: guided_backprop(model, x, target),
        "captum GuidedBackprop": _bound(peer("captum", "guided", model), x, target),
        f"ours smoothgrad (n=25, {smooth_images} img)":
            lambda: smoothgrad(gradient, model, xs, ts, n=25),
        f"captum NoiseTunnel smoothgrad (n=25, {smooth_images} img)":
            _bound(peer("captum", "smoothgrad", model, n=25), xs, ts),
        "ours gradcam": lambda: cam(x, target),
        "captum LayerGradCam": _bound(peer("captum", "gradcam", model, layer), x, target),
    }
    timings = measure_interleaved(fns, repeats=repeats, warmup=warmup)
    med = {k: t.median for k, t in timings.items()}
    ratios = {
        "captum Saliency / ours gradient": med["captum Saliency"] / med["ours gradient"],
        "captum GuidedBackprop / ours": med["captum GuidedBackprop"]
        / med["ours guided backprop"],
        "captum NoiseTunnel smoothgrad / ours": med[
            f"captum NoiseTunnel smoothgrad (n=25, {smooth_images} img)"]
        / med[f"ours smoothgrad (n=25, {smooth_images} img)"],
        "captum LayerGradCam / ours gradcam": med["captum LayerGradCam"] / med["ours gradcam"],
    }
    return timings, ratios


def run(model_name: str = "resnet18", width: float = 1.0, batch: int = 64, repeats: int = 5,
        quick: bool = False, score_images: int | None = None,
        pgc_batch_sizes: tuple[int, ...] | None = None, verbose: bool = False, *,
        arch: str | None = None) -> dict:
    """Time everything; return {"config", "timings", "targets", "info"} as plain dicts.

    ``quick``: a CI-sized run (width 0.125, batch 8, one repeat, one Score-CAM image).
    """
    if quick:
        width, batch, repeats = min(width, 0.125), min(batch, 8), 1
    score_images = score_images or (1 if quick else 2)
    pgc_batch_sizes = pgc_batch_sizes or ((64,) if quick else (16, 64, 256))
    warmup = 2  # steady state: the optimized forwards are built during the warm-up calls
    torch.manual_seed(0)
    model_name = arch or model_name
    model = itp.models.create(model_name, width=width).eval()
    layer = itp.models.cam_layer(model)
    x = _inputs(batch)
    target = torch.arange(batch) % 100
    config = {"model": model_name, "width": width, "batch": batch, "repeats": repeats,
              "quick": quick, "score_images": score_images, "threads": torch.get_num_threads(),
              "pgc_batch_sizes": list(pgc_batch_sizes)}

    sections = {}
    all_targets: list[Target] = []
    # the sub-second operations get 3x the repeats: their ratios are close calls and this
    # machine's timings vary by +-15% from call to call
    cheap = repeats if quick else 3 * repeats
    t, tg, cam_info = _gradient_cams(model, layer, x, target, cheap, warmup)
    sections["gradient CAMs"], all_targets = t, all_targets + tg
    t, tg = _guided(model, x, target, cheap, warmup)
    sections["guided backprop"], all_targets = t, all_targets + tg
    t, tg, info = _score_cam(model, layer, x[:score_images], target[:score_images], repeats,
                             warmup, pgc_batch_sizes)
    sections["Score-CAM"], all_targets = t, all_targets + tg
    info = {**cam_info, **info}
    trained = None if quick else _trained_reference(model_name)
    if trained is not None:
        t_model, t_name = trained
        t, tg, t_info = _score_cam(t_model, itp.models.cam_layer(t_model), x[:TRAINED_IMAGES],
                                   target[:TRAINED_IMAGES], repeats, warmup, pgc_batch_sizes)
        sections[f"Score-CAM, trained {t_name}"] = t
        info.update({f"trained_{k}": v for k, v in t_info.items()})
        for tgt in tg:  # reported: the targets are about the random width-1 network
            info[f"trained {tgt.name}"] = tgt.ratio
    captum = _captum(model, layer, x, target, repeats, warmup, min(batch, 16))
    if captum is not None:
        sections["captum"] = captum[0]
        info.update(captum[1])
    if verbose:
        _print(config, sections, all_targets, info)
    return {
        "config": config,
        "timings": {s: {k: v.as_dict() for k, v in t.items()} for s, t in sections.items()},
        "targets": [t.as_dict() for t in all_targets],
        "info": info,
    }


def _print(config, sections, targets, info):
    print("attribution benchmark:", ", ".join(f"{k}={v}" for k, v in config.items()))
    refs = {"gradient CAMs": "forward (autograd)", "guided backprop": "gradient",
            "Score-CAM": "plain forwards of the distinct masked inputs",
            "captum": "ours gradient"}
    for name, timings in sections.items():
        print(f"\n{name} (median ms, [min-max], x reference)")
        print_table(timings, refs[name.split(",")[0]])
    print()
    for k, v in info.items():
        print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
    print()
    for t in targets:
        print(t.line())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.attribution", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--score-images", type=int, default=None)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    return run(a.model, a.width, a.batch, a.repeats, a.quick, a.score_images, verbose=True)


if __name__ == "__main__":
    main()
