"""The training loop: SGD recipe, schedules, logs, atomic checkpoints, resume, DDP.

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

import contextlib
import copy
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Subset

from interpretable import data as itp_data
from interpretable import models as itp_models
from interpretable._io import TEMP_SUFFIX, atomic_write_text, sha256_file
from interpretable.stats import mean_interval
from interpretable.training.losses import (
    ALIGNMENT_KINDS,
    BN_STATS,
    GRADIENT_OF,
    gradient_cosines,
    input_gradients,
    regularized_loss,
)

__all__ = ["TrainConfig", "TrainResult", "train", "learning_rate", "lam_at",
           "accuracy_and_alignment", "SCHEDULES"]

SCHEDULES = ("step", "onecycle", "cosine")
# Settings that do not change the arithmetic of a run: a resume may differ in these.
_COSMETIC = ("out", "progress", "data_root", "device", "restart")


@dataclass
class TrainConfig:
    """Everything that defines a training run (defaults: the paper recipe, METHODS.md s. 2)."""

    arch: str = "resnet18"
    width: float = 1.0
    lam: float = 7.5e-3
    loss: str = "cosine"                 # alignment kind: cosine | mse | l1
    gradient_of: str = "logit"           # logit | loss: what the two input gradients differentiate
    lam_warmup: float = 0.0              # epochs over which lambda ramps linearly from 0
    init: str | None = None              # start from these weights (fine-tuning), fresh optimizer
    epochs: int = 200
    batch_size: int = 128                # global batch (split across DDP ranks)
    lr: float = 0.1                      # peak learning rate
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "step"               # step (paper) | onecycle | cosine
    warmup_epochs: float = 1.0
    milestones: list[int] = field(default_factory=lambda: [60, 120, 160])
    gamma: float = 0.2
    label_smoothing: float = 0.0
    seed: int = 0
    reg_fraction: float = 1.0
    detach_guided: bool = True
    bn_stats: str = "frozen"             # see interpretable.training.losses
    train_per_class: int | None = None   # balanced training subset (None: all 50,000)
    test_per_class: int | None = None    # balanced test subset (None: all 10,000)
    align_eval_images: int = 1000        # test images on which L_R is evaluated per epoch
    amp: str = "auto"                    # auto (bf16/fp16 on CUDA, off on CPU) | off | bf16 | fp16
    channels_last: str = "auto"          # auto (on for CPU) | on | off
    final_fp16: bool = True              # store final.pt in float16 if accuracy is unchanged
    out: str = "runs/train"
    device: str = "auto"
    data_root: str | None = None
    progress: bool = True
    restart: bool = False                # ignore an existing checkpoint in out

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the first bad setting."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)

        need(self.arch in itp_models.ARCHITECTURES,
             f"arch must be one of {sorted(itp_models.ARCHITECTURES)}, got {self.arch!r}")
        need(self.width > 0, f"width must be > 0, got {self.width}")
        need(math.isfinite(self.lam) and self.lam >= 0, f"lam must be >= 0, got {self.lam}")
        need(self.loss in ALIGNMENT_KINDS,
             f"loss must be one of {ALIGNMENT_KINDS}, got {self.loss!r}")
        need(self.gradient_of in GRADIENT_OF,
             f"gradient_of must be one of {GRADIENT_OF}, got {self.gradient_of!r}")
        need(math.isfinite(self.lam_warmup) and 0 <= self.lam_warmup <= self.epochs,
             f"lam_warmup must lie in [0, epochs], got {self.lam_warmup}")
        need(self.init is None or (isinstance(self.init, str) and self.init != ""),
             f"init must be None or a checkpoint path, got {self.init!r}")
        need(int(self.epochs) == self.epochs and self.epochs >= 1,
             f"epochs must be a positive integer, got {self.epochs}")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(0 <= self.momentum < 1, f"momentum must lie in [0, 1), got {self.momentum}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(self.schedule in SCHEDULES,
             f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        need(0 <= self.warmup_epochs <= self.epochs,
             f"warmup_epochs must lie in [0, epochs], got {self.warmup_epochs}")
        need(all(isinstance(m, int) and m > 0 for m in self.milestones),
             f"milestones must be positive integers, got {self.milestones}")
        need(0 < self.gamma <= 1, f"gamma must lie in (0, 1], got {self.gamma}")
        need(0 <= self.label_smoothing < 1,
             f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        need(0 < self.reg_fraction <= 1,
             f"reg_fraction must lie in (0, 1], got {self.reg_fraction}")
        need(self.bn_stats in BN_STATS,
             f"bn_stats must be one of {BN_STATS}, got {self.bn_stats!r}")
        for name in ("train_per_class", "test_per_class"):
            v = getattr(self, name)
            need(v is None or 1 <= v <= 500, f"{name} must be None or in 1..500, got {v}")
        need(self.align_eval_images >= 0, "align_eval_images must be >= 0")
        need(self.amp in ("auto", "off", "bf16", "fp16"),
             f"amp must be auto, off, bf16 or fp16, got {self.amp!r}")
        need(self.channels_last in ("auto", "on", "off"),
             f"channels_last must be auto, on or off, got {self.channels_last!r}")
        return self

    def math_settings(self) -> dict[str, Any]:
        """The settings that decide the weights (everything but paths and display)."""
        return {k: v for k, v in asdict(self).items() if k not in _COSMETIC}


_DEFAULTS = TrainConfig().math_settings()


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model (eval mode), per-epoch records, summary."""

    model: nn.Module
    history: list[dict[str, Any]]
    summary: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Schedules, seeds, small helpers
