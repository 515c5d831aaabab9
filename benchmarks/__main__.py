"""Run every benchmark in one process: ``python -m benchmarks`` (or ``make bench``).

Times, on the same machine and in one run: forward passes, gradients, guided backprop,
SmoothGrad, the CAM family and Score-CAM (``benchmarks.attribution``), SMOE saliency and
FastCAM (``benchmarks.fastcam``), the confidence metrics and insertion/deletion
(``benchmarks.metrics``), and a plain and a regularized training step
(``benchmarks.training``), each against one forward pass and against the peer libraries.
Prints each section's table, then every issue target as a PASS/MISS line, and writes all of
it as JSON (machine, versions, settings) to ``benchmarks/results/latest.json``, which the
speed chapter of the book reads.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from interpretable._io import atomic_write_text

SECTIONS = ("attribution", "fastcam", "metrics", "training")
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def machine_info() -> dict:
    """What the numbers were measured on."""
    import numpy

    info = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    for peer in ("torchvision", "pytorch_grad_cam", "torchcam", "captum", "quantus"):
        try:
            module = importlib.import_module(peer)
            info[peer] = getattr(module, "__version__", "installed")
        except Exception:
            info[peer] = None
    return info


def steal_seconds() -> float | None:
    """Seconds of CPU time the hypervisor has taken from this machine since boot, summed
    over CPUs (Linux ``/proc/stat``); None elsewhere. Wall-clock timings taken while it
    grows are slowed by other tenants of the host, not by the code."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, AttributeError):
        return None


def _jsonable(obj):
    """Drop private keys ("_...") and objects JSON cannot hold."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` atomically (temp file in the same folder, then rename)."""
    atomic_write_text(path, json.dumps(data, indent=1))


def run(sections=SECTIONS, quick: bool = False, width: float | None = None,
        batch: int | None = None, repeats: int | None = None, arch: str | None = None) -> dict:
    """Run the chosen sections; returns {"machine", "settings", "sections", "targets"}."""
    results, targets = {}, []
    for name in sections:
        module = importlib.import_module(f"benchmarks.{name}")
        kwargs = {"quick": quick}
        if width is not None:
            kwargs["width"] = width
        if arch is not None:
            kwargs["arch"] = arch
        if repeats is not None:
            kwargs["repeats"] = repeats
        if batch is not None and name in ("attribution", "fastcam", "training"):
            kwargs["batch"] = batch
        print(f"\n== {name} ==", flush=True)
        t0, steal0 = time.perf_counter(), steal_seconds()
        out = module.run(**kwargs)
        out = _jsonable(out)
        out["seconds"] = time.perf_counter() - t0
        if steal0 is not None:  # CPU time the host took from this virtual machine meanwhile
            out["steal_seconds"] = steal_seconds() - steal0
        results[name] = out
        for t in out.get("targets", []):
            targets.append({"section": name, **t})
        _print_section(name, out)
    return {"machine": machine_info(), "settings": {"quick": quick, "arch": arch or "resnet18",
            "width": width, "batch": batch,
            "repeats": repeats, "sections": list(sections)}, "sections": results,
            "targets": targets}


def _print_section(name: str, out: dict) -> None:
    timings = out.get("timings", {})
    flat = {}
    for k, v in timings.items():
        if isinstance(v, dict) and "median" in v:
            flat[k] = v
        elif isinstance(v, dict):
            flat.update({f"{k}/{kk}": vv for kk, vv in v.items() if isinstance(vv, dict)})
    if flat:
        width = max(len(k) for k in flat)
        for k, t in flat.items():
            cpu = t.get("cpu_median")
            cpu = f"  cpu {cpu * 1e3:10.2f} ms" if cpu is not None else ""
            print(f"  {k:<{width}}  {t['median'] * 1e3:10.2f} ms  "
                  f"[{t['min'] * 1e3:.2f}-{t['max'] * 1e3:.2f}]{cpu}")
    # rooflines: GFLOP/s of the forwards/steps beside the machine's float32 matmul peak
    roof = {**out.get("roofline", {}),
            **{k: v for k, v in out.get("info", {}).items() if "gflop" in k}}
    if roof:
        print("  roofline: " + ", ".join(f"{k} {v:.3g}" for k, v in roof.items()))
    steal = out.get("steal_seconds")
    cpus = os.cpu_count() or 1
    note = (f"; the host took {steal:.1f} CPU-s (steal, "
            f"{100 * steal / (cpus * out['seconds']):.0f}% of {cpus} CPUs)"
            if steal is not None else "")
    print(f"  ({out['seconds']:.1f} s{note})")


def _merge_partial(path: Path, data: dict, only: list[str], quick: bool) -> dict:
    """A run of some sections (``--only``) replaces just those in an existing results file
    of the same kind (full or quick); each section keeps the machine info and settings of
    the run that produced it."""
    for name in data["sections"]:
        data["sections"][name]["machine"] = data["machine"]
        data["sections"][name]["settings"] = data["settings"]
    if set(only) == set(SECTIONS) or not path.exists():
        return data
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return data
    if old.get("settings", {}).get("quick") != quick:
        return data
    sections = {k: v for k, v in old.get("sections", {}).items() if k not in only}
    sections.update(data["sections"])
    targets = [t for t in old.get("targets", []) if t.get("section") not in only]
    targets += data["targets"]
    order = {name: i for i, name in enumerate(SECTIONS)}
    targets.sort(key=lambda t: order.get(t.get("section"), len(order)))
    return {**data, "settings": {**data["settings"], "sections": sorted(sections, key=order.get)},
            "sections": dict(sorted(sections.items(), key=lambda kv: order.get(kv[0]))),
            "targets": targets}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                   help="sections to run (default: all)")
    p.add_argument("--quick", action="store_true",
                   help="CI-sized run (about a minute): checks that everything runs, no targets")
    p.add_argument("--arch", choices=("resnet18", "mobilenet_v2"),
                   help="model (default resnet18; the metric suite's extrapolation always uses "
                        "the issue's width-0.25 ResNet-18)")
    p.add_argument("--width", type=float, help="model width (default: each section's, 1.0)")
    p.add_argument("--batch", type=int, help="batch size (default: each section's)")
    p.add_argument("--repeats", type=int, help="timed repetitions per operation (median)")
    p.add_argument("--threads", type=int, help="torch threads (default: all cores); printed")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}")
    data = run(args.only, args.quick, args.width, args.batch, args.repeats, args.arch)
    print("\n== targets ==")
    for t in data["targets"]:
        op = ">=" if t.get("at_least") else "<="
        verdict = "PASS" if t.get("passed") else "MISS"
        target = f"(target {op} {t['limit']:g})"
        print(f"{verdict}  [{t['section']}] {t['name']}: {t['ratio']:.3f} {target}")
    if args.quick:
        print("(quick mode: sizes too small for the targets to mean anything)")
    write_json(args.out, _merge_partial(args.out, data, args.only, args.quick))
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
