"""What every chapter of the book needs before its first idea, in one or two calls.

``ch = start({"stats": (20, 500)}, minutes=(1, 12))`` reads the ``SCALE`` knob (quick unless
``SCALE=full``), seeds torch, applies the book's figure style, picks the device and prints
one line a reader can act on: the SCALE, what it means for this chapter and how long the
chapter takes on a 2-core CPU. ``ch["stats"]`` is then 20 or 500. ``VERIFY`` is a separate
knob for the re-verification of committed results (quick unless ``VERIFY=full``), so that a
reader's full run is not dominated by checks.

:func:`reference_models` loads the reference runs a chapter explains and says which are
missing. The figures and tables the chapters draw live in the topic modules beside this one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SCALES", "Chapter", "start", "reference_models", "knob"]

SCALES = ("quick", "full")


def knob(name: str, default: str = "quick") -> str:
    """The value of environment variable ``name`` (quick | full), ``default`` when unset."""
    value = os.environ.get(name, "") or default
    if value not in SCALES:
        raise ValueError(f"{name} must be 'quick' or 'full', got {value!r}")
    return value


@dataclass
class Chapter:
    """The settings of one chapter run: ``scale`` and ``verify`` ("quick" | "full"),
    ``device``, and the sizes chosen by the scale (``ch["stats"]``)."""

    scale: str
    verify: str
    device: Any
    sizes: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, key: str) -> int:
        return self.sizes[key]

    @property
    def quick(self) -> bool:
        return self.scale == "quick"


def start(sizes: Mapping[str, tuple[int, int]] | None = None,
          minutes: tuple[float, float] | None = None, seed: int = 0,
          describe: str | None = None) -> Chapter:
    """Set up a chapter; see the module docstring.

    ``sizes``: ``{name: (quick value, full value)}``; ``minutes``: the chapter's measured run
    time (quick, full) on a 2-core CPU; ``describe``: what the sizes mean, a format string
    over them (``"statistics on {stats} images"``).
    """
    import torch

    from .. import default_device
    from . import style

    scale, verify = knob("SCALE"), knob("VERIFY")
    chosen = {k: v[SCALES.index(scale)] for k, v in (sizes or {}).items()}
    torch.manual_seed(seed)
    style.use()
    ch = Chapter(scale, verify, default_device(), chosen)
    what = describe.format(**chosen) if describe else ", ".join(f"{k} {v}"
                                                                for k, v in chosen.items())
    other = "full" if scale == "quick" else "quick"
    line = f"SCALE={scale}" + (f": {what}" if what else "")
    if minutes:
        line += (f". About {_minutes(minutes[SCALES.index(scale)])} on a 2-core CPU "
                 f"(SCALE={other}: about {_minutes(minutes[SCALES.index(other)])})")
    print(line + f"; device {ch.device}.")
    return ch


def _minutes(m: float) -> str:
    return "1 min" if m < 1.5 else f"{m:.0f} min"


def reference_models(kinds: Sequence[str] = ("baseline", "regularized"), device: Any = None,
                     arch: str | None = None, root: Any = None
                     ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Load the reference runs ``{arch}_{kind}`` for each kind: ``(models, metas)`` keyed by
    kind, in eval mode. ``arch``: ResNet-18 if any of its runs is there, else MobileNet-V2.
    Prints one line per run (what it is, how far it trained) or says it is missing; raises
    FileNotFoundError when none of them is there."""
    from ..study import reference

    found = reference.available(root)
    if arch is None:
        arch = "resnet18" if any(n.startswith("resnet18") for n in found) else "mobilenet_v2"
    models, metas = {}, {}
    for kind in kinds:
        name = f"{arch}_{kind}"
        if name in found:
            models[kind], metas[kind] = reference.load(name, device, root)
            print(reference.describe_line(name, root))
        else:
            print(f"missing: {name} (what needs it is skipped)")
    if not models:
        raise FileNotFoundError(f"none of the reference runs {[f'{arch}_{k}' for k in kinds]} "
                                f"is in {reference.find_root(root)}: see reference/README.md")
    return models, metas
