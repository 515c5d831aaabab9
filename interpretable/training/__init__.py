"""Gradient-alignment regularized training (METHODS.md section 2).

``alignment_loss`` / ``regularized_loss`` (the objective, :mod:`.losses`), ``train`` (the
loop, checkpoints, resume, DDP: :mod:`.loop`), ``TrainConfig`` and the schedules
(:mod:`.config`), the named recipes (:mod:`.presets`), ``accuracy_and_alignment`` (what the
loop measures after every epoch: top-1, top-5 and cos(g, g~) with its interval:
:mod:`.evaluation`). Names load on first use. Command line: ``python -m interpretable train
--help``.
"""

from __future__ import annotations

from interpretable._lazy import lazy_names

_LAZY = {
    "SCHEDULES": "config", "TrainConfig": "config", "TrainResult": "config",
    "lam_at": "config", "learning_rate": "config",
    "train": "loop", "accuracy_and_alignment": "evaluation", "per_image_cosines": "evaluation",
    "ALIGNMENT_KINDS": "losses", "GRADIENT_OF": "losses", "alignment_from_gradients": "losses",
    "alignment_loss": "losses", "gradient_cosines": "losses", "input_gradient_rules": "losses",
    "input_gradients": "losses", "regularized_loss": "losses",
    "PRESETS": "presets", "NEEDS_INIT": "presets", "preset": "presets",
}
__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
