"""Input checks shared by the attribution methods and the metrics: model, input batch,
target, layer; and eval mode for the duration of a call.

Target semantics (API.md): ``None`` = the predicted class, an ``int`` = the same class for the
whole batch, or a LongTensor (B,) of per-sample classes. Checks happen in two steps: the type
and length before any forward pass (:func:`check_target`), the range once the logits show how
many classes there are (:func:`resolve_target`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = [
    "Target",
    "check_input",
    "check_model",
    "check_target",
    "resolve_layer",
    "resolve_target",
    "eval_mode",
    "parse_device",
    "one_line",
]

Target = int | Tensor | Sequence[int] | None


def check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _some_names(model: nn.Module, wanted: str, k: int = 6) -> str:
    """A few valid module names of ``model``: the closest to ``wanted``, then the top level."""
    names = [n for n, _ in model.named_modules() if n]
    close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.6)
    top = [n for n, _ in model.named_children()]
    picked = list(dict.fromkeys(close + top))[:k]
    more = ", ..." if len(names) > len(picked) else ""
    return ", ".join(repr(n) for n in picked) + more


def resolve_layer(model: nn.Module, layer: object, name: str = "layer") -> nn.Module:
    """``layer`` as a submodule of ``model``: an ``nn.Module`` of it or a dotted module name.

    Names are those of ``model.named_modules()`` (as torchcam takes them): ``"layer4"``,
    ``"layer3.1.relu2"``, ``"features.18"``. ``name`` is the argument named in errors: a
    ValueError lists a few valid names when the string is not a submodule; a module that is
    not part of ``model`` is a ValueError too, any other type a TypeError.
    """
    if isinstance(layer, str):
        try:
            module = model.get_submodule(layer)
        except AttributeError:
            module = None
        if not isinstance(module, nn.Module):
            raise ValueError(
                f"{name}={layer!r} is not a submodule name of {type(model).__name__}; valid "
                f"names include {_some_names(model, layer)} (see model.named_modules())"
            ) from None
        return module
    if not isinstance(layer, nn.Module):
        raise TypeError(
            f"{name} must be an nn.Module of model or its dotted name (e.g. 'layer4'), got "
            f"{type(layer).__name__}"
        )
    if not any(m is layer for m in model.modules()):
        raise ValueError(
            f"{name} ({type(layer).__name__}) is not a submodule of model "
            f"({type(model).__name__}); pass one of model.modules() or its name, e.g. "
            f"{_some_names(model, '')}"
        )
    return layer


def check_input(x: object) -> Tensor:
    """``x`` must be a floating (B, C, H, W) tensor with B >= 1."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D (B, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one image, got an empty batch")
    return x


def check_target(target: Target, batch: int) -> int | Tensor | None:
    """Type and length check; returns None, a non-negative int, or an int64 tensor (B,)."""
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError("target must be None, an int or a LongTensor (B,), got a bool")
    if isinstance(target, int):
        if target < 0:
            raise ValueError(f"target must be a non-negative class index, got {target}")
        return target
    if isinstance(target, (list, tuple)):
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in target):
            raise TypeError("target given as a list/tuple must hold ints")
        target = torch.tensor(target, dtype=torch.long)
    if not isinstance(target, Tensor):
        # numpy integers and the like
        if hasattr(target, "__index__"):
            return check_target(int(target.__index__()), batch)
        raise TypeError(
            f"target must be None, an int or a LongTensor (B,), got {type(target).__name__}"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    if target.dim() == 0:
        return check_target(int(target.item()), batch)
    if target.dim() != 1 or target.shape[0] != batch:
        raise ValueError(
            f"target must have one class per image: shape ({batch},), got {tuple(target.shape)}"
        )
    return target.long()


def resolve_target(target: int | Tensor | None, logits: Tensor) -> Tensor:
    """Classes (B,) on the logits' device; ``None`` picks each image's predicted class."""
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"model must return logits of shape (B, num_classes), got {shape}")
    batch, classes = logits.shape
    if target is None:
        return logits.detach().argmax(dim=1)
    if isinstance(target, int):
        if target >= classes:
            raise ValueError(f"target must be in [0, {classes}), got {target}")
        return torch.full((batch,), target, dtype=torch.long, device=logits.device)
    target = target.to(logits.device)
    lo, hi = int(target.min()), int(target.max())  # one sync, only to check
    if lo < 0 or hi >= classes:
        raise ValueError(f"target must be in [0, {classes}), got values in [{lo}, {hi}]")
    return target


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run in eval mode, then restore each submodule's own ``training`` flag (also on error).

    Attributions explain inference: batch-norm uses its running statistics (so every image
    is independent of the others in the batch and no statistic is updated), dropout is off.
    """
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def parse_device(text: str | None) -> torch.device | None:
    """A device from a command-line string (``cpu``, ``cuda``, ``cuda:1``, ``mps``); None for
    ``auto`` or None (the caller's default). ValueError naming ``device`` otherwise, or when
    CUDA is asked for and not available."""
    if text is None or text.lower() == "auto":
        return None
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"device must be cpu, cuda, cuda:N, mps or auto, got {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={text!r}: CUDA is not available here")
    return device


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (for command-line errors without a traceback)."""
    return " ".join(str(exc).split())
