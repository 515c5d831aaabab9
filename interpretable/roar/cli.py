"""Command line of the ROAR / KAR study (METHODS.md section 5).

``python -m interpretable.roar ranks --method M``: compute (or check) the rank file of M.
``python -m interpretable.roar cell --mode roar --method gradcam --fraction 0.5 [--epochs E]
[--out DIR]``: train (resume, or skip) one cell; ``--mode unmodified`` takes no method and no
fraction. ``python -m interpretable.roar table``: the finished cells, the pilot and its choice.
``python -m interpretable.roar reproduce CELL [--out DIR]``: train a finished cell again from
its record; exit 1 when its top-1 differs from the committed one by more than the pilot's
spread.
Bad arguments print one line naming the argument and exit with status 2.

To hang it under another parser (``python -m interpretable roar ...``): call
:func:`add_arguments` on that subcommand's parser and :func:`run` with the parsed namespace.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ._common import CELL_MODES, DEFAULT_CACHE, DEFAULT_CHECKPOINT, DEFAULT_ROOT, METHODS, MODES

__all__ = ["add_arguments", "run", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + error
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _fraction(text: str) -> float:
    try:
        t = float(text)
    except ValueError:
        t = float("nan")
    if not 0 < t < 1:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1, got "
                                         f"{text!r}")
    return t


def _whole(minimum: int):
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = minimum - 1
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got "
                                             f"{text!r}")
        return n
    return parse


def _common_options(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--checkpoint", default=str(DEFAULT_CHECKPOINT),
      help="the explained model (default %(default)s)")
    a("--batch-size", type=_whole(1), default=256, help="images per map batch (default 256)")
    a("--data-root", default=None, help="folder holding cifar100.npz (default: searched)")
    a("--device", default=None, help="cpu, cuda, cuda:1, mps, ... (default: automatic)")
    a("--no-progress", action="store_true", help="no progress bars")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``ranks``, ``cell`` and ``table`` subcommands to ``parser`` (dest
    ``roar_command``); :func:`run` executes the parsed namespace."""
    sub = parser.add_subparsers(dest="roar_command", required=True,
                                metavar="{ranks,cell,table,reproduce}")
    r = sub.add_parser("ranks", help="compute or check one method's rank file",
                       description="Rank every pixel of every CIFAR-100 training and test "
                       "image by the method's map of the true class (METHODS.md section 5); "
                       "one batched pass, one uint16 file per method.")
    r.add_argument("--method", required=True, choices=METHODS)
    r.add_argument("--out", default=None, metavar="FILE",
                   help=f"rank file (default {DEFAULT_CACHE}/METHOD.npy)")
    r.add_argument("--seed", type=_whole(0), default=0, help="seed of the random map")
    _common_options(r)
    c = sub.add_parser("cell", help="train (resume, skip) one ROAR / KAR cell",
                       description="Modify both splits by the method's ranks, train a fresh "
                       "network with the fixed recipe, report top-1 on the modified test set.")
    c.add_argument("--mode", required=True, choices=CELL_MODES)
    c.add_argument("--method", choices=METHODS, default=None)
    c.add_argument("--fraction", type=_fraction, default=None, help="t, in (0, 1)")
    c.add_argument("--epochs", type=_whole(1), default=None,
                   help="default: the pilot rule's choice (interpretable.roar.plan)")
    c.add_argument("--seed", type=_whole(0), default=0, help="training seed (default 0)")
    c.add_argument("--out", default=None, metavar="DIR",
                   help="the cell folder (default ROOT/<mode>_<method>_t<fraction>)")
    c.add_argument("--root", default=str(DEFAULT_ROOT),
                   help="study folder: pilot runs, default cache (default %(default)s)")
    c.add_argument("--cache", default=None, help="rank files (default ROOT/cache)")
    _common_options(c)
    p = sub.add_parser("reproduce", help="train a finished cell again and compare its top-1",
                       description="Train a finished cell again from its provenance record "
                       "(same mode, method, fraction, epochs, seed, recipe and ranks) and "
                       "compare the test top-1 with the committed one; exit status 1 when they "
                       "differ by more than the spread of the pilot's seeds.")
    p.add_argument("cell", metavar="CELL", help="the finished cell's folder")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where to train it again (default ROOT/reproduce/<cell name>)")
    p.add_argument("--root", default=str(DEFAULT_ROOT),
                   help="study folder: the pilot runs (default %(default)s)")
    p.add_argument("--cache", default=None, help="rank files (default ROOT/cache)")
    _common_options(p)
    t = sub.add_parser("table", help="the finished cells, the pilot runs and the epoch choice")
    t.add_argument("--root", default=str(DEFAULT_ROOT), help="study folder (default %(default)s)")
    t.add_argument("--json", action="store_true", help="rows as JSON")


