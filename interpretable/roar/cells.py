"""One ROAR / KAR cell: modify both splits, train a fresh network, record what was done.

METHODS.md section 5 ("ROAR / KAR"). A cell ``(mode, method, fraction)`` ranks every training
and test image by ``method`` (:mod:`interpretable.roar.ranking`), replaces the top-t pixels
(ROAR) or all other pixels (KAR) by the training set's mean colour
(:mod:`interpretable.roar.images`), trains a fresh network on the modified training set with
the one fixed recipe (:mod:`interpretable.roar.plan`) and reports its top-1 / top-5 on the
modified test set. Mode ``unmodified`` trains the same recipe on the original images.

Files in the cell folder: what :func:`interpretable.training.train` writes (``config.json``,
``log.jsonl``, ``summary.json`` with ``test_acc`` / ``test_top5``, ``final.pt``, float16
weights, 1.4 MB, not needed for the table and not committed; ``last.pt`` while training),
then ``provenance.json`` (written last: its presence marks a finished cell), after which
``last.pt`` (optimizer state, only needed to resume) is deleted. A finished cell is skipped;
an unfinished one resumes from ``last.pt`` (the training loop re-seeds every epoch, so a
resumed cell ends bit for bit like an uninterrupted one).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interpretable import data as itp_data
from interpretable._io import atomic_open
from interpretable.training import TrainConfig, train

from ._common import (
    CELL_MODES,
    DEFAULT_CHECKPOINT,
    DEFAULT_ROOT,
    METHODS,
    TEST_METHODS,
    check_fraction,
    check_method,
    check_mode,
    git_info,
    now_utc,
    read_json,
    top_count,
    write_json,
)
from .images import modified, train_mean
from .plan import CELL_FORMAT, cell_dir, chosen_epochs, pilot_dir, recipe
from .ranking import data_fingerprint, rank_file

__all__ = ["run_cell", "reproduce_cell", "REPRODUCTION_FORMAT"]

#: ``format`` of a reproduction record (``reproduction.json``).
REPRODUCTION_FORMAT = "interpretable-roar-reproduction-v1"

#: Files of a finished run copied when the unmodified cell reuses the pilot's run.
_COPIED = ("config.json", "log.jsonl", "summary.json", "final.pt")


def _check_cell(mode: Any, method: Any, fraction: Any,
                given_ranks: bool) -> tuple[str, str | None, float | None]:
    mode = check_mode(mode, CELL_MODES)
    if mode == "unmodified":
        if method is not None or fraction is not None:
            raise ValueError("method and fraction must not be given with mode 'unmodified'")
        return mode, None, None
    allowed = METHODS + TEST_METHODS if given_ranks else METHODS
    if method in TEST_METHODS and not given_ranks:
        raise ValueError(f"method {method!r} is for tests only: it needs rank_arrays")
    return mode, check_method(method, allowed), check_fraction(fraction)


def _differences(done: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """What differs between a finished cell's record and this one's (recipe settings added
    to TrainConfig after the cell was trained count as their defaults, as in the loop)."""
    defaults = TrainConfig().math_settings()
    diff = [k for k in ("mode", "method", "fraction", "epochs", "seed") if done.get(k) != mine[k]]
    saved = done.get("recipe") or {}
    return diff + [f"recipe.{k}" for k, v in mine["recipe"].items()
                   if saved.get(k, defaults.get(k)) != v]


def _settings(epochs: int, seed: int, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The TrainConfig settings of a cell: the recipe, then the caller's overrides (tests)."""
    return {**recipe(epochs, seed), **(overrides or {})}


