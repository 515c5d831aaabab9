"""An explorer of class activation maps that works in the static book (chapter 3).

A widget explorer needs a running Python kernel: in the rendered HTML book it shows only its
first setting. :func:`precompute` therefore computes, when the chapter runs, the map of every
combination the explorer offers (model x image x method x layer x class) with the package's
own calls, batched: one call per (model, method, layer) on all images and all class choices
at once. :class:`Explorer` (``interpretable.book.static_explorer``, re-exported here with
:class:`ExplorerData` and :func:`page`) turns them into ONE self-contained HTML snippet: small
PNGs (the image with the map overlaid in the book's colormap), a colour strip, ``<select>``
and ``<input type=range>`` controls, and a few lines of plain JavaScript that swap the
``<img>`` source. No external script, nothing loaded from the network.

The root element has the class ``itp-explorer``, the picture the class
``itp-explorer-view`` and every control a ``data-key`` (its name):
``tools/check_explorer.py`` drives them in a browser. :func:`live` is the ipywidgets
version for JupyterLab (any image of the gallery, computed on demand).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .static_explorer import COLORS, CONTROLS, DISPLAY, Explorer, ExplorerData, page
from .static_explorer import pixels as _pixels

__all__ = ["CHOICES", "METHOD_NAMES", "CONTROLS", "METHOD_OPTIONS", "COLORS", "DISPLAY",
           "ExplorerData", "Explorer", "class_targets", "choice_rank", "precompute", "page",
           "live"]

#: the class choices the chapter offers: the true class, then the 2nd and 3rd most likely
CHOICES = ("true class", "2nd predicted", "3rd predicted")
#: the five class activation maps of the chapter (display names of the registry)
METHOD_NAMES = ("Grad-CAM", "Grad-CAM++", "XGrad-CAM", "Layer-CAM", "Score-CAM")
#: Score-CAM in few large batches, without building an optimized copy of the model (a
#: one-off call on a few hundred masked images: the build would cost more than it saves)
METHOD_OPTIONS = {"scorecam": {"batch_size": 1024, "optimize": False}}


def choice_rank(choice: str) -> int | None:
    """None for ``"true class"``, k for a k-th most likely class (``"2nd predicted"``,
    ``"top-3"``, ``"20th"``): the first number in the text."""
    if choice == "true class":
        return None
    found = re.search(r"\d+", choice)
    if not found or int(found.group()) < 1:
        raise ValueError(f"choice must be 'true class' or name a rank >= 1 ('2nd "
                         f"predicted'), got {choice!r}")
    return int(found.group())


def class_targets(model: nn.Module, x: Tensor, y: Tensor, choices: Sequence[str] = CHOICES
                  ) -> tuple[Tensor, Tensor]:
    """The class each choice asks for, and its softmax probability: two (C, B) tensors for
    images ``x`` (B, 3, H, W) with labels ``y`` (B,)."""
    with torch.no_grad():
        p = model(x).softmax(1)
    ranks = [choice_rank(c) for c in choices]
    order = p.topk(max([k for k in ranks if k] or [1]), dim=1).indices  # (B, k_max)
    t = torch.stack([y if k is None else order[:, k - 1] for k in ranks])
    return t, p.gather(1, t.T).T


def precompute(models: Mapping[str, nn.Module], x: Tensor, y: Tensor,
               class_names: Sequence[str], *, methods: Sequence[str] = METHOD_NAMES,
               layers: Sequence[int] | None = None, choices: Sequence[str] = CHOICES,
               image_names: Sequence[str] | None = None, alpha: float = 0.5,
               method_options: Mapping[str, Mapping[str, Any]] | None = None
               ) -> ExplorerData:
    """Every map the explorer offers, for images ``x`` (B, 3, H, W) with labels ``y`` (B,).

    ``models``: ``{name: model}`` of one architecture; ``methods``: display names or keys of
    :data:`interpretable.attribution.METHODS`; ``layers``: indices into
    :func:`interpretable.models.scale_layers` (default all five); ``choices``: see
    :func:`class_targets`; ``method_options``: options of :func:`build_method` by method
    key (default :data:`METHOD_OPTIONS`). Each (model, method, layer) is one call on all
    images and all choices at once (B x C maps); the overlays are coloured in one batch.
    """
    from ..attribution import METHODS, build_method, method_key
    from ..data import denormalize
    from ..models import scale_layers
    from ..viz import overlay
    from .cams import layer_labels

    if not models:
        raise ValueError("models must name at least one model")
    start = time.perf_counter()
    first = next(iter(models.values()))
    labels = list(layer_labels(first, x[:1]))
    layers = list(range(len(labels))) if layers is None else list(layers)
    keys = [method_key(m) for m in methods]
    method_options = METHOD_OPTIONS if method_options is None else method_options
    n_b, n_c = len(x), len(choices)
    pix = denormalize(x).clamp(0, 1).repeat(n_c, 1, 1, 1)  # (C*B, 3, H, W), choice-major
    size = tuple(x.shape[-2:])
    pictures = np.zeros((len(models), n_b, len(keys), len(layers), n_c, *size, 3), np.uint8)
    captions = np.empty((len(models), n_b, n_c), dtype=object)
    for i, model in enumerate(models.values()):
        t, p = class_targets(model, x, y, choices)  # (C, B)
        for b in range(n_b):
            for c in range(n_c):
                captions[i, b, c] = (f"{choices[c]}: {class_names[int(t[c, b])]} "
                                     f"(p = {float(p[c, b]):.2f})")
        xx, tt = x.repeat(n_c, 1, 1, 1), t.flatten()
        mods = scale_layers(model)
        for j, key in enumerate(keys):
            for k, li in enumerate(layers):
                with build_method(key, model, layer=mods[li],
                                  **method_options.get(key, {})) as cam:
                    maps = cam(xx, tt, normalize=True)  # (C*B, H, W)
                rgb = _pixels(overlay(pix, maps, alpha=alpha))
                pictures[i, :, j, k] = rgb.reshape(n_c, n_b, *size, 3).swapaxes(0, 1)
    names = list(image_names) if image_names else [class_names[int(c)] for c in y]
    options = {"model": list(models), "image": names,
               "method": [METHODS[k].name for k in keys],
               "layer": [labels[li] for li in layers], "class": list(choices)}
    return ExplorerData(options, pictures, _pixels(denormalize(x).permute(0, 2, 3, 1)),
                        captions, time.perf_counter() - start)


def live(models: Mapping[str, nn.Module], x: Tensor, y: Tensor, class_names: Sequence[str],
         choices: Sequence[str] = ("true class", "top-1", "top-2", "top-3"),
         methods: Sequence[str] = METHOD_NAMES, start: int = 0) -> Any:
    """The ipywidgets explorer for JupyterLab: model, image (any of ``x``), class, method and
    layer; each change computes the map. Returns the ``ipywidgets.interactive``."""
    import ipywidgets as widgets
    from matplotlib.figure import Figure

    from ..attribution import build_method
    from ..models import scale_layers
    from ..viz import overlay, to_image
    from . import style
    from .cams import layer_labels

    labels = list(layer_labels(next(iter(models.values())), x[:1]))

    def show(model_name, index, choice, method, layer):
        m = models[model_name]
        xi, yi = x[index:index + 1], y[index:index + 1]
        t, p = class_targets(m, xi, yi, [choice])
        with build_method(method, m, layer=scale_layers(m)[labels.index(layer)]) as cam:
            heat = cam(xi, t[0], normalize=True)[0].cpu().numpy()
        pic = to_image(xi[0])
        fig = Figure(figsize=(6.0, 2.6), layout="constrained")
        axes = fig.subplots(1, 2)
        axes[0].imshow(pic)
        axes[0].set_title(f"true: {class_names[int(yi)]}")
        axes[1].imshow(overlay(pic, heat))
        axes[1].set_title(f"{class_names[int(t[0, 0])]} (p = {float(p[0, 0]):.2f})")
        for ax in axes:
            ax.set_xticks([]), ax.set_yticks([])
        style.colorbar(fig, axes[1], label="relative importance")
        fig.suptitle(f"{method}, {layer}, {model_name}")
        return fig

    def shown(**kw):
        from IPython.display import display

        display(show(**kw))

    return widgets.interactive(
        shown,
        model_name=widgets.Dropdown(options=list(models), description="model"),
        index=widgets.IntSlider(value=start, min=0, max=len(x) - 1,
                                continuous_update=False, description="image"),
        choice=widgets.Dropdown(options=list(choices), description="class"),
        method=widgets.Dropdown(options=list(methods), description="method"),
        layer=widgets.Dropdown(options=labels, value=labels[-1], description="layer"),
    )