# --------------------------------------------------------------------------------------------


def learning_rate(cfg: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Learning rate at ``step`` (0-based) of ``epoch`` (0-based).

    ``step``: linear warm-up over ``warmup_epochs`` (from lr/steps to lr), then lr times
    ``gamma`` per milestone passed (paper). ``onecycle``: linear warm-up, then linear decay to
    0 at the end. ``cosine``: linear warm-up, then cosine decay to 0.
    """
    t = epoch * steps_per_epoch + step + 1            # 1-based position of this step
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    total = cfg.epochs * steps_per_epoch
    if t <= warm:
        return cfg.lr * t / warm
    if cfg.schedule == "step":
        return cfg.lr * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    frac = (t - warm) / max(1, total - warm)
    if cfg.schedule == "onecycle":
        return cfg.lr * max(0.0, 1.0 - frac)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * frac))


def lam_at(cfg: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """lambda at ``step`` of ``epoch`` (0-based): ``cfg.lam``, ramped linearly from
    ``cfg.lam / warm-up steps`` to ``cfg.lam`` over the first ``lam_warmup`` epochs."""
    warm = int(round(cfg.lam_warmup * steps_per_epoch))
    t = epoch * steps_per_epoch + step + 1
    return cfg.lam if t >= warm else cfg.lam * t / warm


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
# Distributed setup
# --------------------------------------------------------------------------------------------


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False          # we initialised the process group (and must destroy it)

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_hint: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    owned = False
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_hint in ("auto", "cuda")
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
        owned = True
    return _Dist(dist.get_rank(), dist.get_world_size(), local, owned)


def _all_sum(values: list[float], d: _Dist, device: torch.device) -> list[float]:
    if d.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _replicas_identical(model: nn.Module, d: _Dist, device: torch.device) -> bool:
    """Rank 0 broadcasts its parameters; every rank compares them with its own, bit for bit.

    Buffers (BN running statistics) are local to each rank under DDP (DDP copies rank 0's
    at every forward); they are then made identical by broadcasting rank 0's.
    """
    if d.world == 1:
        return True
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
        ref = flat.clone()
        dist.broadcast(ref, 0)
        same = torch.tensor([0.0 if torch.equal(flat, ref) else 1.0], device=device)
        dist.all_reduce(same)
        for b in model.buffers():
            dist.broadcast(b, 0)
    return bool(same.item() == 0)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def accuracy_and_alignment(model: nn.Module, dataset, device: torch.device | None = None,
                           batch_size: int = 500, memory_format=torch.contiguous_format,
                           amp_dtype: torch.dtype | None = None, align_images: int = 0,
                           gradient_of: str | tuple[str, ...] = "logit",
                           ) -> dict[str, Any]:
    """Top-1 / top-5 accuracy (%) on ``dataset`` and gradient alignment on its first
    ``align_images`` images (METHODS.md section 2).

    Alignment is the per-image cos(g, g~) of the true label's logit (``gradient_of="logit"``)
    or cross-entropy (``"loss"``), eval-mode BN. Returns ``test_acc``, ``test_top5``,
    ``test_align`` (1 - mean cos, the cosine L_R), ``test_align_ci`` ([low, high], 95%
    Student-t interval of 1 - mean cos) and ``align_images``; for a tuple of ``gradient_of``
    values the alignment keys get a suffix (``test_align_logit``, ...). No alignment keys but
    ``align_images`` when ``align_images`` is 0. The model's mode is restored afterwards.
    """
    kinds = (gradient_of,) if isinstance(gradient_of, str) else tuple(gradient_of)
    for k in kinds:
        if k not in GRADIENT_OF:
            raise ValueError(f"gradient_of must be one of {GRADIENT_OF}, got {k!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct1 = correct5 = n = 0
    cosines: dict[str, list[float]] = {k: [] for k in kinds}
    taken = 0
    try:
        for x, y in itp_data.batches(dataset, batch_size, device=device):
            x = x.contiguous(memory_format=memory_format)
            with torch.no_grad(), _autocast(device, amp_dtype):
                z = model(x).float()
            top5 = z.topk(min(5, z.shape[1]), dim=1).indices
            correct1 += (top5[:, 0] == y).sum().item()
            correct5 += (top5 == y[:, None]).any(1).sum().item()
            if taken < align_images:
                k = min(align_images - taken, x.shape[0])
                for kind in kinds:
                    _, g, gg = input_gradients(model, x[:k], y[:k], create_graph=False,
                                               gradient_of=kind)
                    cosines[kind] += gradient_cosines(g, gg).tolist()
                taken += k
            n += y.shape[0]
    finally:
        model.train(was_training)
    out: dict[str, Any] = {"test_acc": 100.0 * correct1 / n, "test_top5": 100.0 * correct5 / n}
    for kind in kinds:
        if not taken:
            break
        ci = mean_interval(cosines[kind])
        suffix = "" if isinstance(gradient_of, str) else f"_{kind}"
        out[f"test_align{suffix}"] = 1.0 - ci["mean"]
        out[f"test_align{suffix}_ci"] = [1.0 - ci["high"], 1.0 - ci["low"]]
    out["align_images"] = taken
    return out


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def train(config: TrainConfig | None = None, **overrides: Any) -> TrainResult:
    """Train (or resume) one model as ``config`` says; see the module docstring.

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
    d = _init_distributed(cfg.device)
    try:
        return _train(cfg, d)
    finally:
        if d.owned:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, d: _Dist) -> TrainResult:
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

    train_set = itp_data.cifar100("train", root=cfg.data_root)
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
        diff = sorted(k for k in mine if saved.get(k, _DEFAULTS.get(k)) != mine[k])
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
            with _autocast(device, amp_dtype):
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
        ce_sum, align_sum, correct, n = _all_sum(sums.tolist(), d, device)
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

    identical = _replicas_identical(model, d, device)
    if d.world > 1 and not identical:
        raise RuntimeError("DDP replicas ended with different weights")
    if not history or "test_acc" not in history[-1]:
        history = _reload_history(ckpt_path, device, history)
    summary = _finish(cfg, d, model, history, test_set, device, fmt, amp_dtype, final_path,
                      identical)
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


