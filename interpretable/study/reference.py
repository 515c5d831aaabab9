"""The reference runs committed with the repository, as the book reads them.

Models trained with the ``cpu`` preset on the full CIFAR-100 training set (see
``reference/README.md`` for the exact commands): ResNet-18 and MobileNet-V2, each with
lambda = 0 (baseline), with the paper's lambda (regularized) and with the lambda* the sweep
picked (aligned, with a lambda warm-up; :mod:`.sweep`). A run that has not finished yet is
read from its last completed epoch, and ``meta["epoch"]`` says which. The sweep runs
themselves live in ``reference/sweep/`` (:mod:`interpretable.study.sweep`). Every function
takes ``root=``, the folder of the runs (default :func:`find_root`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from ..models import load_checkpoint, read_checkpoint

__all__ = ["RUNS", "CHECKOUT", "find_root", "run_dir", "available", "load", "log", "meta",
           "describe", "describe_line"]

RUNS = ("resnet18_baseline", "resnet18_regularized", "mobilenet_v2_baseline",
        "mobilenet_v2_regularized", "resnet18_aligned", "mobilenet_v2_aligned")
_FILES = ("final.pt", "last.pt")
#: The ``reference/`` folder of the repository this package was installed from (editable).
CHECKOUT = Path(__file__).resolve().parents[2] / "reference"


def find_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the reference runs: ``root`` if given, else
    ``$INTERPRETABLE_REFERENCE``, else ``reference/`` of the repository checkout this package
    runs from. FileNotFoundError saying where it looked and what to do otherwise (an
    installed wheel carries no runs)."""
    tried = []
    env = os.environ.get("INTERPRETABLE_REFERENCE")
    for label, candidate in (("root=", root), ("$INTERPRETABLE_REFERENCE", env),
                             ("the repository checkout", CHECKOUT)):
        if candidate is None or str(candidate) == "":
            continue
        path = Path(candidate).expanduser()
        if path.is_dir():
            return path
        tried.append(f"{label} {path}")
        if label == "root=":  # an explicit folder that is not there is an error by itself
            break
    raise FileNotFoundError(
        f"no reference runs: looked at {'; '.join(tried) or 'nothing'}. The runs are committed "
        "in the repository's reference/ folder, not in the installed package: clone the "
        "repository and `pip install -e .` there, or set INTERPRETABLE_REFERENCE to a copy of "
        "reference/, or pass root= (train a run with the commands in reference/README.md)")


def run_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of reference run ``name`` (one of :data:`RUNS`) below :func:`find_root`."""
    if name not in RUNS:
        raise ValueError(f"name must be one of {RUNS}, got {name!r}")
    return find_root(root) / name


def _checkpoint(name: str, root=None) -> Path:
    folder = run_dir(name, root)
    for f in _FILES:
        if (folder / f).is_file():
            return folder / f
    raise FileNotFoundError(
        f"reference run {name!r} has no checkpoint in {folder} (looked for {', '.join(_FILES)}); "
        "train it with the command in reference/README.md, or set INTERPRETABLE_REFERENCE"
    )


def available(root: str | os.PathLike | None = None) -> list[str]:
    """The reference runs that have a checkpoint."""
    return [n for n in RUNS if any((run_dir(n, root) / f).is_file() for f in _FILES)]


def load(name: str, device=None, root: str | os.PathLike | None = None
         ) -> tuple[nn.Module, dict[str, Any]]:
    """Load reference run ``name`` in eval mode on ``device`` (default CPU): ``(model, meta)``."""
    return load_checkpoint(_checkpoint(name, root), map_location=device or "cpu")


def meta(name: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The checkpoint metadata of run ``name`` (arch, width, settings, accuracy, epoch)."""
    return read_checkpoint(_checkpoint(name, root))["meta"]


def log(name: str, root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The per-epoch training log of run ``name`` (one dict per completed epoch)."""
    path = run_dir(name, root) / "log.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"reference run {name!r} has no log at {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def describe(name: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """What reference run ``name`` is and how far it got, without loading its weights.

    Reads ``config.json`` (the planned settings) and ``log.jsonl`` (one record per completed
    epoch); a finished run's ``final.pt`` meta takes precedence, and a run with neither file
    falls back to its checkpoint. Returns a dict with ``name``, ``arch``, ``width``, ``lam``,
    ``epochs`` (planned), ``epoch`` (completed), ``finished`` (``final.pt`` exists),
    ``state`` ("finished" / "in progress"), ``top1``, ``top5`` and ``test_align`` (of the
    last completed epoch, or None), ``hours`` (wall-clock training time in the log, or None),
    ``note`` and ``text``, a one-line summary (also :func:`describe_line`).
    Raises FileNotFoundError if the run has no checkpoint.
    """
    ckpt = _checkpoint(name, root)  # validates the name; a run without weights is not described
    folder = ckpt.parent
    finished = ckpt.name == "final.pt"
    config = _read_config(folder)
    history = log(name, root) if (folder / "log.jsonl").is_file() else []
    meta_: dict[str, Any] = {}
    if finished or not config or not history:
        state = read_checkpoint(ckpt)
        meta_ = state["meta"]
        history = history or list(meta_.get("history") or state.get("extra", {}).get("history")
                                  or [])
        config = config or dict(meta_.get("training") or {})
    last = history[-1] if history else {}

    def pick(key: str, *sources: dict[str, Any]) -> Any:
        return next((s[key] for s in sources if s.get(key) is not None), None)

    seconds = [r["seconds"] for r in history if isinstance(r.get("seconds"), (int, float))]
    info: dict[str, Any] = {
        "name": name,
        "arch": pick("arch", meta_, config),
        "width": pick("width", meta_, config),
        "lam": pick("lam", config),
        "epochs": pick("epochs", config),
        "epoch": pick("epoch", meta_, last),
        "finished": finished,
        "state": "finished" if finished else "in progress",
        "top1": pick("test_acc", meta_, last),
        "top5": pick("test_top5", meta_, last),
        "test_align": pick("test_align", meta_, last),
        "hours": sum(seconds) / 3600 if seconds else None,
        "note": meta_.get("note", ""),
    }
    info["text"] = _line(info)
    return info


def _line(i: dict[str, Any]) -> str:
    def pct(v: Any) -> str:
        return f"{v:.2f}%" if isinstance(v, (int, float)) else "not recorded"

    lam = "?" if i["lam"] is None else f"{i['lam']:g}"
    state = "finished" if i["finished"] else "IN PROGRESS"
    text = (f"{i['name']}: {i['arch']} width {i['width']}, lambda {lam}, epoch "
            f"{'?' if i['epoch'] is None else i['epoch']} of "
            f"{'?' if i['epochs'] is None else i['epochs']} ({state}), "
            f"test top-1 {pct(i['top1'])}, top-5 {pct(i['top5'])}")
    return text + (f"  [{i['note']}]" if i["note"] else "")


def describe_line(name: str, root: str | os.PathLike | None = None) -> str:
    """One line about run ``name``: architecture, lambda, epochs done/planned, state, accuracy."""
    return describe(name, root)["text"]
