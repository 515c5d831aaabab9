"""Gradient-alignment regularized training (METHODS.md section 2).

``alignment_loss`` / ``regularized_loss`` (the objective), ``train`` (the loop, checkpoints,
resume, DDP), ``TrainConfig`` and ``accuracy_and_alignment`` (what the loop measures after
every epoch: top-1, top-5 and cos(g, g~) with its interval).
Command line: ``python -m interpretable train --help``.
"""

from interpretable.training.loop import (
    SCHEDULES,
    TrainConfig,
    TrainResult,
    accuracy_and_alignment,
    lam_at,
    learning_rate,
    train,
)
from interpretable.training.losses import (
    ALIGNMENT_KINDS,
    GRADIENT_OF,
    alignment_from_gradients,
    alignment_loss,
    gradient_cosines,
    input_gradient_rules,
    input_gradients,
    regularized_loss,
)

__all__ = [
    "ALIGNMENT_KINDS",
    "GRADIENT_OF",
    "SCHEDULES",
    "TrainConfig",
    "TrainResult",
    "alignment_from_gradients",
    "accuracy_and_alignment",
    "alignment_loss",
    "gradient_cosines",
    "input_gradient_rules",
    "input_gradients",
    "lam_at",
    "learning_rate",
    "regularized_loss",
    "train",
]
