"""The static explorer of chapter 4 (interpretable.book.fastcam_explorer) on a tiny model:
one picture per (image, map, statistic, normalization), computed in the right place with the
package's calls, every control changing the picture in every setting, a colour key that
switches to LOVI's, and (in Chromium, when there is one) tools/check_explorer.py passing;
and the generic explorer (interpretable.book.static_explorer) checking its data."""

from __future__ import annotations

import base64
import importlib.util
import io
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from interpretable.attribution.fastcam import FastCAM, saliency
from interpretable.book import explorer, fastcam_explorer, static_explorer
from interpretable.viz import heatmap, lovi

ROOT = Path(__file__).resolve().parents[1]
NAMES = [f"class {i}" for i in range(100)]
N_LAYERS = 5
N_MAPS = N_LAYERS + 3  # the layers, combined, LOVI, FastCAM


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 3, 32, 32, generator=g), torch.tensor([5, 9, 1])


@pytest.fixture(scope="module")
def data(model, batch):
    x, y = batch
    return fastcam_explorer.precompute(model, x, y, NAMES)


@pytest.fixture(scope="module")
def board(data):
    return explorer.Explorer(data)


def _payload(html: str) -> dict:
    blob = re.search(r'<script type="application/json"[^>]*>(.*?)</script>', html, re.S)
    return json.loads(blob.group(1))


def _output(payload: dict, cls: str) -> dict:
    return next(o for o in payload["outputs"] if o["cls"] == cls)


def _flat(payload: dict, dims: list[int], setting: list[int]) -> int:
    i = 0  # the script's row-major index over the output's controls
    for d in dims:
        i = i * payload["sizes"][d] + setting[d]
    return i


def test_shapes_options_and_captions(data):
    stats, norms = len(fastcam_explorer.STATISTICS), len(fastcam_explorer.NORMS)
    assert data.controls == fastcam_explorer.CONTROLS
    assert data.pictures.shape == (3, N_MAPS, stats, norms, 32, 32, 3)
    assert data.pictures.dtype == np.uint8 and data.photos.shape == (3, 32, 32, 3)
    assert data.combinations == 3 * N_MAPS * stats * norms and data.seconds > 0
    assert data.options["image"] == ["class 5", "class 9", "class 1"]
    maps = data.options["map"]
    assert maps[0] == "stem (32x32, 8 ch)" and maps[N_LAYERS - 1] == "layer4 (4x4, 64 ch)"
    assert [m.split()[0] for m in maps[N_LAYERS:]] == ["combined", "LOVI", "FastCAM"]
    assert data.options["statistic"][0] == "SMOE Scale"
    assert data.options["normalization"] == ["Gamma CDF", "Gaussian CDF", "min-max"]
    assert data.captions.shape == (3, N_MAPS) and data.caption_axes == ("image", "map")
    assert data.captions[1, 0].startswith("class-agnostic (true class: class 9, p = ")
    assert data.captions[1, -1].startswith("for the true class: class 9 (p = ")
    assert data.start == {"map": N_LAYERS}  # the combined map first


@pytest.mark.parametrize("s, n", [(2, 1), (0, 2)])
def test_pictures_are_in_the_right_place(model, batch, data, s, n):
    # the batched precomputation puts each picture where the controls say: recompute one
    # (statistic, normalization) with the package's calls
    x, y = batch
    stat, norm = fastcam_explorer.STATISTICS[s], fastcam_explorer.NORMS[n]
    combined, per_layer = saliency(model, x, statistic=stat, norm=norm, optimize=False)
    with FastCAM(model, statistic=stat, norm=norm, optimize=False) as fc:
        product = fc(x, y)
    want = {**{v: heatmap(per_layer[:, v]) for v in range(N_LAYERS)},
            N_LAYERS: heatmap(combined), N_LAYERS + 1: lovi(per_layer),
            N_LAYERS + 2: heatmap(product)}
    for v, rgb in want.items():
        pix = (rgb.clamp(0, 1) * 255).round().numpy()
        got = data.pictures[:, v, s, n].astype(float)
        # float rounding (an optimized forward) may move a value to the next colour step
        diff = np.abs(got - pix)
        assert diff.mean() < 0.5 and diff.max() <= 12, (v, diff.mean(), diff.max())
        wrong = np.abs(data.pictures[:, v, n, s].astype(float) - pix).mean()
        assert wrong > 2, (v, wrong)  # the test tells the statistic from the normalization


def test_every_control_changes_every_picture(data):
    # stronger than what check_explorer tries from the first setting: in EVERY setting of
    # the other controls, the options of each control give different pictures
    pics = data.pictures
    for axis, name in enumerate(data.controls):
        moved = np.moveaxis(pics, axis, 0).reshape(pics.shape[axis], -1, 32 * 32 * 3)
        for a, b in itertools.combinations(range(len(moved)), 2):
            same = (moved[a] == moved[b]).all(-1)
            assert not same.any(), (name, a, b, int(same.sum()))


