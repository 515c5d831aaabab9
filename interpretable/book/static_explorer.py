"""A static explorer of precomputed pictures: one self-contained HTML snippet for the book.

A widget explorer needs a running Python kernel: in the rendered HTML book it shows only its
first setting. A static explorer instead receives, when the chapter runs, the picture of every
combination of its controls (:class:`ExplorerData`: a full grid, one array axis per control)
and :class:`Explorer` turns them into ONE HTML snippet: small PNGs, a colour key,
``<select>`` and ``<input type=range>`` controls, and a few lines of plain JavaScript that
swap the ``<img>`` source. No external script, nothing loaded from the network; every element
id carries a fresh prefix, so one page can show several explorers.

The root element has the class ``itp-explorer``, the picture the class
``itp-explorer-view`` and every control a ``data-key`` (its name):
``tools/check_explorer.py`` drives them in a browser and fails when a control changes
nothing, so every control's options must change the picture.

Used by chapter 3 (``interpretable.book.explorer``: model x image x method x layer x class,
the defaults here) and chapter 4 (``interpretable.book.fastcam_explorer``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["CONTROLS", "COLORS", "DISPLAY", "Legend", "heat_legend", "ExplorerData",
           "Explorer", "pixels", "page"]

#: the default controls, in the order of the picture array's axes (chapter 3's explorer)
CONTROLS = ("model", "image", "method", "layer", "class")
#: colours of each map picture's PNG palette (128: no visible banding, 2/3 of the bytes)
COLORS = 128
#: displayed size of a picture in CSS pixels (the PNGs are the images' 32 x 32 pixels)
DISPLAY = 128
#: the note under a heat-map picture
HEAT_NOTE = "relative importance, scaled to [0, 1] per map"


@dataclass(frozen=True)
class Legend:
    """The colour key beside the picture: a vertical ``strip`` (uint8 (h, w, 3), shown
    10 px wide and as tall as the picture) with a label at its ``top`` and ``bottom``, and a
    ``note`` under the pictures."""

    strip: np.ndarray
    top: str = "1 high"
    bottom: str = "0 low"
    note: str = HEAT_NOTE


def heat_legend(height: int = 64, width: int = 8) -> Legend:
    """The heat map's colormap (``interpretable.viz.HEAT_CMAP``), 1 at the top."""
    import matplotlib

    from ..viz import HEAT_CMAP

    rgb = matplotlib.colormaps[HEAT_CMAP](np.linspace(1, 0, height))[:, :3]
    return Legend((np.repeat(rgb[:, None], width, axis=1) * 255).round().astype(np.uint8))


