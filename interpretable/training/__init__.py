"""Gradient-alignment regularized training (METHODS.md section 2).

``alignment_loss`` / ``regularized_loss`` (the objective), ``train`` (the loop, checkpoints,
resume, DDP) and ``TrainConfig``. Command line: ``python -m interpretable train --help``.
"""

from interpretable.training.loop import (
    SCHEDULES,
    TrainConfig,
    TrainResult,
    evaluate,
    learning_rate,
    train,
)
from interpretable.training.losses import (
    ALIGNMENT_KINDS,
    alignment_from_gradients,
    alignment_loss,
    input_gradient_rules,
    input_gradients,
    regularized_loss,
)

__all__ = [
    "ALIGNMENT_KINDS",
    "SCHEDULES",
    "TrainConfig",
    "TrainResult",
    "alignment_from_gradients",
    "alignment_loss",
    "evaluate",
    "input_gradient_rules",
    "input_gradients",
    "learning_rate",
    "regularized_loss",
    "train",
]
