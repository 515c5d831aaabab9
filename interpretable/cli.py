"""Command line: ``python -m interpretable train|evaluate|measure|compare|roar ...``.

``train``: under ``torchrun --nproc_per_node=N -m interpretable train ...`` the same command
trains with DistributedDataParallel. ``evaluate RUN``: the CAM metrics of a trained run on the
test set, resumable, with provenance (:func:`interpretable.metrics.evaluate_run`).
``measure RUN``: the per-image gradient alignment of a finished run, written to
``RUN/alignment.json`` (:mod:`interpretable.study.alignment`). ``compare A B ...``: committed
results of runs side by side, paired against the first (:mod:`interpretable.compare`). Bad
options print one line (no traceback) and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from interpretable.attribution import CAM_METHODS, DEFAULT_CAMS
from interpretable.roar import cli as roar_cli
from interpretable.training.presets import NEEDS_INIT, PRESETS, preset

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + error
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _bool(text: str) -> bool:
    t = text.lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _milestones(text: str) -> list[int]:
    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated epochs like 60,120,160, got {text!r}") from None


def _positive_int_or_none(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or none, got {text!r}") from None


def _whole(text: str, minimum: int, expected: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = minimum - 1
    if n < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return n


def _images(text: str) -> int | None:
    if text.strip().lower() == "all":
        return None
    return _whole(text, 1, "'all' or a positive whole number")


def _positive_int(text: str) -> int:
    return _whole(text, 1, "a positive whole number")


def _seed(text: str) -> int:
    return _whole(text, 0, "a whole number >= 0")


def _add_evaluate(sub) -> None:
    e = sub.add_parser(
        "evaluate", help="score CAM methods of a trained run on the CIFAR-100 test set",
        description="Score CAM methods of a trained run on the CIFAR-100 test set with the "
        "metrics of METHODS.md section 5 (per image: AD, AG, AI, insertion, deletion). Writes "
        "one row per image and method to --out, after every batch; re-running the same "
        "command resumes where an interrupted run stopped and gives the same rows. When done "
        "it writes OUT.provenance.json (checkpoint sha256, versions, git commit, command, "
        "settings, time) and prints the mean of each metric per method.")
    a = e.add_argument
    a("source", metavar="RUN_DIR_OR_CHECKPOINT",
      help="a run folder (uses final.pt, else last.pt) or a checkpoint file")
    # the registry imports no torch, so building the parser (and --help) stays fast
    a("--methods", default=",".join(DEFAULT_CAMS),
      help=f"comma-separated methods from {', '.join(CAM_METHODS)} (default: "
      f"{','.join(DEFAULT_CAMS)})")
    a("--images", type=_images, default=None, metavar="N|all",
      help="how many test images: 'all' (default) or N, a seeded random sample (sorted)")
    a("--seed", type=_seed, default=0,
      help="seed of the random sample of --images N (default: 0)")
    a("--target", choices=["label", "predicted"], default="label",
      help="the class explained and scored: the true label (default; METHODS.md) or the "
      "model's prediction")
    a("--batch-size", type=_positive_int, default=64, help="images per batch (default: 64)")
    # the conventions come from interpretable.metrics.definitions, which imports no torch
    from interpretable.metrics.definitions import CONVENTIONS, SUBSTRATES

    ours, authors = CONVENTIONS["ours"], CONVENTIONS["authors"]
    a("--conventions", choices=list(CONVENTIONS), default="ours",
      help="insertion/deletion conventions (METHODS.md section 5): ours (default: deletion to "
      f"black, insertion blur {ours.blur_kernel}x{ours.blur_kernel} sigma {ours.blur_sigma:g}, "
      "one row of pixels per step) or authors (the paper authors' code: deletion to the "
      f"mean colour, blur {authors.blur_kernel}x{authors.blur_kernel} sigma "
      f"{authors.blur_sigma:g}, {authors.step_rows} rows per step)")
    a("--substrate", choices=list(SUBSTRATES), default=None,
      help="override the deletion substrate: black, mean (colour of the data set) or blur "
      "(the insertion blur)")
    a("--blur-kernel", type=_positive_int, default=None, metavar="K",
      help="override the insertion blur's kernel size (odd)")
    a("--blur-sigma", type=_positive_float, default=None, metavar="S",
      help="override the insertion blur's sigma (pixels)")
    a("--step", type=_positive_int, default=None, metavar="PIXELS",
      help="override the pixels changed per insertion/deletion step (must divide H*W)")
    a("--out", default=None, metavar="FILE",
      help="result file, .csv.gz, .csv or .json (default: RUN_DIR/metrics.csv.gz; "
      "RUN_DIR/metrics_authors.csv.gz with --conventions authors, "
      "RUN_DIR/metrics_custom.csv.gz with other overrides)")
    a("--data-root", default=None, help="folder holding cifar100.npz (default: searched)")
    a("--device", default=None, help="cpu, cuda, cuda:1, mps, ... (default: automatic)")
    a("--no-progress", action="store_true", help="no progress bar")


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def evaluate_main(parser: argparse.ArgumentParser, args: argparse.Namespace,
                  argv: Sequence[str]) -> int:
    """``python -m interpretable evaluate ...``: run, then print the summary table."""
    from interpretable.checks import one_line, parse_device
    from interpretable.metrics import evaluate_run, resolve_conventions
    from interpretable.models import CheckpointError
    from interpretable.tables import lower_is_better, summary_lines

    prog = "interpretable evaluate"
    try:
        conventions = resolve_conventions(args.conventions, substrate=args.substrate,
                                          blur_kernel=args.blur_kernel,
                                          blur_sigma=args.blur_sigma)
        result = evaluate_run(
            args.source, args.methods, args.images, seed=args.seed,
            target=args.target, batch_size=args.batch_size, step=args.step,
            conventions=conventions, out=args.out,
            data_root=args.data_root, device=parse_device(args.device),
            progress=not args.no_progress,
            command=["python", "-m", "interpretable", *argv])
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        parser.exit(2, f"{prog}: error: {one_line(exc)}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"{prog}: interrupted; finished batches are saved, run the same "
                    "command again to resume\n")
    p = result.provenance
    print(f"{result.checkpoint}: {p['images']} images x {len(p['methods'])} methods, target "
          f"{p['target']}, conventions {p.get('conventions', 'ours')} (means in percent; lower "
          f"is better for {lower_is_better()})")
    print("\n".join(summary_lines(result.table)))
    print(f"rows: {result.out}\nprovenance: {result.provenance_file}")
    return 0


def _add_measure(sub) -> None:
    m = sub.add_parser(
        "measure", help="per-image gradient alignment of a finished run (RUN/alignment.json)",
        description="Re-measure a finished run from RUN/final.pt: per-image cos(g, g~) of the "
        "logit and of the loss gradient on the first N test images (METHODS.md section 2), "
        "their means with 95%% intervals, and provenance, written atomically to "
        "RUN/alignment.json.")
    m.add_argument("run", metavar="RUN_DIR", help="a finished run folder (with final.pt)")
    m.add_argument("--images", type=_positive_int, default=2000,
                   help="the first N test images (default: 2000)")
    m.add_argument("--out", default=None, metavar="FILE",
                   help="where to write (default: RUN_DIR/alignment.json)")
    m.add_argument("--data-root", default=None, help="folder holding cifar100.npz")
    m.add_argument("--device", default=None, help="cpu, cuda, ... (default: automatic)")
    m.add_argument("--verify", action="store_true",
                   help="write nothing: re-measure RUN_DIR/summary.json (top-1 and top-5 on all "
                   "test images, mean cos(g, g~)) and a seeded sample of RUN_DIR/alignment.json "
                   "from final.pt and report whether they agree (exit status 1 if not)")


def _verify_run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``measure RUN --verify``: the committed summary and alignment.json against final.pt."""
    from pathlib import Path

    from interpretable.checks import parse_device
    from interpretable.study import alignment, sweep

    device, folder, ok = parse_device(args.device), Path(args.run), True
    if not (folder / "summary.json").is_file():
        parser.exit(2, f"interpretable measure: error: {folder} holds no summary.json (is the "
                    f"run finished?)\n")
    run = sweep.verify_run(folder, device=device, data_root=args.data_root)
    for k, d in run["differences"].items():
        print(f"{folder}: summary.json {k}: |re-measured - committed| = {d:.2g}")
    print(f"{folder}: summary.json {'reproduced' if run['ok'] else 'NOT reproduced'}")
    ok &= run["ok"]
    if alignment.read(folder) is not None:
        a = alignment.verify(folder, device=device, data_root=args.data_root)
        print(f"{folder}: {alignment.FILE} images {a['images']}: largest difference "
              f"{a['max_difference']:.2g}; " + ("reproduced" if a["ok"] else
                                                "NOT reproduced: " + "; ".join(a["problems"])))
        ok &= a["ok"]
    return 0 if ok else 1


