"""FastCAM's public names where API.md puts them; the code lives in
:mod:`interpretable.attribution.fastcam` (saliency, FastCAM) and
:mod:`interpretable.attribution.smoe` (channel statistics, per-layer normalizations)."""

from .attribution.fastcam import *  # noqa: F403
from .attribution.fastcam import __all__ as _fastcam_all
from .attribution.smoe import *  # noqa: F403
from .attribution.smoe import __all__ as _smoe_all

__all__ = [*_fastcam_all, *_smoe_all]