def _progress(cfg: TrainConfig, d: _Dist, steps: int, epoch: int):
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


def _finish(cfg, d, model, history, test_set, device, fmt, amp_dtype, final_path,
            identical) -> dict[str, Any]:
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
    save_model = model
    if cfg.final_fp16:
        # Keep float16 only if the reloaded float32 model gives the same test accuracy.
        half = copy.deepcopy(model).half()
        back = copy.deepcopy(model)
        back.load_state_dict(half.state_dict())
        # the stored weights are measured again, alignment of both gradients included
        acc = accuracy_and_alignment(back, test_set, device, memory_format=fmt,
                                     amp_dtype=amp_dtype, align_images=cfg.align_eval_images,
                                     gradient_of=GRADIENT_OF)
        summary["test_acc_float16_weights"] = acc["test_acc"]
        summary["test_top5_float16_weights"] = acc["test_top5"]
        if summary["test_acc"] is not None and abs(acc["test_acc"] - summary["test_acc"]) <= 0.1:
            save_model, weights_dtype = half, "float16"
            summary.update({k: v for k, v in acc.items() if k.startswith("test_align_")})
    if "test_align_logit" not in summary:
        acc = accuracy_and_alignment(save_model, test_set, device, memory_format=fmt,
                                     amp_dtype=amp_dtype, align_images=cfg.align_eval_images,
                                     gradient_of=GRADIENT_OF)
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