@dataclass
class ExplorerData:
    """What an explorer shows, precomputed.

    ``options``: the option labels of each control; ``controls``: the control names in the
    order of the picture array's axes (default :data:`CONTROLS`); ``pictures``: uint8
    (n_1, ..., n_k, H, W, 3) for the k controls' option counts; ``photos``: uint8
    (images, H, W, 3), one per option of the ``slider`` control (shown beside the picture);
    ``captions``: strings over the option counts of ``caption_axes``; ``seconds``: the time
    the pictures took; ``start``: the first option index of some controls (negative counts
    from the end); ``slider``: the control shown as a range input with its option's name
    beside it (the others are drop-down lists). ``legends``: colour keys (default the heat
    map's) and ``legend_index``: int, over the option counts of ``legend_axes``, which key
    each setting shows (default: the first everywhere).
    """

    options: dict[str, list[str]]
    pictures: np.ndarray
    photos: np.ndarray
    captions: np.ndarray
    seconds: float = 0.0
    controls: tuple[str, ...] = CONTROLS
    caption_axes: tuple[str, ...] = ("model", "image", "class")
    start: dict[str, int] = field(default_factory=lambda: {"layer": -1})
    slider: str = "image"
    legends: tuple[Legend, ...] = ()
    legend_axes: tuple[str, ...] = ()
    legend_index: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.controls = tuple(self.controls)
        if set(self.controls) != set(self.options) or len(set(self.controls)) != len(
                self.controls):
            raise ValueError(f"controls {self.controls} must name each key of options "
                             f"{tuple(self.options)} once")
        for name, axes in (("caption_axes", self.caption_axes),
                           ("legend_axes", self.legend_axes), ("slider", (self.slider,))):
            if not set(axes) <= set(self.controls):
                raise ValueError(f"{name} {axes} must name controls of {self.controls}")
        sizes = self.sizes
        if tuple(self.pictures.shape[:len(sizes)]) != sizes or self.pictures.ndim != len(
                sizes) + 3:
            raise ValueError(f"pictures must be {sizes} + (H, W, 3) for the options, got "
                             f"{self.pictures.shape}")
        if self.photos.shape[0] != len(self.options[self.slider]):
            raise ValueError(f"photos must have one entry per {self.slider}")
        if self.captions.shape != self.shape_of(self.caption_axes):
            raise ValueError(f"captions must have one entry per {self.caption_axes}, "
                             f"shape {self.shape_of(self.caption_axes)}")
        if self.legend_index is not None and (
                self.legend_index.shape != self.shape_of(self.legend_axes)
                or not 0 <= self.legend_index.min() <= self.legend_index.max()
                < len(self.legends)):
            raise ValueError("legend_index must index legends, one entry per "
                             f"{self.legend_axes}")

    @property
    def sizes(self) -> tuple[int, ...]:
        """The number of options of each control, in the order of :attr:`controls`."""
        return self.shape_of(self.controls)

    def shape_of(self, axes: Sequence[str]) -> tuple[int, ...]:
        """The option counts of the controls ``axes``."""
        return tuple(len(self.options[a]) for a in axes)

    @property
    def combinations(self) -> int:
        """How many pictures the explorer offers."""
        return int(np.prod(self.sizes))


