"""Pictures of maps: LOVI layer colouring, heat maps, overlays and figure grids.

Array conventions: images are RGB floats in [0, 1], channels last (H, W, 3) for display;
model inputs (normalized, channels first) go through :func:`to_image`. Functions that take a
torch tensor return a tensor on the same device (so a batch coloured on the GPU stays there);
given a numpy array they return numpy. :func:`show_grid` returns a ``matplotlib.figure.Figure``
built without pyplot (safe under any backend, nothing is shown or kept open).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .attribution.fastcam import check_layer_weights
from .data import denormalize

__all__ = ["lovi", "hsv_to_rgb", "heatmap", "overlay", "to_image", "show_grid", "LOVI_ALPHA",
           "signed_rgb", "magnitude"]

#: Weight of the LOVI colours when blended with the image (the reference's ``AlphaBlend``).
LOVI_ALPHA = 0.75
#: Colormap of heat maps: perceptually uniform, dark = unimportant, bright = important.
HEAT_CMAP = "inferno"


def _as_tensor(a: Any, name: str) -> tuple[Tensor, bool]:
    """(tensor, was_numpy); numpy and nested lists become float tensors on the CPU."""
    if isinstance(a, Tensor):
        return a, False
    if isinstance(a, np.ndarray) or isinstance(a, (list, tuple)):
        arr = np.asarray(a)
        if not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)), True
    raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(a).__name__}")


def _out(t: Tensor, numpy: bool) -> Tensor | np.ndarray:
    return t.detach().cpu().numpy() if numpy else t


def _float(t: Tensor) -> Tensor:
    return t if t.is_floating_point() else t.float()


# --------------------------------------------------------------------------------------------
# LOVI (METHODS.md section 4)
# --------------------------------------------------------------------------------------------


def hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV -> RGB, branch-free and batched: hue in degrees, s and v in [0, 1]; (..., 3).

    Uses f(n) = v - v s max(0, min(k, 4 - k, 1)), k = (n + h / 60) mod 6, RGB = f(5), f(3), f(1).
    """
    n = torch.tensor([5.0, 3.0, 1.0], device=h.device, dtype=h.dtype)
    k = torch.remainder(n + (h / 60.0)[..., None], 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return v[..., None] - (v * s)[..., None] * ramp


def lovi(maps: Any, image: Any = None, w: Any = None, alpha: float = LOVI_ALPHA):
    """Layer-ordered visualization (LOVI) of per-layer maps (METHODS.md section 4).

    Args:
        maps: (L, H, W) or a batch (B, L, H, W), earliest layer first (``saliency``'s
            ``per_layer``), tensor or numpy.
        image: optional picture to blend with, pixel space [0, 1]: (3, H, W) or (H, W, 3)
            (batched: (B, 3, H, W) or (B, H, W, 3)); the result is
            ``alpha * lovi + (1 - alpha) * image`` (the reference's ``AlphaBlend``, 0.75).
        w: optional layer weights (L,), non-negative, applied after the joint normalization.

    Returns:
        (H, W, 3) or (B, H, W, 3) float RGB in [0, 1], same type (and device) as ``maps``.

    Per image: p = range-normalize(stack over all layers jointly) * w; with pos_c = 1 - c/(L-1),
    hue = 300 deg * sum_c p_c pos_c / sum_c p_c (earliest layer magenta, deepest red),
    saturation = 1 - (sum_c p_c / (L max_c p_c) - 1/L) / (1 - 1/L) (white where all layers
    are equally active), value = max_c p_c. Where every layer is 0 the pixel is black (the
    reference divides 0 by 0 there). A constant non-zero stack is left as is (the reference
    normalizes only when max > min); values above 1 are clipped. A single layer (L = 1) has no
    order: it is drawn in grey levels.
    """
    m, numpy = _as_tensor(maps, "maps")
    if m.dim() not in (3, 4):
        raise ValueError(f"maps must be (L, H, W) or (B, L, H, W), got shape {tuple(m.shape)}")
    single = m.dim() == 3
    p = _float(m[None] if single else m)
    b, n_layers = p.shape[:2]
    if n_layers == 0:
        raise ValueError("maps has no layers")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")

    flat = p.reshape(b, -1)
    lo = flat.amin(1).view(b, 1, 1, 1)
    span = flat.amax(1).view(b, 1, 1, 1) - lo
    p = torch.where(span > 0, (p - lo) / torch.where(span > 0, span, 1.0), p).clamp(0.0, 1.0)
    wt = None if w is None else torch.tensor(check_layer_weights(w, n_layers, "w"),
                                             device=p.device, dtype=p.dtype)
    if wt is not None:
        p = p * wt.view(1, n_layers, 1, 1)

    total = p.sum(1)
    peak = p.amax(1)
    on = peak > 0
    if n_layers > 1:
        pos = 1.0 - torch.arange(n_layers, device=p.device, dtype=p.dtype) / (n_layers - 1)
        safe_total = torch.where(on, total, torch.ones_like(total))
        hue = 300.0 * torch.einsum("blhw,l->bhw", p, pos) / safe_total
        frac = 1.0 / n_layers
        spread = total / (n_layers * torch.where(on, peak, torch.ones_like(peak)))
        sat = (1.0 - (spread - frac) / (1.0 - frac)).clamp(0.0, 1.0)
        hue = torch.where(on, hue, torch.zeros_like(hue))
        sat = torch.where(on, sat, torch.zeros_like(sat))
    else:
        hue = torch.zeros_like(peak)
        sat = torch.zeros_like(peak)
    rgb = hsv_to_rgb(hue, sat, peak.clamp(0.0, 1.0)).clamp(0.0, 1.0)

    if image is not None:
        img = _image_hwc(image, "image", batched=not single).to(rgb.device, rgb.dtype)
        if img.dim() == 3:
            img = img[None]
        if img.shape[1:3] != rgb.shape[1:3] or img.shape[0] not in (1, b):
            raise ValueError(
                f"image must be {tuple(rgb.shape[1:3])} pixels like the maps (batch {b}), "
                f"got shape {tuple(img.shape)}"
            )
        rgb = float(alpha) * rgb + (1.0 - float(alpha)) * img
    return _out(rgb[0] if single else rgb, numpy)


# --------------------------------------------------------------------------------------------
# Heat maps and overlays
# --------------------------------------------------------------------------------------------


def _lut(cmap: Any, device, dtype) -> Tensor:
    """A (256, 3) colour table of a matplotlib colormap (name or object)."""
    import matplotlib

    cm = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    table = cm(np.linspace(0.0, 1.0, 256))[:, :3]
    return torch.as_tensor(table, device=device, dtype=dtype)


def _minmax(maps: Tensor) -> Tensor:
    """Per-map min-max over the last two dims; constant maps become 0."""
    flat = maps.flatten(-2)
    lo = flat.amin(-1, keepdim=True)
    span = flat.amax(-1, keepdim=True) - lo
    out = torch.where(span > 0, (flat - lo) / torch.where(span > 0, span, 1.0), 0.0)
    return out.reshape(maps.shape)


def heatmap(maps: Any, cmap: Any = HEAT_CMAP, normalize: bool = True):
    """Colour maps with a matplotlib colormap: (H, W) or (B, H, W) -> (..., H, W, 3) in [0, 1].

    ``normalize=True`` min-max scales each map first (a constant map gets the colour of 0);
    otherwise values are clipped to [0, 1]. Batched: one table lookup for all maps.
    """
    m, numpy = _as_tensor(maps, "maps")
    if m.dim() < 2:
        raise ValueError(f"maps must be (H, W) or (B, H, W), got shape {tuple(m.shape)}")
    m = _float(m)
    m = _minmax(m) if normalize else m.clamp(0.0, 1.0)
    m = torch.nan_to_num(m, nan=0.0)
    idx = (m * 255.0).round().long().clamp_(0, 255)
    return _out(_lut(cmap, m.device, m.dtype)[idx], numpy)


def _image_hwc(image: Any, name: str, batched: bool | None = None) -> Tensor:
    """Pixel-space image(s) as float (H, W, 3) or (B, H, W, 3) tensors; accepts CHW or HWC."""
    t, _ = _as_tensor(image, name)
    t = _float(t)
    if t.dim() not in (3, 4) or (batched is False and t.dim() == 4):
        raise ValueError(
            f"{name} must be (3, H, W) or (H, W, 3) (or a batch), got {tuple(t.shape)}"
        )
    if batched and t.dim() == 3 and t.shape[-1] != 3 and t.shape[0] != 3:
        raise ValueError(f"{name} must have 3 colour channels, got shape {tuple(t.shape)}")
    if t.shape[-1] == 3:
        return t
    if t.shape[-3] == 3:
        return t.movedim(-3, -1)
    raise ValueError(f"{name} must have 3 colour channels first or last, got {tuple(t.shape)}")


def overlay(image: Any, heat: Any, alpha: float = 0.5, cmap: Any = HEAT_CMAP,
            normalize: bool = True):
    """Blend a heat map onto an image: ``(1 - alpha) * image + alpha * heatmap(heat)``.

    Args:
        image: pixel-space [0, 1] image (3, H, W) / (H, W, 3), or a batch (B, 3, H, W) /
            (B, H, W, 3). For a model input, pass ``to_image(x)``.
        heat: (h, w) or (B, h, w); resized bilinearly to the image's size if needed (so raw
            low-resolution CAMs work too).

    Returns:
        RGB float (H, W, 3) or (B, H, W, 3) in [0, 1], tensor or numpy like ``image``.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    _, numpy = _as_tensor(image, "image")
    img = _image_hwc(image, "image").clamp(0.0, 1.0)
    h, _ = _as_tensor(heat, "heat")
    h = _float(h).to(img.device)
    if h.dim() not in (2, 3):
        raise ValueError(f"heat must be (H, W) or (B, H, W), got shape {tuple(h.shape)}")
    size = tuple(img.shape[-3:-1])
    if tuple(h.shape[-2:]) != size:
        h2 = h[None, None] if h.dim() == 2 else h[:, None]
        h2 = F.interpolate(h2, size=size, mode="bilinear", align_corners=False)
        h = h2[0, 0] if h.dim() == 2 else h2[:, 0]
    colours = heatmap(h, cmap=cmap, normalize=normalize).to(img.dtype)
    out = (1.0 - float(alpha)) * img + float(alpha) * colours
    return _out(out.clamp(0.0, 1.0), numpy)


def to_image(x: Any) -> np.ndarray:
    """Model input (3, H, W) / (B, 3, H, W) -> numpy (H, W, 3) / (B, H, W, 3) in [0, 1].

    Undoes :func:`interpretable.data.normalize` and clips to [0, 1].
    """
    t, _ = _as_tensor(x, "x")
    if t.dim() not in (3, 4) or t.shape[-3] != 3:
        raise ValueError(f"x must be (3, H, W) or (B, 3, H, W), got shape {tuple(t.shape)}")
    pix = denormalize(_float(t.detach())).clamp(0.0, 1.0)
    return pix.movedim(-3, -1).cpu().numpy()


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _display_images(images: Any, denormalize: bool) -> np.ndarray:
    """(B, H, W, 3) numpy in [0, 1] from model inputs or pixel-space pictures."""
    t, _ = _as_tensor(images, "images")
    if t.dim() == 3:
        t = t[None]
    if t.dim() != 4:
        raise ValueError(
            f"images must be a batch (B, 3, H, W) or (B, H, W, 3), got {tuple(t.shape)}"
        )
    if denormalize:
        if t.shape[1] != 3:
            raise ValueError(
                "images must be model inputs (B, 3, H, W) when denormalize=True; "
                f"got {tuple(t.shape)} (pass denormalize=False for pixel-space pictures)"
            )
        return to_image(t)
    return _image_hwc(t, "images").clamp(0.0, 1.0).detach().cpu().numpy()


def show_grid(images: Any, maps: Any = None, titles: Sequence[str] | None = None, *,
              row_labels: Sequence[str] | None = None, alpha: float = 0.5,
              cmap: Any = HEAT_CMAP, denormalize: bool = True, overlay_maps: bool = True,
              cell: float = 1.6, colorbar: bool = True):
    """A grid figure: one row per image, the image then one column per map set.

    Args:
        images: a batch (B, 3, H, W) of model inputs (``denormalize=True``, the default) or
            pixel-space pictures (B, 3, H, W) / (B, H, W, 3) with ``denormalize=False``.
        maps: None (images only), one map set, a list of them, or a dict ``{title: set}``.
            A set is (B, h, w) maps, drawn as overlays on the image (``overlay_maps=True``)
            or as plain heat maps, or (B, H, W, 3) RGB pictures (e.g. :func:`lovi`), shown as
            they are.
        titles: column titles (for the image column and each set; a dict's keys by default).
        row_labels: one label per row (e.g. class names), shown at the left.
        colorbar: one shared colourbar (each map min-max scaled to [0, 1] per image) when
            any set is drawn as a heat map or overlay.

    Returns:
        a ``matplotlib.figure.Figure`` (not registered with pyplot: nothing is shown or kept
        open; in a notebook it renders as the cell's value).
    """
    from matplotlib.figure import Figure

    pics = _display_images(images, denormalize)
    b = pics.shape[0]
    if maps is None:
        sets: list[Any] = []
        names: list[str] = []
    elif isinstance(maps, Mapping):
        sets, names = list(maps.values()), [str(k) for k in maps]
    elif isinstance(maps, (list, tuple)):
        sets, names = list(maps), [""] * len(maps)
    else:
        sets, names = [maps], [""]
    cols = 1 + len(sets)
    if titles is None:
        titles = ["image"] + names if sets else [""] * b
    titles = list(titles)
    if row_labels is not None and len(row_labels) != b:
        raise ValueError(f"row_labels must have {b} entries, got {len(row_labels)}")

    panels: list[np.ndarray] = []  # per set: (B, H, W, 3) numpy
    for i, s in enumerate(sets):
        t, _ = _as_tensor(s, f"maps[{i}]")
        if t.shape[0] != b:
            raise ValueError(f"map set {i} has {t.shape[0]} entries for {b} images")
        if t.dim() == 4 and t.shape[-1] == 3:
            panels.append(t.detach().float().clamp(0, 1).cpu().numpy())
        elif t.dim() == 3:
            if overlay_maps:
                panels.append(np.asarray(overlay(pics, t.detach().cpu(), alpha=alpha, cmap=cmap)))
            else:
                panels.append(heatmap(t.detach().cpu(), cmap=cmap).numpy())
        else:
            raise ValueError(f"map set {i} must be (B, h, w) maps or (B, H, W, 3) pictures, "
                             f"got shape {tuple(t.shape)}")

    if sets:
        rows, ncols = b, cols
    else:  # images only: one row
        rows, ncols = 1, b
    fig = Figure(figsize=(cell * ncols, cell * rows), layout="constrained")
    axes = fig.subplots(rows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if not sets:
        for j in range(b):
            axes[0, j].imshow(pics[j], interpolation="nearest")
            if j < len(titles) and titles[j]:
                axes[0, j].set_title(titles[j], fontsize=9)
            if row_labels is not None:
                axes[0, j].set_xlabel(row_labels[j], fontsize=9)
        return fig
    for r in range(b):
        axes[r, 0].imshow(pics[r], interpolation="nearest")
        for c, panel in enumerate(panels, start=1):
            axes[r, c].imshow(panel[r], interpolation="nearest")
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=9)
    for c in range(min(cols, len(titles))):
        if titles[c]:
            axes[0, c].set_title(titles[c], fontsize=9)
    heat = [i for i, s in enumerate(sets) if _as_tensor(s, "maps")[0].dim() == 3]
    if colorbar and heat:
        import matplotlib as mpl

        sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0, 1),
                                   cmap=mpl.colormaps[cmap] if isinstance(cmap, str) else cmap)
        fig.colorbar(sm, ax=axes[:, 1:], shrink=min(1.0, 3.0 / max(b, 1)) if b > 3 else 0.9,
                     label="relative importance (per image)")
    return fig


# --------------------------------------------------------------------------------------------
# Pictures of input gradients
# --------------------------------------------------------------------------------------------


def _gradient_batch(g: Any, name: str) -> tuple[Tensor, bool]:
    g, was_numpy = _as_tensor(g, name)
    if g.dim() != 4:
        raise ValueError(f"{name} must be a batch of maps (B, C, H, W), got shape {tuple(g.shape)}")
    return _float(g), was_numpy


def _per_image_quantile(a: Tensor, q: float) -> Tensor:
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], got {q!r}")
    # torch.quantile needs float or double; clamp so an all-zero map does not divide by 0
    return torch.quantile(a.flatten(1).float(), q, dim=1).clamp_min(1e-12).to(a.dtype)


def signed_rgb(g: Any, q: float = 0.99):
    """Colour picture of a signed gradient: (B, 3, H, W) -> (B, H, W, 3) in [0, 1].

    Grey (0.5) is 0; each colour channel gets brighter for positive and darker for negative
    values, scaled per image so the ``q`` quantile of |g| reaches white or black (larger
    values are clipped). Returns a tensor, or a numpy array for numpy input.
    """
    g, was_numpy = _gradient_batch(g, "g")
    if g.shape[1] != 3:
        raise ValueError(f"g must have 3 colour channels, got shape {tuple(g.shape)}")
    hi = _per_image_quantile(g.abs(), q)
    return _out((0.5 + 0.5 * g / hi[:, None, None, None]).clamp(0, 1).permute(0, 2, 3, 1),
                was_numpy)


def magnitude(g: Any, q: float = 0.99):
    """Grey picture of a gradient's size: (B, C, H, W) -> (B, H, W) in [0, 1].

    The largest |g| over the channels at each pixel, divided per image by its ``q`` quantile
    and clipped at 1. Returns a tensor, or a numpy array for numpy input.
    """
    g, was_numpy = _gradient_batch(g, "g")
    m = g.abs().amax(1)
    return _out((m / _per_image_quantile(m, q)[:, None, None]).clamp(0, 1), was_numpy)
