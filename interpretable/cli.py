"""Command line: ``python -m interpretable train|evaluate|compare ...`` (or ``interpretable``).

``train``: under ``torchrun --nproc_per_node=N -m interpretable train ...`` the same command
trains with DistributedDataParallel. ``evaluate RUN``: the CAM metrics of a trained run on the
test set, resumable, with provenance (:func:`interpretable.metrics.evaluate_run`).
``compare A B ...``: committed results of runs side by side, paired against the first
(:mod:`interpretable.compare`). Bad options print one line (no traceback) and exit with
status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import fields

from interpretable.presets import NEEDS_INIT, PRESETS, preset

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


# The keys of interpretable.metrics.runs.METHOD_NAMES and its DEFAULT_METHODS, spelled out so
# that building the parser (and --help) does not import torch; tests/test_cli.py checks them.
EVALUATE_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "scorecam", "fastcam")
EVALUATE_DEFAULT = "gradcam,gradcam++,scorecam,fastcam"


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
    a("--methods", default=EVALUATE_DEFAULT,
      help=f"comma-separated methods from {', '.join(EVALUATE_METHODS)} (default: "
      f"{EVALUATE_DEFAULT})")
    a("--images", type=_images, default=None, metavar="N|all",
      help="how many test images: 'all' (default) or N, a seeded random sample (sorted)")
    a("--seed", type=_seed, default=0,
      help="seed of the random sample of --images N (default: 0)")
    a("--target", choices=["label", "predicted"], default="label",
      help="the class explained and scored: the true label (default; METHODS.md) or the "
      "model's prediction")
    a("--batch-size", type=_positive_int, default=64, help="images per batch (default: 64)")
    a("--out", default=None, metavar="FILE",
      help="result file, .csv.gz, .csv or .json (default: RUN_DIR/metrics.csv.gz)")
    a("--data-root", default=None, help="folder holding cifar100.npz (default: searched)")
    a("--device", default=None, help="cpu, cuda, cuda:1, mps, ... (default: automatic)")
    a("--no-progress", action="store_true", help="no progress bar")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _device(text: str | None):
    import torch

    if text is None or text.lower() == "auto":
        return None
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"device must be cpu, cuda, cuda:N, mps or auto, got {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={text!r}: CUDA is not available here")
    return device


def evaluate_main(parser: argparse.ArgumentParser, args: argparse.Namespace,
                  argv: Sequence[str]) -> int:
    """``python -m interpretable evaluate ...``: run, then print the summary table."""
    from interpretable.metrics import runs
    from interpretable.models import CheckpointError

    prog = "interpretable evaluate"
    try:
        result = runs.evaluate_run(
            args.source, runs.parse_methods(args.methods), args.images, seed=args.seed,
            target=args.target, batch_size=args.batch_size, out=args.out,
            data_root=args.data_root, device=_device(args.device),
            progress=not args.no_progress,
            command=["python", "-m", "interpretable", *argv])
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        parser.exit(2, f"{prog}: error: {_one_line(exc)}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"{prog}: interrupted; finished batches are saved, run the same "
                    "command again to resume\n")
    p = result.provenance
    print(f"{runs.find_checkpoint(args.source)}: {p['images']} images x {len(p['methods'])} "
          f"methods, target {p['target']} (means in percent; lower is better for AD and Del)")
    print("\n".join(runs.summary_lines(result.table)))
    print(f"rows: {result.out}\nprovenance: {result.provenance_file}")
    return 0


def _add_compare(sub) -> None:
    c = sub.add_parser(
        "compare", help="committed per-image results of runs side by side, paired",
        description="The paper's table of each run's result files (means with 95%% intervals "
        "over images, top-1 from summary.json) and, for every run after the first, the paired "
        "difference against the first on the images both hold, marked better or worse where "
        "its 95%% interval excludes 0.")
    c.add_argument("sources", nargs="+", metavar="RUN_DIR_OR_RESULT_FILE",
                   help="run folders (their metrics.csv.gz and metrics_scorecam.csv.gz) or "
                   "result files; the first is the one the others are compared with")
    c.add_argument("--markdown", action="store_true", help="pipe tables instead of text")


def compare_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``python -m interpretable compare A B ...``: print :func:`interpretable.compare.report`."""
    from interpretable.compare import report

    try:
        print(report(args.sources, markdown=args.markdown))
    except (ValueError, FileNotFoundError) as exc:
        parser.exit(2, f"interpretable compare: error: {_one_line(exc)}\n")
    return 0


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
    a("--width", type=float, default=None, help="channel width multiplier (preset)")
    a("--lam", type=float, default=None,
      help="weight lambda of the alignment loss L_R; 0 = plain cross-entropy (preset: 7.5e-3)")
    a("--loss", choices=["cosine", "mse", "l1"], default=None,
      help="alignment error function between standard and guided gradient (preset: cosine)")
    a("--gradient-of", choices=["logit", "loss"], default=None,
      help="what the standard and the guided gradient differentiate: the true-class logit or "
      "the per-sample cross-entropy (METHODS.md section 2; default logit)")
    a("--lam-warmup", type=float, default=None,
      help="epochs over which lambda ramps linearly from 0 to --lam (default 0: no ramp)")
    a("--init", default=None, metavar="CHECKPOINT",
      help="start from the weights of this checkpoint (fine-tuning: fresh optimizer and "
      "schedule); it must hold the same architecture and width")
    a("--epochs", type=int, default=None, help="number of epochs (preset)")
    a("--batch-size", type=int, default=None,
      help="global batch size, split across DDP ranks (preset: 128)")
    a("--lr", type=float, default=None, help="peak learning rate (preset)")
    a("--momentum", type=float, default=None, help="SGD momentum (preset: 0.9)")
    a("--nesterov", type=_bool, default=None, help="nesterov momentum, true/false (preset)")
    a("--weight-decay", type=float, default=None, help="SGD weight decay (preset: 5e-4)")
    a("--schedule", choices=["step", "onecycle", "cosine"], default=None,
      help="step: warm-up then lr*gamma at milestones (paper); onecycle: warm-up then linear "
      "decay to 0; cosine: warm-up then cosine decay (preset)")
    a("--warmup-epochs", type=float, default=None, help="linear warm-up length in epochs")
    a("--milestones", type=_milestones, default=None,
      help="epochs where the step schedule multiplies lr by gamma, e.g. 60,120,160")
    a("--gamma", type=float, default=None, help="step schedule factor (preset: 0.2)")
    a("--label-smoothing", type=float, default=None, help="cross-entropy label smoothing")
    a("--seed", type=int, default=None, help="seed of initialisation, order and augmentation")
    a("--reg-fraction", type=float, default=None,
      help="regularize a random fraction of each batch (unbiased estimate of L_R at a "
      "fraction of the double-backward cost); 1.0 = the paper")
    a("--detach-guided", type=_bool, default=None,
      help="treat the guided gradient as a constant target (default true)")
    a("--bn-stats", choices=["frozen", "batch"], default=None,
      help="input gradients through train-mode BN: frozen = batch statistics held constant "
      "(as at inference, fast); batch = exact autograd through the statistics (slow)")
    a("--train-per-class", type=_positive_int_or_none, default=None,
      help="train on a balanced subset of this many images per class (none = all)")
    a("--test-per-class", type=_positive_int_or_none, default=None,
      help="evaluate on a balanced test subset of this many images per class (none = all)")
    a("--align-eval-images", type=int, default=None,
      help="test images on which L_R is measured after every epoch")
    a("--amp", choices=["auto", "off", "bf16", "fp16"], default=None,
      help="mixed precision on CUDA (auto: bf16 if supported, else fp16; never on CPU)")
    a("--channels-last", choices=["auto", "on", "off"], default=None,
      help="memory format (auto: channels-last on CPU)")
    a("--final-fp16", type=_bool, default=None,
      help="store final.pt in float16 when the reloaded accuracy is unchanged")
    a("--device", default=None, help="auto, cpu, cuda, cuda:1, ...")
    a("--data-root", default=None, help="folder holding cifar100.npz (default: searched)")
    a("--out", required=True, help="run folder: config.json, log.jsonl, last.pt, final.pt")
    a("--restart", action="store_true", help="ignore an existing checkpoint in --out")
    a("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    _add_evaluate(sub)
    _add_compare(sub)
    return parser


def config_from_args(args: argparse.Namespace):
    """Preset settings, then every option given explicitly."""
    from interpretable.training import TrainConfig

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