def _check_cell_args(args: argparse.Namespace) -> None:
    if args.mode in MODES:
        for name in ("method", "fraction"):
            if getattr(args, name) is None:
                raise ValueError(f"--{name} is required with --mode {args.mode}")
    else:
        for name in ("method", "fraction"):
            if getattr(args, name) is not None:
                raise ValueError(f"--{name} is not used with --mode {args.mode}")


def run(args: argparse.Namespace) -> int:
    """Execute a namespace parsed with :func:`add_arguments`; 0 on success, 2 on a bad
    argument or input (one line on stderr), 130 on Ctrl-C (the work done is kept)."""
    from interpretable.checks import one_line, parse_device
    from interpretable.models import CheckpointError

    command = args.roar_command
    try:
        if command == "table":
            from .plan import table, table_lines

            print(json.dumps(table(args.root), indent=2) if args.json
                  else "\n".join(table_lines(args.root)))
            return 0
        if command == "ranks":
            from .ranking import rank_file

            out, info = rank_file(args.method, checkpoint=args.checkpoint, path=args.out,
                                  cache=DEFAULT_CACHE, seed=args.seed, data_root=args.data_root,
                                  batch_size=args.batch_size, device=parse_device(args.device),
                                  progress=not args.no_progress)
            print(f"{args.method}: ranks {out.shape[0]} x {out.shape[1]}, sha256 "
                  f"{info['sha256']} ({info.get('seconds', '?')} s)")
            return 0
        device = parse_device(args.device)
        if command == "reproduce":
            from .cells import reproduce_cell

            r = reproduce_cell(args.cell, out=args.out, root=args.root, cache=args.cache,
                               checkpoint=args.checkpoint, data_root=args.data_root,
                               device="auto" if device is None else str(device),
                               progress=not args.no_progress, batch_size=args.batch_size)
            verdict = "reproduced" if r["holds"] else "NOT reproduced"
            print(f"{verdict}: {r['cell']}: top-1 {r['reproduced']:.2f}% against "
                  f"{r['committed']:.2f}% committed ({r['difference']:+.2f} points; the "
                  f"pilot's seeds spread {r['spread']:.2f})"
                  + ("; bit-identical" if r["identical"] else ""))
            return 0 if r["holds"] else 1
        _check_cell_args(args)
        from .cells import run_cell

        p = run_cell(args.mode, args.method, args.fraction, root=args.root, epochs=args.epochs,
                     seed=args.seed, out=args.out, cache=args.cache, checkpoint=args.checkpoint,
                     data_root=args.data_root, device="auto" if device is None else str(device),
                     progress=not args.no_progress, batch_size=args.batch_size)
        state = "already finished" if p.get("skipped") else "finished"
        print(f"{state}: {p['mode']} {p['method'] or ''} t={p['fraction']} epochs {p['epochs']} "
              f"seed {p['seed']}: test top-1 {p['test_acc']:.2f}%, top-5 {p['test_top5']:.2f}%")
        return 0
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f"roar {command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"roar {command}: interrupted; run the same command again to resume",
              file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m interpretable.roar ...``: parse ``argv`` and :func:`run` it."""
    parser = _Parser(prog="python -m interpretable.roar",
                     description="ROAR / KAR retraining (METHODS.md section 5)")
    add_arguments(parser)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    return run(args)