def _array_sha(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def _copy_run(source: Path, out: Path) -> None:
    """Copy a finished run's files (atomically each) from ``source`` into ``out``."""
    for name in _COPIED:
        if (source / name).is_file():
            with open(source / name, "rb") as src, atomic_open(out / name, "wb") as dst:
                shutil.copyfileobj(src, dst)


def run_cell(mode: str, method: str | None = None, fraction: float | None = None,
             root: str | os.PathLike = DEFAULT_ROOT, epochs: int | None = None, *,
             seed: int = 0, out: str | os.PathLike | None = None,
             cache: str | os.PathLike | None = None,
             checkpoint: str | os.PathLike = DEFAULT_CHECKPOINT, rank_seed: int = 0,
             data_root: str | os.PathLike | None = None, device: str = "auto",
             progress: bool = False, batch_size: int = 256,
             overrides: dict[str, Any] | None = None, datasets: tuple | None = None,
             rank_arrays: tuple[np.ndarray, np.ndarray] | None = None,
             reuse_pilot: bool = True) -> dict[str, Any]:
    """Train (or resume, or skip) one cell and return its provenance record.

    Args:
        mode: ``"roar"``, ``"kar"`` or ``"unmodified"`` (then no method and no fraction).
        method: one of :data:`interpretable.roar.METHODS` (``"oracle"`` with rank_arrays).
        fraction: t, strictly between 0 and 1.
        root: the study folder (pilot runs, default cache); epochs: default the pilot rule's
            choice (:func:`interpretable.roar.chosen_epochs`; a ValueError while undecided).
        seed: the training seed; out: the cell folder (default :func:`cell_dir`).
        cache, checkpoint, rank_seed, batch_size: the rank file (default cache
            ``root/cache``, the explained checkpoint, the random map's seed, batch size of the
            maps); see :func:`interpretable.roar.rank_file`.
        data_root, device, progress: as for training (CIFAR-100 folder, ``auto``, bars).
        overrides: TrainConfig settings replacing the recipe's (tests: tiny networks).
        datasets: ``(train, test)`` CIFAR100s instead of CIFAR-100 (tests).
        rank_arrays: ``(train ranks (N_train, H*W), test ranks (N_test, H*W))`` instead of
            the rank file (tests; the method is then only a label).
        reuse_pilot: mode ``unmodified`` copies the pilot's finished run of the same recipe
            instead of training it again (False: train, as a reproduction must).

    Returns:
        The provenance dict (also in ``out/provenance.json``): mode, method, fraction,
        epochs, seed, ``test_acc`` / ``test_top5`` (modified test set, %), pixels replaced,
        fill colour, rank-file and explained-checkpoint sha256, recipe, git, time, ...
    """
    mode, method, fraction = _check_cell(mode, method, fraction, rank_arrays is not None)
    if epochs is None:
        epochs = chosen_epochs(root)
        if epochs is None:
            raise ValueError(f"epochs not given and the pilot below {root} has not chosen them "
                             "yet (interpretable.roar.plan: the pilot rule)")
    settings = _settings(epochs, seed, overrides)
    out = Path(out) if out is not None else cell_dir(root, mode, method, fraction)
    cfg = TrainConfig(**{**settings, "out": str(out), "device": device, "progress": progress,
                         "data_root": None if data_root is None else str(data_root)}).validate()
    mine = {"mode": mode, "method": method, "fraction": fraction, "epochs": epochs,
            "seed": seed, "recipe": cfg.math_settings()}
    done = read_json(out / "provenance.json")
    if done is not None:
        diff = _differences(done, mine)
        if diff:
            raise ValueError(f"out={str(out)!r} holds another finished cell (differs in "
                             f"{', '.join(diff)}); use another --out")
        (out / "last.pt").unlink(missing_ok=True)
        return {**done, "skipped": True}

    t0 = time.perf_counter()
    train_set, test_set = (datasets if datasets is not None else
                           (itp_data.cifar100("train", root=data_root),
                            itp_data.cifar100("test", root=data_root)))
    fingerprint = data_fingerprint(train_set, test_set)
    h, w = train_set.images.shape[1:3]
    record: dict[str, Any] = {
        "format": CELL_FORMAT, **mine, "pixels": h * w, "pixels_replaced": 0, "fill": None,
        "fill_rule": "per-channel mean of the training set in uint8 pixel space, rounded",
        "ranks": None, "rank_sha256": None, "explained_checkpoint_sha256": None,
        "data_sha256": fingerprint, "copied_from": None}

    if mode == "unmodified":
        source = pilot_dir(root, epochs, seed)
        prev = read_json(source / "provenance.json")
        if (reuse_pilot and source.resolve() != out.resolve() and prev is not None
                and not _differences(prev, mine) and prev.get("data_sha256") == fingerprint):
            _copy_run(source, out)
            write_json(out / "provenance.json",
                       {**prev, "copied_from": str(source), "date_utc": now_utc()})
            return read_json(out / "provenance.json") or {}
    else:
        if rank_arrays is not None:
            r_train, r_test = rank_arrays
            record["ranks"] = {"file": None, "sha256": _array_sha(r_train, r_test),
                               "given": True}
        else:
            cache = Path(cache) if cache is not None else Path(root) / "cache"
            all_ranks, info = rank_file(method, checkpoint=checkpoint, cache=cache,
                                        seed=rank_seed, datasets=(train_set, test_set),
                                        batch_size=batch_size, progress=progress,
                                        device=None if device == "auto" else device)
            r_train = all_ranks[slice(*info["splits"]["train"])]
            r_test = all_ranks[slice(*info["splits"]["test"])]
            record["ranks"] = {k: info.get(k) for k in (
                "sha256", "seed", "checkpoint", "checkpoint_sha256", "date_utc")}
            record["ranks"]["file"] = str(cache / info["file"])
        record["rank_sha256"] = record["ranks"]["sha256"]
        record["explained_checkpoint_sha256"] = record["ranks"].get("checkpoint_sha256")
        fill = train_mean(train_set)
        k = top_count(fraction, h * w)
        record.update(fill=fill.tolist(),
                      pixels_replaced=k if mode == "roar" else h * w - k)
        train_set = modified(train_set, r_train, fraction, mode, fill)
        test_set = modified(test_set, r_test, fraction, mode, fill)

    result = train(cfg, train_set=train_set, test_set=test_set)
    s = result.summary
    record.update({
        "test_acc": s["test_acc"], "test_top5": s["test_top5"],
        "train_seconds": s.get("train_seconds"), "seconds": round(time.perf_counter() - t0, 1),
        "weights_dtype": s.get("weights_dtype"),
        "git": git_info(), "date_utc": now_utc(), "python": platform.python_version(),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "device": str(next(result.model.parameters()).device),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
    })
    write_json(out / "provenance.json", record)
    (out / "last.pt").unlink(missing_ok=True)
    return record


def reproduce_cell(cell: str | os.PathLike, out: str | os.PathLike | None = None,
                   root: str | os.PathLike = DEFAULT_ROOT, **kwargs: Any) -> dict[str, Any]:
    """Train a finished cell again from its committed record and compare the accuracies.

    The cell's ``provenance.json`` gives mode, method, fraction, epochs and seed; the recipe
    is today's (:func:`interpretable.roar.recipe`), and a ValueError names any setting that
    differs from the one the cell recorded. The cell is trained into ``out`` (default
    ``root/reproduce/<cell name>``; resumable like any cell) and its test top-1 compared with
    the committed one: the reproduction holds when they differ by at most the pilot's spread
    (:func:`interpretable.roar.pilot_spread`: what the seed alone does to an unmodified
    retrain). The recipe is checked before training; the ranks after it (the rank file is read
    by the training cell): a changed rank file (another checkpoint, other data) is an error,
    not a failed reproduction.

    Args:
        cell: the finished cell's folder. out, root: as above.
        **kwargs: passed on to :func:`run_cell` (``cache``, ``checkpoint``, ``data_root``,
            ``device``, ``progress``, ``batch_size``; tests: ``overrides``, ``datasets``,
            ``rank_arrays``).

    Returns:
        The record also written to ``out/reproduction.json``: ``cell``, ``committed`` and
        ``reproduced`` top-1 (%), ``difference`` (reproduced - committed, points), the
        pilot's ``spread`` and ``pilot_top1``, ``holds``, ``identical`` (bit-equal top-1 and
        top-5, as on the machine that trained the cell), and the reproduced cell's provenance.
    """
    from .plan import pilot_spread

    cell = Path(cell)
    done = read_json(cell / "provenance.json")
    if done is None or done.get("format") != CELL_FORMAT:
        raise FileNotFoundError(f"cell={str(cell)!r}: no finished ROAR / KAR cell there "
                                f"(its provenance.json is missing or not a cell's)")
    spread = pilot_spread(root)
    out = Path(out) if out is not None else Path(root) / "reproduce" / cell.name
    if out.resolve() == cell.resolve():
        raise ValueError("out must differ from the cell it reproduces")
    settings = _settings(int(done["epochs"]), int(done["seed"]), kwargs.get("overrides"))
    mine = {k: done.get(k) for k in ("mode", "method", "fraction", "epochs", "seed")}
    diff = _differences(done, {**mine, "recipe": TrainConfig(**settings).math_settings()})
    if diff:
        raise ValueError(f"the recipe changed since {cell} was trained ({', '.join(diff)}): "
                         "its accuracy cannot be reproduced with today's recipe")
    p = run_cell(done["mode"], done["method"], done["fraction"], root=root,
                 epochs=int(done["epochs"]), seed=int(done["seed"]), out=out,
                 reuse_pilot=False, **kwargs)
    if done.get("rank_sha256") != p.get("rank_sha256"):
        raise ValueError(f"the ranks differ from those {cell} was trained on (sha256 "
                         f"{p.get('rank_sha256')} against {done.get('rank_sha256')})")
    difference = round(p["test_acc"] - done["test_acc"], 6)
    record = {"format": REPRODUCTION_FORMAT, "cell": cell.name, "committed": done["test_acc"],
              "reproduced": p["test_acc"], "difference": difference,
              "spread": spread["spread"], "pilot_top1": spread["top1"],
              "pilot_epochs": spread["epochs"], "holds": abs(difference) <= spread["spread"],
              "identical": (p["test_acc"], p["test_top5"]) == (done["test_acc"],
                                                               done["test_top5"]),
              "provenance": {k: v for k, v in p.items() if k != "skipped"},
              "date_utc": now_utc()}
    write_json(out / "reproduction.json", record)
    return record