def measure_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``python -m interpretable measure RUN``: write and print RUN/alignment.json's means
    (``--verify``: re-measure what the run committed instead, write nothing)."""
    from interpretable.checks import one_line, parse_device
    from interpretable.models import CheckpointError
    from interpretable.study import alignment

    try:
        if args.verify:
            return _verify_run(parser, args)
        record = alignment.measure(args.run, args.images, device=parse_device(args.device),
                                   data_root=args.data_root, out=args.out)
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        parser.exit(2, f"interpretable measure: error: {one_line(exc)}\n")
    for kind, s in record["summary"].items():
        print(f"{args.run}: cos(g, g~) of the {kind} gradient on {record['images']} test "
              f"images: {s['mean']:.4f} [{s['low']:.4f}, {s['high']:.4f}]")
    return 0


def _add_compare(sub) -> None:
    about = ("The paper's table of each run's result files (means with 95%% intervals over "
             "images, top-1 from summary.json) and, for every run after the first, the paired "
             "difference against the first on the images both hold, marked better or worse "
             "where its 95%% interval excludes 0.")
    c = sub.add_parser("compare", description=about,
                       help="committed per-image results of runs side by side, paired")
    c.add_argument("sources", nargs="+", metavar="RUN_DIR_OR_RESULT_FILE",
                   help="run folders (their metrics.csv.gz and metrics_scorecam.csv.gz) or "
                   "result files; the first is the one the others are compared with")
    c.add_argument("--markdown", action="store_true", help="pipe tables instead of text")


def compare_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``python -m interpretable compare A B ...``: print :func:`interpretable.compare.report`."""
    from interpretable.checks import one_line
    from interpretable.compare import report

    try:
        print(report(args.sources, markdown=args.markdown))
    except (ValueError, FileNotFoundError) as exc:
        parser.exit(2, f"interpretable compare: error: {one_line(exc)}\n")
    return 0


