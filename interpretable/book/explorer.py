"""An explorer of class activation maps that works in the static book.

A widget explorer needs a running Python kernel: in the rendered HTML book it shows only its
first setting. :func:`precompute` therefore computes, when the chapter runs, the map of every
combination the explorer offers (model x image x method x layer x class) with the package's
own calls, batched: one call per (model, method, layer) on all images and all class choices
at once. :class:`Explorer` turns them into ONE self-contained HTML snippet: small PNGs
(the image with the map overlaid in the book's colormap), a colour strip, ``<select>`` and
``<input type=range>`` controls, and a few lines of plain JavaScript that swap the ``<img>``
source. No external script, nothing loaded from the network; every element id carries a
fresh prefix, so one page can show several explorers.

The root element has the class ``itp-explorer``, the picture the class
``itp-explorer-view`` and every control a ``data-key`` (its name):
``tools/check_explorer.py`` drives them in a browser. :func:`live` is the ipywidgets
version for JupyterLab (any image of the gallery, computed on demand).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["CHOICES", "METHOD_NAMES", "CONTROLS", "METHOD_OPTIONS", "COLORS", "ExplorerData",
           "Explorer", "class_targets", "choice_rank", "precompute", "page", "live"]

#: the class choices the chapter offers: the true class, then the 2nd and 3rd most likely
CHOICES = ("true class", "2nd predicted", "3rd predicted")
#: the five class activation maps of the chapter (display names of the registry)
METHOD_NAMES = ("Grad-CAM", "Grad-CAM++", "XGrad-CAM", "Layer-CAM", "Score-CAM")
#: the controls, in the order of the picture array's axes
CONTROLS = ("model", "image", "method", "layer", "class")
#: Score-CAM in few large batches, without building an optimized copy of the model (a
#: one-off call on a few hundred masked images: the build would cost more than it saves)
METHOD_OPTIONS = {"scorecam": {"batch_size": 1024, "optimize": False}}
#: colours of each map picture's PNG palette (128: no visible banding, 2/3 of the bytes)
COLORS = 128
#: displayed size of a picture in CSS pixels (the PNGs are the images' 32 x 32 pixels)
DISPLAY = 128


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


@dataclass
class ExplorerData:
    """What an explorer shows, precomputed.

    ``options``: the option labels of each control of :data:`CONTROLS`; ``pictures``: uint8
    (models, images, methods, layers, classes, H, W, 3), each image with its map overlaid;
    ``photos``: uint8 (images, H, W, 3); ``captions``: (models, images, classes) strings
    (class asked for and its probability); ``seconds``: the time the maps took.
    """

    options: dict[str, list[str]]
    pictures: np.ndarray
    photos: np.ndarray
    captions: np.ndarray
    seconds: float = 0.0

    def __post_init__(self) -> None:
        sizes = tuple(len(self.options[c]) for c in CONTROLS)
        if tuple(self.pictures.shape[:5]) != sizes:
            raise ValueError(f"pictures must be {sizes} + (H, W, 3) for the options, got "
                             f"{self.pictures.shape}")
        if self.photos.shape[0] != sizes[1] or self.captions.shape != (sizes[0], sizes[1],
                                                                        sizes[4]):
            raise ValueError("photos must have one entry per image and captions one per "
                             "(model, image, class)")

    @property
    def combinations(self) -> int:
        """How many pictures the explorer offers."""
        return int(np.prod(self.pictures.shape[:5]))


def _pixels(rgb: Tensor) -> np.ndarray:
    """Float RGB in [0, 1] (..., H, W, 3) -> uint8 numpy."""
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


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


def _png(rgb: np.ndarray, colors: int | None = None) -> str:
    """A (H, W, 3) uint8 picture as base64 PNG text; ``colors``: a palette of at most that
    many colours (median cut, no dithering) instead of full RGB."""
    from PIL import Image

    buf = io.BytesIO()
    im = Image.fromarray(np.ascontiguousarray(rgb))
    if colors:
        im = im.quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                         dither=Image.Dither.NONE)
    im.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _strip(height: int = 64, width: int = 8) -> str:
    """The colour strip of the heat map's colormap, 1 at the top, as base64 PNG text."""
    import matplotlib

    from ..viz import HEAT_CMAP

    rgb = matplotlib.colormaps[HEAT_CMAP](np.linspace(1, 0, height))[:, :3]
    return _png((np.repeat(rgb[:, None], width, axis=1) * 255).round().astype(np.uint8))