def test_each_control_changes_the_view_from_the_start(board):
    payload = _payload(board.to_html())
    view = _output(payload, "itp-explorer-view")
    assert payload["controls"] == list(fastcam_explorer.CONTROLS)
    assert len(view["values"]) == board.data.combinations
    start = list(board.start)
    first = view["values"][_flat(payload, view["dims"], start)]
    for d, size in enumerate(payload["sizes"]):
        others = [view["values"][_flat(payload, view["dims"], start[:d] + [v] + start[d + 1:])]
                  for v in range(size) if v != start[d]]
        assert all(o != first for o in others), payload["controls"][d]


def test_the_colour_key_switches_to_lovi(board, data):
    html = board.to_html()
    payload = _payload(html)
    key = _output(payload, "itp-explorer-key")
    top = _output(payload, "itp-explorer-key-top")
    assert key["dims"] == top["dims"] == [1]  # the key follows the map control
    lovi_at = N_LAYERS + 1
    assert len(set(key["values"])) == 2 and key["values"].count(key["values"][lovi_at]) == 1
    assert top["values"][lovi_at] == "stem (earliest)" and top["values"][0] == "1 high"
    assert _output(payload, "itp-explorer-key-bottom")["values"][lovi_at] == \
        "layer4 (deepest)"
    assert _output(payload, "itp-explorer-key-note")["values"][lovi_at].startswith("LOVI")
    from PIL import Image

    strip = np.asarray(Image.open(io.BytesIO(base64.b64decode(
        payload["png"][key["values"][lovi_at]]))).convert("RGB"))
    assert tuple(strip[0, 0]) == (255, 0, 255) and tuple(strip[-1, 0]) == (255, 0, 0)
    # the first setting (the combined map) shows the heat key in the HTML itself
    assert 'class="itp-explorer-key-top">1 high</span>' in html
    assert 'class="itp-explorer-caption"' in html and "class-agnostic" in html


def test_size_per_picture(board, data):
    # the chapter's explorer (5 images, 480 pictures) must stay well under 1.5 MB
    assert len(board.to_html()) / data.combinations < 2500


def test_choices_and_inputs_are_checked(model, batch):
    x, y = batch
    with pytest.raises(ValueError, match="statistic"):
        fastcam_explorer.precompute(model, x, y, NAMES, statistics=("smoe", "median"))
    with pytest.raises(ValueError, match="norm"):
        fastcam_explorer.precompute(model, x, y, NAMES, norms=("sigmoid",))
    with pytest.raises(ValueError, match="y"):
        fastcam_explorer.precompute(model, x, y[:2], NAMES)
    with pytest.raises(ValueError, match="two layers"):
        fastcam_explorer.lovi_legend(["stem"])


def test_explorer_data_checks_its_axes(data):
    d = data
    args = (d.options, d.pictures, d.photos, d.captions)
    with pytest.raises(ValueError, match="controls"):
        static_explorer.ExplorerData(*args)  # chapter 3's default controls do not fit
    with pytest.raises(ValueError, match="pictures"):
        static_explorer.ExplorerData(d.options, d.pictures[:, :2], d.photos, d.captions,
                                     controls=d.controls, caption_axes=d.caption_axes)
    with pytest.raises(ValueError, match="captions"):
        static_explorer.ExplorerData(*args, controls=d.controls, caption_axes=("image",))
    with pytest.raises(ValueError, match="legend_index"):
        static_explorer.ExplorerData(*args, controls=d.controls,
                                     caption_axes=d.caption_axes, legend_axes=("map",),
                                     legend_index=np.full(N_MAPS, 3))


# --------------------------------------------------------------------------------------------
# In a browser: tools/check_explorer.py passes, and the key switches
# --------------------------------------------------------------------------------------------




def test_check_explorer_passes_and_the_key_switches(board, browser_page):
    spec = importlib.util.spec_from_file_location("check_explorer",
                                                  ROOT / "tools/check_explorer.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    page, errors = browser_page
    page.set_content(explorer.page(board.to_html()))
    assert check.check_explorers(page, timeout=3.0) == []
    root = page.locator(".itp-explorer")
    root.locator('[data-key="map"]').select_option(str(N_LAYERS + 1))
    assert root.locator(".itp-explorer-key-top").inner_text() == "stem (earliest)"
    assert root.locator(".itp-explorer-key-note").inner_text().startswith("LOVI")
    root.locator('[data-key="map"]').select_option(str(N_LAYERS + 2))
    assert root.locator(".itp-explorer-key-top").inner_text() == "1 high"
    assert root.locator(".itp-explorer-caption").inner_text().startswith("for the true class")
    assert errors == []
