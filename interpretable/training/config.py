"""What defines a training run: :class:`TrainConfig` (METHODS.md section 2, the paper recipe
as defaults), its checks, and the learning-rate and lambda schedules it implies."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from interpretable import models as itp_models
from interpretable.training.losses import ALIGNMENT_KINDS, BN_STATS, GRADIENT_OF

__all__ = ["TrainConfig", "TrainResult", "SCHEDULES", "DEFAULTS", "learning_rate", "lam_at"]

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


DEFAULTS = TrainConfig().math_settings()


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model (eval mode), per-epoch records, summary."""

    model: nn.Module
    history: list[dict[str, Any]]
    summary: dict[str, Any]





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