# The explorer's script: reads its data, computes the flat index of each output from the
# values of the controls it depends on, and swaps image sources and captions.
_SCRIPT = """(function () {
  var root = document.getElementById("%(uid)s");
  var data = JSON.parse(document.getElementById("%(uid)s-data").textContent);
  var inputs = data.controls.map(function (c) {
    return root.querySelector('[data-key="' + c + '"]');
  });
  function at(dims) {
    var i = 0;
    dims.forEach(function (d) { i = i * data.sizes[d] + Number(inputs[d].value); });
    return i;
  }
  function show() {
    data.outputs.forEach(function (o) {
      var el = root.querySelector("." + o.cls), v = o.values[at(o.dims)];
      if (o.png) { el.src = "data:image/png;base64," + data.png[v]; } else { el.textContent = v; }
    });
  }
  inputs.forEach(function (el) {
    el.addEventListener("input", show);
    el.addEventListener("change", show);
  });
  show();
})();"""


class Explorer:
    """A static explorer of precomputed maps (:func:`precompute`); displays itself in a
    notebook and in the built book as one HTML snippet (:meth:`to_html`).

    ``start``: the first setting, an option index per control (default: the first option,
    the deepest layer); ``size``: displayed size of the pictures in CSS pixels;
    ``colors``: palette size of the map pictures' PNGs (None: full RGB). Identical pictures
    (Grad-CAM and XGrad-CAM coincide at the last layer) are stored once.
    """

    def __init__(self, data: ExplorerData, title: str | None = None, size: int = DISPLAY,
                 colors: int | None = COLORS, start: Mapping[str, int] | None = None):
        self.data, self.title, self.size = data, title, size
        sizes = [len(data.options[c]) for c in CONTROLS]
        first = {"layer": -1, **(start or {})}
        self.start = [first.get(c, 0) % n for c, n in zip(CONTROLS, sizes, strict=True)]
        seen: dict[str, int] = {}

        def add(rgb: np.ndarray, palette: int | None) -> int:
            text = _png(rgb, palette)
            return seen.setdefault(text, len(seen))

        flat = data.pictures.reshape(-1, *data.pictures.shape[5:])
        self._view = [add(p, colors) for p in flat]
        self._photo = [add(p, None) for p in data.photos]
        self._png = list(seen)
        self._strip = _strip()

    def __repr__(self) -> str:
        sizes = " x ".join(f"{len(v)} {k}" for k, v in self.data.options.items())
        return f"Explorer({sizes}: {self.data.combinations} pictures)"

    def _repr_html_(self) -> str:
        return self.to_html()

    def payload(self) -> dict[str, Any]:
        """The data the script reads: controls, their sizes, the unique PNGs (base64) and,
        per output, the controls it depends on (``dims``) and its values in row-major order
        over them (PNG indices, or texts)."""
        opts = self.data.options
        return {
            "controls": list(CONTROLS), "sizes": [len(opts[c]) for c in CONTROLS],
            "png": self._png,
            "outputs": [
                {"cls": "itp-explorer-view", "dims": [0, 1, 2, 3, 4], "png": True,
                 "values": self._view},
                {"cls": "itp-explorer-photo", "dims": [1], "png": True, "values": self._photo},
                {"cls": "itp-explorer-caption", "dims": [0, 1, 4], "png": False,
                 "values": [str(c) for c in self.data.captions.flatten()]},
                {"cls": "itp-explorer-image-name", "dims": [1], "png": False,
                 "values": list(opts["image"])},
            ],
        }

    def to_html(self, script: bool = True) -> str:
        """The explorer as one HTML snippet (a fresh id prefix at each call).

        ``script=False`` leaves the script out: a dead explorer that shows only its first
        setting (what tools/check_explorer.py must catch)."""
        uid = f"itp-explorer-{uuid.uuid4().hex[:12]}"
        opts, esc, px, at = self.data.options, html.escape, self.size, self.start
        rows = []
        for n, key in enumerate(CONTROLS):
            ident = f"{uid}-{key}"
            if key == "image":
                ctrl = (f'<input type="range" id="{ident}" data-key="image" min="0" '
                        f'max="{len(opts[key]) - 1}" step="1" value="{at[n]}" '
                        'style="width:9em;vertical-align:middle"> <span '
                        'class="itp-explorer-image-name" style="display:inline-block;'
                        f'min-width:9em">{esc(opts[key][at[n]])}</span>')
            else:
                items = "".join(f'<option value="{i}"{" selected" if i == at[n] else ""}>'
                                f"{esc(o)}</option>" for i, o in enumerate(opts[key]))
                ctrl = f'<select id="{ident}" data-key="{key}">{items}</select>'
            rows.append(f'<label for="{ident}" style="font-weight:600">{key}</label>'
                        f"<span>{ctrl}</span>")
        img = (f'width="{px}" height="{px}" style="width:{px}px;height:{px}px;'
               'image-rendering:pixelated;display:block"')
        photo = self._png[self._photo[at[1]]]
        view = self._png[self._view[int(np.ravel_multi_index(at, self.data.pictures.shape[:5]))]]
        strip = (f'<div style="display:flex;gap:4px;align-items:stretch;height:{px}px">'
                 f'<img alt="colour scale" src="data:image/png;base64,{self._strip}" '
                 f'style="width:10px;height:{px}px;display:block">'
                 '<div style="display:flex;flex-direction:column;justify-content:'
                 'space-between;font-size:12px"><span>1 high</span><span>0 low</span>'
                 '</div></div>')
        caption = esc(str(self.data.captions[at[0], at[1], at[4]]))
        title = f'<div style="font-weight:600;margin-bottom:4px">{esc(self.title)}</div>' \
            if self.title else ""
        parts = [
            f'<div class="itp-explorer" id="{uid}" style="font-size:14px;line-height:1.4;'
            'margin:0.5em 0">', title,
            '<div style="display:flex;flex-wrap:wrap;gap:12px 24px;align-items:flex-start">',
            '<div style="display:grid;grid-template-columns:max-content max-content;'
            'gap:6px 10px;align-items:center">', *rows, "</div>",
            '<div style="display:flex;gap:12px;align-items:flex-start">',
            f'<div><img class="itp-explorer-photo" alt="image" {img} '
            f'src="data:image/png;base64,{photo}"><div style="font-size:12px">image</div>'
            "</div>",
            '<div><div style="display:flex;gap:6px;align-items:flex-start">'
            f'<img class="itp-explorer-view" alt="map over the image" {img} '
            f'src="data:image/png;base64,{view}">{strip}</div>'
            '<div class="itp-explorer-caption" style="font-size:12px;max-width:'
            f'{px + 70}px">{caption}</div></div>',
            "</div></div>",
            '<div style="font-size:12px;margin-top:4px">relative importance, scaled to '
            "[0, 1] per map</div>",
        ]
        if script:
            blob = json.dumps(self.payload(), separators=(",", ":")).replace("</", "<\\/")
            parts += [f'<script type="application/json" id="{uid}-data">{blob}</script>',
                      f"<script>{_SCRIPT % {'uid': uid}}</script>"]
        parts.append("</div>")
        return "".join(parts)

    def html(self) -> Any:
        """The snippet as an ``IPython.display.HTML`` object."""
        from IPython.display import HTML

        return HTML(self.to_html())


def page(*snippets: str, title: str = "explorers") -> str:
    """A whole HTML page holding ``snippets`` (e.g. to open an explorer outside the book)."""
    body = "\n".join(snippets)
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}'
            f"</title></head><body>{body}</body></html>")


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
