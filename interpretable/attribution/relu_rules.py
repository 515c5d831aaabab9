"""Switchable backward rule for every ReLU/ReLU6 of a model (METHODS.md section 1).

Guided backpropagation [GB] changes one thing in the backward pass: at each ReLU,
``grad_in = grad_out * (input > 0) * (grad_out > 0)`` (ReLU6: ``0 < input < 6``). Because the
ReLU's own backward already multiplies by its mask, clamping the gradient that *arrives at the
ReLU's output* to be non-negative gives exactly that rule. So a forward hook on each ReLU
module puts a tensor hook on each output it produces, and that tensor hook clamps, or passes
the gradient through unchanged, depending on a switch read at backward time.

This works with in-place ReLUs (the hook is put on the tensor after the in-place op), with a
ReLU module called several times per forward (each call's output gets its own hook), and lets
one forward pass serve both a standard and a guided backward (the training regularizer).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["ReLUSwitch", "relu_modules", "switchable_relus"]

RELU_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)


class ReLUSwitch:
    """Which rule the ReLU backward follows; flip ``guided`` between backward calls."""

    def __init__(self, guided: bool = False):
        self.guided = guided

    def _grad_hook(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0) if self.guided else grad

    def _forward_hook(self, module: nn.Module, inputs, output):
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(self._grad_hook)


def relu_modules(model: nn.Module) -> list[nn.Module]:
    """All ``nn.ReLU`` / ``nn.ReLU6`` modules of ``model``."""
    return [m for m in model.modules() if isinstance(m, RELU_TYPES)]


@contextmanager
def switchable_relus(model: nn.Module, guided: bool = False) -> Iterator[ReLUSwitch]:
    """Within the block, every forward pass of ``model`` records switchable ReLU backwards.

    Yields the :class:`ReLUSwitch`; its ``guided`` flag decides the rule of any backward run
    later through graphs recorded inside the block (also after the block exits). Hooks are
    removed on exit, also on error.

    Raises:
        ValueError: the model has no ``nn.ReLU``/``nn.ReLU6`` module (a functional ReLU
            cannot be hooked, and guided backprop would silently equal the plain gradient).
    """
    relus = relu_modules(model)
    if not relus:
        raise ValueError(
            f"model ({type(model).__name__}) has no nn.ReLU or nn.ReLU6 module; guided "
            "backpropagation needs ReLUs as modules, not torch.relu/F.relu calls"
        )
    switch = ReLUSwitch(guided)
    handles = [m.register_forward_hook(switch._forward_hook) for m in relus]
    try:
        yield switch
    finally:
        for h in handles:
            h.remove()