def pixels(rgb: Tensor) -> np.ndarray:
    """Float RGB in [0, 1] (..., H, W, 3) -> uint8 numpy."""
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


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
    """A static explorer of precomputed pictures (:class:`ExplorerData`); displays itself in
    a notebook and in the built book as one HTML snippet (:meth:`to_html`).

    ``start``: the first setting, an option index per control (default: the data's
    ``start``, else the first option); ``size``: displayed size of the pictures in CSS
    pixels; ``colors``: palette size of the pictures' PNGs (None: full RGB). Identical
    pictures (e.g. Grad-CAM and XGrad-CAM at the last layer) are stored once.
    """

    def __init__(self, data: ExplorerData, title: str | None = None, size: int = DISPLAY,
                 colors: int | None = COLORS, start: Mapping[str, int] | None = None):
        self.data, self.title, self.size = data, title, size
        first = {**data.start, **(start or {})}
        self.start = [first.get(c, 0) % n for c, n in zip(data.controls, data.sizes,
                                                          strict=True)]
        seen: dict[str, int] = {}

        def add(rgb: np.ndarray, palette: int | None) -> int:
            text = _png(rgb, palette)
            return seen.setdefault(text, len(seen))

        flat = data.pictures.reshape(-1, *data.pictures.shape[len(data.controls):])
        self._view = [add(p, colors) for p in flat]
        self._photo = [add(p, None) for p in data.photos]
        self._png = list(seen)
        self._legends = list(data.legends) or [heat_legend()]
        self._strips = [_png(lg.strip) for lg in self._legends]
        self._strip = self._strips[0]

    def __repr__(self) -> str:
        sizes = " x ".join(f"{len(self.data.options[k])} {k}" for k in self.data.controls)
        return f"Explorer({sizes}: {self.data.combinations} pictures)"

    def _repr_html_(self) -> str:
        return self.to_html()

    def _dims(self, axes: Sequence[str]) -> list[int]:
        return [self.data.controls.index(a) for a in axes]

    def _legend_of(self, setting: Sequence[int]) -> int:
        """The legend the setting (an option index per control) shows."""
        d = self.data
        if d.legend_index is None or not d.legend_axes:
            return 0
        return int(d.legend_index[tuple(setting[i] for i in self._dims(d.legend_axes))])

    def payload(self) -> dict[str, Any]:
        """The data the script reads: controls, their sizes, the unique PNGs (base64) and,
        per output, the controls it depends on (``dims``) and its values in row-major order
        over them (PNG indices, or texts)."""
        d = self.data
        slider = self._dims([d.slider])
        outputs = [
            {"cls": "itp-explorer-view", "dims": list(range(len(d.controls))), "png": True,
             "values": self._view},
            {"cls": "itp-explorer-photo", "dims": slider, "png": True, "values": self._photo},
            {"cls": "itp-explorer-caption", "dims": self._dims(d.caption_axes), "png": False,
             "values": [str(c) for c in d.captions.flatten()]},
            {"cls": f"itp-explorer-{d.slider}-name", "dims": slider, "png": False,
             "values": list(d.options[d.slider])},
        ]
        png = list(self._png)
        if d.legend_axes:  # the colour key switches with the setting
            index = (np.zeros(d.shape_of(d.legend_axes), int) if d.legend_index is None
                     else d.legend_index).flatten().tolist()
            dims = self._dims(d.legend_axes)
            strips = [len(png) + i for i in range(len(self._strips))]
            png += self._strips
            outputs.append({"cls": "itp-explorer-key", "dims": dims, "png": True,
                            "values": [strips[i] for i in index]})
            for part in ("top", "bottom", "note"):
                outputs.append({"cls": f"itp-explorer-key-{part}", "dims": dims,
                                "png": False, "values": [getattr(self._legends[i], part)
                                                         for i in index]})
        return {"controls": list(d.controls), "sizes": list(d.sizes), "png": png,
                "outputs": outputs}

    def to_html(self, script: bool = True) -> str:
        """The explorer as one HTML snippet (a fresh id prefix at each call).

        ``script=False`` leaves the script out: a dead explorer that shows only its first
        setting (what tools/check_explorer.py must catch)."""
        uid = f"itp-explorer-{uuid.uuid4().hex[:12]}"
        d = self.data
        opts, esc, px, at = d.options, html.escape, self.size, self.start
        rows = []
        for n, key in enumerate(d.controls):
            ident = f"{uid}-{key}"
            if key == d.slider:
                ctrl = (f'<input type="range" id="{ident}" data-key="{key}" min="0" '
                        f'max="{len(opts[key]) - 1}" step="1" value="{at[n]}" '
                        'style="width:9em;vertical-align:middle"> <span '
                        f'class="itp-explorer-{key}-name" style="display:inline-block;'
                        f'min-width:9em">{esc(opts[key][at[n]])}</span>')
            else:
                items = "".join(f'<option value="{i}"{" selected" if i == at[n] else ""}>'
                                f"{esc(o)}</option>" for i, o in enumerate(opts[key]))
                ctrl = f'<select id="{ident}" data-key="{key}">{items}</select>'
            rows.append(f'<label for="{ident}" style="font-weight:600">{key}</label>'
                        f"<span>{ctrl}</span>")
        img = (f'width="{px}" height="{px}" style="width:{px}px;height:{px}px;'
               'image-rendering:pixelated;display:block"')
        photo = self._png[self._photo[at[self._dims([d.slider])[0]]]]
        view = self._png[self._view[int(np.ravel_multi_index(at, d.sizes))]]
        k = self._legend_of(at)
        legend = self._legends[k]

        def cls(name: str) -> str:  # classes of the key only where the script swaps it
            return f' class="itp-explorer-{name}"' if d.legend_axes else ""

        strip = (f'<div style="display:flex;gap:4px;align-items:stretch;height:{px}px">'
                 f'<img{cls("key")} alt="colour scale" src="data:image/png;base64,'
                 f'{self._strips[k]}" style="width:10px;height:{px}px;display:block">'
                 '<div style="display:flex;flex-direction:column;justify-content:'
                 f'space-between;font-size:12px"><span{cls("key-top")}>{esc(legend.top)}'
                 f'</span><span{cls("key-bottom")}>{esc(legend.bottom)}</span>'
                 '</div></div>')
        caption = esc(str(d.captions[tuple(at[i] for i in self._dims(d.caption_axes))]))
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
            f'<div{cls("key-note")} style="font-size:12px;margin-top:4px">'
            f"{esc(legend.note)}</div>",
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