# The recipe options of ``train``: (flag, type or choices or other add_argument keywords,
# help). Each is None unless given,
# and then overrides the preset (config_from_args).
_RECIPE: tuple[tuple[str, Any, str], ...] = (
    ("--width", float, "channel width multiplier (preset)"),
    ("--lam", float, "weight lambda of the alignment loss L_R; 0 = plain cross-entropy "
     "(preset: 7.5e-3)"),
    ("--loss", ["cosine", "mse", "l1"], "alignment error function between standard and "
     "guided gradient (preset: cosine)"),
    ("--gradient-of", ["logit", "loss"], "what the standard and the guided gradient "
     "differentiate: the true-class logit or the per-sample cross-entropy (METHODS.md "
     "section 2; default logit)"),
    ("--lam-warmup", float, "epochs over which lambda ramps linearly from 0 to --lam "
     "(default 0: no ramp)"),
    ("--init", {"metavar": "CHECKPOINT"}, "start from the weights of this checkpoint "
     "(fine-tuning: fresh optimizer and schedule); it must hold the same architecture and "
     "width"),
    ("--epochs", int, "number of epochs (preset)"),
    ("--batch-size", int, "global batch size, split across DDP ranks (preset: 128)"),
    ("--lr", float, "peak learning rate (preset)"),
    ("--momentum", float, "SGD momentum (preset: 0.9)"),
    ("--nesterov", _bool, "nesterov momentum, true/false (preset)"),
    ("--weight-decay", float, "SGD weight decay (preset: 5e-4)"),
    ("--schedule", ["step", "onecycle", "cosine"], "step: warm-up then lr*gamma at "
     "milestones (paper); onecycle: warm-up then linear decay to 0; cosine: warm-up then "
     "cosine decay (preset)"),
    ("--warmup-epochs", float, "linear warm-up length in epochs"),
    ("--milestones", _milestones, "epochs where the step schedule multiplies lr by gamma, "
     "e.g. 60,120,160"),
    ("--gamma", float, "step schedule factor (preset: 0.2)"),
    ("--label-smoothing", float, "cross-entropy label smoothing"),
    ("--seed", int, "seed of initialisation, order and augmentation"),
    ("--reg-fraction", float, "regularize a random fraction of each batch (unbiased "
     "estimate of L_R at a fraction of the double-backward cost); 1.0 = the paper"),
    ("--detach-guided", _bool, "treat the guided gradient as a constant target (default "
     "true)"),
    ("--bn-stats", ["frozen", "batch"], "input gradients through train-mode BN: frozen = "
     "batch statistics held constant (as at inference, fast); batch = exact autograd "
     "through the statistics (slow)"),
    ("--train-per-class", _positive_int_or_none, "train on a balanced subset of this many "
     "images per class (none = all)"),
    ("--test-per-class", _positive_int_or_none, "evaluate on a balanced test subset of this "
     "many images per class (none = all)"),
    ("--align-eval-images", int, "test images on which L_R is measured after every epoch"),
    ("--amp", ["auto", "off", "bf16", "fp16"], "mixed precision on CUDA (auto: bf16 if "
     "supported, else fp16; never on CPU)"),
    ("--channels-last", ["auto", "on", "off"], "memory format (auto: channels-last on CPU)"),
    ("--final-fp16", _bool, "store final.pt in float16 when the reloaded accuracy is "
     "unchanged"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="interpretable",
                     description="interpretable gradients: training and evaluation")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser(
        "train", help="train a CIFAR-100 model with the gradient-alignment regularizer",
        description="Train a CIFAR-100 model with L = CE + lam * L_R (METHODS.md section 2). "
        "A preset fills in the recipe; any option given explicitly overrides it. Re-running "
        "the same command resumes from OUT/last.pt. Under torchrun the run uses "
        "DistributedDataParallel (NCCL on GPUs, gloo on CPU).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = t.add_argument
    a("--preset", choices=sorted(PRESETS), default="paper",
      help="paper: METHODS.md recipe, full width, 200 epochs (GPU); cpu: 20 epochs, narrow "
      "nets, ~2 h for all four reference models on 2 CPU cores; finetune: 2 epochs from "
      "--init, the lambda sweep's schedule; ci: seconds, tiny subset")
    a("--arch", choices=["resnet18", "mobilenet_v2"], default="resnet18",
      help="CIFAR architecture")
    for flag, kind, text in _RECIPE:  # each overrides its preset's value when given
        kw = (kind if isinstance(kind, dict) else {"choices": kind} if isinstance(kind, list)
              else {"type": kind})
        a(flag, default=None, help=text, **kw)
    a("--device", default=None, help="auto, cpu, cuda, cuda:1, ...")
    a("--data-root", default=None, help="folder holding cifar100.npz (default: searched)")
    a("--out", required=True, help="run folder: config.json, log.jsonl, last.pt, final.pt")
    a("--restart", action="store_true", help="ignore an existing checkpoint in --out")
    a("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    _add_evaluate(sub)
    _add_measure(sub)
    _add_compare(sub)
    roar_cli.add_arguments(sub.add_parser(
        "roar", help="ROAR / KAR: retrain on images with the most salient pixels removed or kept",
        description="ROAR / KAR retraining (METHODS.md section 5): rank files, one cell, the "
        "table of finished cells."))
    return parser


def config_from_args(args: argparse.Namespace):
    """Preset settings, then every option given explicitly."""
    from interpretable.training.config import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    settings = preset(args.preset, args.arch)
    for name in names:
        v = getattr(args, name, None)
        if v is not None and name not in ("restart", "progress"):
            settings[name] = v
    settings["arch"] = args.arch
    if args.preset in NEEDS_INIT and not settings.get("init"):
        raise ValueError(f"preset {args.preset!r} fine-tunes a trained model: give --init "
                         "CHECKPOINT (for example reference/resnet18_baseline/final.pt)")
    settings["restart"] = bool(args.restart)
    settings["progress"] = not args.no_progress
    return TrainConfig(**settings).validate()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.command == "evaluate":
        return evaluate_main(parser, args, argv)
    if args.command == "compare":
        return compare_main(parser, args)
    if args.command == "measure":
        return measure_main(parser, args)
    if args.command == "roar":
        return roar_cli.run(args)
    if args.command == "train":
        try:
            cfg = config_from_args(args)
        except ValueError as exc:
            parser.exit(2, f"interpretable train: error: {exc}\n")
        from interpretable.models import CheckpointError
        from interpretable.training import train

        try:
            result = train(cfg)
        except (ValueError, CheckpointError, FileNotFoundError) as exc:
            parser.exit(2, f"interpretable train: error: {exc}\n")
        if result.summary and int(__import__("os").environ.get("RANK", "0")) == 0:
            print(json.dumps({k: v for k, v in result.summary.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
