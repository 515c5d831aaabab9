"""The training loop: SGD steps, logs, atomic checkpoints, resume, DDP.

METHODS.md section 2. One epoch = a seeded permutation of the training set, batched and
augmented on the fly (``interpretable.data.batches``), one :func:`regularized_loss` step per
batch, then an evaluation on the test set. Every random stream (order, crops/flips, the
reg-fraction subsets, dropout) is re-seeded from ``(seed, epoch, rank)`` at the start of each
epoch, so a run resumed from the checkpoint of epoch ``e`` repeats epochs ``e+1...`` bit for bit.

Under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in DistributedDataParallel
(NCCL on CUDA, gloo on CPU); each rank takes its share of every global batch; only rank 0
writes files.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Subset

from interpretable import data as itp_data
from interpretable import models as itp_models
from interpretable._io import TEMP_SUFFIX, atomic_write_text, sha256_file
from interpretable.training.config import (
    DEFAULTS,
    TrainConfig,
    TrainResult,
    lam_at,
    learning_rate,
)
from interpretable.training.distributed import (
    Distributed,
    all_sum,
    init_distributed,
    replicas_identical,
)
from interpretable.training.evaluation import accuracy_and_alignment, autocast
from interpretable.training.losses import GRADIENT_OF, regularized_loss

__all__ = ["train"]


def _seed(seed: int, epoch: int, stream: int, rank: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + stream * 104_729 + rank * 15_485_863) % (2**62)


def _generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device != "auto":
        return torch.device(cfg.device)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or cfg.amp == "off":
        return None
    if cfg.amp == "bf16" or (cfg.amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def train(config: TrainConfig | None = None, *, train_set=None, test_set=None,
          **overrides: Any) -> TrainResult:
    """Train (or resume) one model as ``config`` says; see the module docstring.

    ``train_set`` / ``test_set``: a :class:`interpretable.data.CIFAR100` (or a Subset of one)
    to use instead of the CIFAR-100 splits (e.g. ROAR's modified images); default: the
    splits found from ``config.data_root``.

    Writes into ``config.out``: ``config.json``, ``log.jsonl`` (one JSON line per epoch: lr,
    train CE and L_R separately, train accuracy, test top-1/top-5, test L_R, seconds),
    ``last.pt`` (atomic, every epoch: model, optimizer, scaler, history; resumable),
    ``final.pt`` (weights and meta for :func:`interpretable.models.load_checkpoint`) and
    ``summary.json``. If ``last.pt`` exists with the same settings, training resumes after its
    epoch; with different settings a ValueError says which differ (``restart=True`` ignores it).
    """
    cfg = copy.deepcopy(config) if config is not None else TrainConfig()
    for k, v in overrides.items():
        if k not in {f.name for f in fields(TrainConfig)}:
            raise TypeError(f"train() got an unknown setting {k!r}")
        setattr(cfg, k, v)
    cfg.validate()
    d = init_distributed(cfg.device)
    try:
        return _train(cfg, d, train_set, test_set)
    finally:
        if d.owned:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, d: Distributed, train_set=None, test_set=None) -> TrainResult:
    if cfg.batch_size % d.world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {d.world} ranks")
    device = _device(cfg, d.local_rank)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    cl = cfg.channels_last == "on" or (cfg.channels_last == "auto" and device.type == "cpu")
    fmt = torch.channels_last if cl else torch.contiguous_format
    amp_dtype = _amp_dtype(cfg, device)
    out = Path(cfg.out)
    ckpt_path, final_path = out / "last.pt", out / "final.pt"

    if train_set is None:
        train_set = itp_data.cifar100("train", root=cfg.data_root)
    if test_set is None:
        test_set = itp_data.cifar100("test", root=cfg.data_root)
    if cfg.train_per_class:
        train_set = itp_data.balanced_subset(train_set, cfg.train_per_class, seed=cfg.seed)
    if cfg.test_per_class:
        test_set = itp_data.balanced_subset(test_set, cfg.test_per_class, seed=cfg.seed)
    n_train = len(train_set)
    per_rank = cfg.batch_size // d.world
    steps = n_train // cfg.batch_size
    if steps < 1:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {n_train} training images")

    torch.manual_seed(cfg.seed)
    model = itp_models.create(cfg.arch, num_classes=100, width=cfg.width)
    model = model.to(device).to(memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    if cfg.init:  # (a resume then replaces these weights with last.pt's)
        _load_init(cfg, model, device)

    history: list[dict[str, Any]] = []
    start = 0
    if ckpt_path.exists() and not cfg.restart:
        state = itp_models.read_checkpoint(ckpt_path, map_location=device)
        extra = state.get("extra", {})
        saved = extra.get("config", {})
        mine = cfg.math_settings()
        # settings added after a checkpoint was written count as their defaults
        diff = sorted(k for k in mine if saved.get(k, DEFAULTS.get(k)) != mine[k])
        if diff:
            shown = ", ".join(f"{k}: {saved.get(k)!r} -> {mine[k]!r}" for k in diff)
            raise ValueError(f"{ckpt_path} holds a run with other settings ({shown}); "
                             "use another --out or --restart")
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(extra["optimizer"])
        if extra.get("scaler"):
            scaler.load_state_dict(extra["scaler"])
        history = list(extra["history"])
        start = int(extra["epoch"])

    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(f"*{TEMP_SUFFIX}"):  # temp files of a write interrupted by a kill
            stale.unlink(missing_ok=True)
        atomic_write_text(out / "config.json", json.dumps(asdict(cfg), indent=2) + "\n")
        # the log is the checkpoint's history: a kill between checkpoint and log loses nothing
        atomic_write_text(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in history))

    ddp = model
    if d.world > 1:
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        torch.manual_seed(_seed(cfg.seed, epoch, 0, d.rank))          # dropout
        order = torch.randperm(n_train, generator=_generator(_seed(cfg.seed, epoch, 1)))
        order = order[: steps * cfg.batch_size].view(steps, cfg.batch_size)
        mine = order[:, d.rank::d.world].reshape(-1).tolist()         # this rank's share
        aug = _generator(_seed(cfg.seed, epoch, 2, d.rank))
        pick = _generator(_seed(cfg.seed, epoch, 3, d.rank))
        stream = itp_data.batches(Subset(train_set, mine), per_rank, augment=True,
                                  generator=aug, device=device, drop_last=True)
        sums = torch.zeros(4, dtype=torch.float64, device=device)     # ce, align, correct, n
        bar = _progress(cfg, d, steps, epoch)
        model.train()
        for step, (x, y) in enumerate(stream):
            lr = learning_rate(cfg, epoch, step, steps)
            for group in opt.param_groups:
                group["lr"] = lr
            x = x.contiguous(memory_format=fmt)
            lam = lam_at(cfg, epoch, step, steps)
            with autocast(device, amp_dtype):
                loss, parts = regularized_loss(
                    ddp, x, y, lam=lam, kind=cfg.loss, detach_guided=cfg.detach_guided,
                    reg_fraction=cfg.reg_fraction, generator=pick, bn_stats=cfg.bn_stats,
                    label_smoothing=cfg.label_smoothing, gradient_of=cfg.gradient_of,
                    grad_scale=1024.0 if amp_dtype == torch.float16 else 1.0)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            b = y.shape[0]
            align = parts["align"]
            sums += torch.stack([parts["ce"].double() * b,
                                 (align.double() * b) if align is not None else sums.new_zeros(()),
                                 (parts["logits"].argmax(1) == y).sum().double(),
                                 sums.new_tensor(float(b))])
            if bar is not None:
                bar.update(1)
                if step % 10 == 0:
                    bar.set_postfix(ce=f"{parts['ce'].item():.3f}", lr=f"{lr:.4f}",
                                    align="-" if align is None else f"{align.item():.4f}")
        if bar is not None:
            bar.close()
        ce_sum, align_sum, correct, n = all_sum(sums.tolist(), d, device)
        train_seconds = time.perf_counter() - t0
        record: dict[str, Any] = {
            "epoch": epoch + 1, "lr": lr,
            "train_ce": ce_sum / n,
            "train_align": align_sum / n if cfg.lam > 0 else None,
            "train_loss": (ce_sum + lam * align_sum) / n,   # lambda of the epoch's last step
            "train_acc": 100.0 * correct / n,
        }
        if cfg.lam_warmup:
            record["lam"] = lam
        if d.main:
            record.update(accuracy_and_alignment(
                model, test_set, device, memory_format=fmt, amp_dtype=amp_dtype,
                align_images=cfg.align_eval_images, gradient_of=cfg.gradient_of))
        record["train_seconds"] = train_seconds
        record["seconds"] = time.perf_counter() - t0
        if d.main:
            history.append(record)
            extra = {"epoch": epoch + 1, "optimizer": opt.state_dict(),
                     "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                     "history": history, "config": cfg.math_settings()}
            itp_models.save_checkpoint(ckpt_path, model, extra=extra)
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
            if cfg.progress:
                print(_line(record), file=sys.stderr, flush=True)
        else:
            history.append(record)
        if d.world > 1:
            dist.barrier()

    identical = replicas_identical(model, d, device)
    if d.world > 1 and not identical:
        raise RuntimeError("DDP replicas ended with different weights")
    if not history or "test_acc" not in history[-1]:
        history = _reload_history(ckpt_path, device, history)
    measure = functools.partial(accuracy_and_alignment, dataset=test_set, device=device,
                                memory_format=fmt, amp_dtype=amp_dtype,
                                align_images=cfg.align_eval_images, gradient_of=GRADIENT_OF)
    summary = _finish(cfg, d, model, history, measure, final_path, identical)
    return TrainResult(model.eval(), history, summary)


def _load_init(cfg: TrainConfig, model: nn.Module, device: torch.device) -> None:
    """Copy the weights of ``cfg.init`` into ``model`` (which was built from ``cfg``)."""
    state = itp_models.read_checkpoint(cfg.init, map_location=device)
    theirs = state["meta"]
    mine = itp_models.model_spec(model)
    for key in ("arch", "width", "num_classes"):
        if theirs.get(key) != mine[key]:
            raise ValueError(
                f"init checkpoint {cfg.init!r} holds a {theirs.get('arch')} of width "
                f"{theirs.get('width')} with {theirs.get('num_classes')} classes; this run "
                f"trains a {mine['arch']} of width {mine['width']} with {mine['num_classes']} "
                "classes (set --arch/--width to match the checkpoint)")
    try:
        model.load_state_dict(state["state_dict"])  # float16 final.pt: copied into float32
    except RuntimeError as exc:
        raise itp_models.CheckpointError(
            f"init checkpoint {cfg.init!r} does not match its metadata: {exc}") from exc


def _reload_history(ckpt_path: Path, device, history):
    try:
        return list(itp_models.read_checkpoint(ckpt_path, device)["extra"]["history"])
    except Exception:
        return history


def _progress(cfg: TrainConfig, d: Distributed, steps: int, epoch: int):
    if not (cfg.progress and d.main):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                dynamic_ncols=True, file=sys.stderr)


def _line(r: dict[str, Any]) -> str:
    align = "-" if r["train_align"] is None else f"{r['train_align']:.4f}"
    talign = "-" if r.get("test_align") is None else f"{r['test_align']:.4f}"
    return (f"epoch {r['epoch']}: ce {r['train_ce']:.4f} L_R {align} train {r['train_acc']:.2f}% "
            f"test {r.get('test_acc', float('nan')):.2f}% (top-5 "
            f"{r.get('test_top5', float('nan')):.2f}%) test L_R {talign} "
            f"{r['seconds']:.1f}s")


def _finish(cfg: TrainConfig, d: Distributed, model: nn.Module, history: list[dict[str, Any]],
            measure, final_path: Path, identical: bool) -> dict[str, Any]:
    """Write ``final.pt`` (float16 when that keeps the test accuracy) and ``summary.json``.

    ``measure(model)``: :func:`accuracy_and_alignment` on the test set, both gradients.
    """
    last = history[-1] if history else {}
    summary: dict[str, Any] = {
        "arch": cfg.arch, "width": cfg.width, "lam": cfg.lam, "loss": cfg.loss,
        "gradient_of": cfg.gradient_of, "lam_warmup": cfg.lam_warmup,
        "init": cfg.init,
        "init_sha256": sha256_file(cfg.init) if cfg.init else None,
        "epochs": cfg.epochs, "reg_fraction": cfg.reg_fraction, "seed": cfg.seed,
        "test_acc": last.get("test_acc"), "test_top5": last.get("test_top5"),
        "test_align": last.get("test_align"), "test_align_ci": last.get("test_align_ci"),
        "align_images": last.get("align_images"),
        "train_seconds": sum(r["train_seconds"] for r in history),
        "seconds": sum(r["seconds"] for r in history),
        "world_size": d.world, "replicas_identical": identical,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if not d.main:
        return summary
    weights_dtype = "float32"
    save_model = stored = model  # stored: float32 model holding the weights final.pt keeps
    if cfg.final_fp16:
        # Keep float16 only if the reloaded float32 model gives the same test accuracy.
        half = copy.deepcopy(model).half()
        back = copy.deepcopy(model)
        back.load_state_dict(half.state_dict())
        # the stored weights are measured again, alignment of both gradients included
        acc = measure(back)
        summary["test_acc_float16_weights"] = acc["test_acc"]
        summary["test_top5_float16_weights"] = acc["test_top5"]
        if summary["test_acc"] is not None and abs(acc["test_acc"] - summary["test_acc"]) <= 0.1:
            save_model, stored, weights_dtype = half, back, "float16"
            summary.update({k: v for k, v in acc.items() if k.startswith("test_align_")})
    if cfg.align_eval_images and "test_align_logit" not in summary:
        acc = measure(stored)  # a float16 model would not take the float32 test images
        summary.update({k: v for k, v in acc.items() if k.startswith("test_align_")})
    final_meta = {"weights_dtype": weights_dtype, "training": asdict(cfg),
                  "test_acc": summary["test_acc"], "test_top5": summary["test_top5"],
                  "test_align": summary["test_align"], "history": history}
    final_meta["training"].pop("restart", None)
    itp_models.save_checkpoint(final_path, save_model, final_meta)
    summary["weights_dtype"] = weights_dtype
    summary["final"] = str(final_path)
    atomic_write_text(final_path.parent / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
