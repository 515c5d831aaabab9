"""The static explorer of chapter 3 (interpretable.book.explorer) on tiny models: one picture
per combination, computed in the right order, controls that list the options, a script that
only names elements that exist, and (in Chromium, when there is one) controls that change the
picture; tools/check_explorer.py tells a working explorer from a dead one."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

import interpretable as itp
from interpretable.book import cams, explorer
from interpretable.viz import overlay, to_image

ROOT = Path(__file__).resolve().parents[1]
NAMES = [f"class {i}" for i in range(100)]
METHODS = ("Grad-CAM", "Layer-CAM", "Score-CAM")
LAYERS = (3, 4)
_SCRIPT_END = "  show();\n})();"


@pytest.fixture(scope="module")
def models():
    from _models import randomize_bn

    out = {}
    for seed, kind in enumerate(("baseline", "regularized")):
        torch.manual_seed(seed)
        out[kind] = randomize_bn(itp.models.create("resnet18", width=0.125))
    return out


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 32, 32, generator=g), torch.tensor([5, 9])


@pytest.fixture(scope="module")
def data(models, batch):
    x, y = batch
    return explorer.precompute(models, x, y, NAMES, methods=METHODS, layers=LAYERS)


@pytest.fixture(scope="module")
def board(data):
    return explorer.Explorer(data)


class _Elements(HTMLParser):
    """Ids, classes, controls (with their options) and scripts of an HTML snippet."""

    def __init__(self, text: str):
        super().__init__()
        self.ids: list[str] = []
        self.classes: set[str] = set()
        self.controls: dict[str, dict] = {}
        self.scripts: list[tuple[dict, str]] = []
        self.imgs: list[dict] = []
        self._select: str | None = None
        self._script: dict | None = None
        self._option = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        self.classes.update((a.get("class") or "").split())
        if tag == "select":
            self._select = a["data-key"]
            self.controls[self._select] = {"kind": "select", "options": [], "selected": None}
        elif tag == "option":
            self._option = True
            if "selected" in a:
                self.controls[self._select]["selected"] = int(a["value"])
        elif tag == "input" and a.get("type") == "range":
            self.controls[a["data-key"]] = {"kind": "range", "min": int(a["min"]),
                                            "max": int(a["max"]), "value": int(a["value"])}
        elif tag == "script":
            self._script = a
        elif tag == "img":
            self.imgs.append(a)

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "option":
            self._option = False

    def handle_data(self, text):
        if self._option and self._select:
            self.controls[self._select]["options"].append(text)
        elif self._script is not None:
            self.scripts.append((self._script, text))
            self._script = None


def _payload(html: str) -> dict:
    parsed = _Elements(html)
    blobs = [t for a, t in parsed.scripts if a.get("type") == "application/json"]
    assert len(blobs) == 1
    return json.loads(blobs[0])


def _decode(b64: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def _flat(payload: dict, dims: list[int], setting: list[int]) -> int:
    i = 0  # the script's row-major index over the output's controls
    for d in dims:
        i = i * payload["sizes"][d] + setting[d]
    return i


def test_choice_rank_and_class_targets(models, batch):
    assert explorer.choice_rank("true class") is None
    assert [explorer.choice_rank(c) for c in ("2nd predicted", "top-3", "20th")] == [2, 3, 20]
    with pytest.raises(ValueError):
        explorer.choice_rank("runner-up")
    x, y = batch
    t, p = explorer.class_targets(models["baseline"], x, y, explorer.CHOICES)
    assert t.shape == p.shape == (3, 2) and torch.equal(t[0], y)
    with torch.no_grad():
        top = models["baseline"](x).softmax(1).topk(3, dim=1)
    assert torch.equal(t[1:], top.indices[:, 1:].T)
    torch.testing.assert_close(p[1:], top.values[:, 1:].T)


def test_precompute_shapes_and_options(data):
    assert data.pictures.shape == (2, 2, 3, 2, 3, 32, 32, 3)
    assert data.pictures.dtype == np.uint8 and data.photos.shape == (2, 32, 32, 3)
    assert data.options["model"] == ["baseline", "regularized"]
    assert data.options["image"] == ["class 5", "class 9"]
    assert data.options["method"] == list(METHODS)
    assert data.options["layer"] == ["layer3 (8x8, 32 ch)", "layer4 (4x4, 64 ch)"]
    assert data.options["class"] == list(explorer.CHOICES)
    assert data.combinations == 2 * 2 * 3 * 2 * 3 and data.seconds > 0
    assert data.captions[1, 0, 0].startswith("true class: class 5 (p = ")


def test_pictures_are_in_the_right_place(models, batch, data):
    # the batched precomputation puts each map where the controls say: recompute two
    # combinations one by one
    x, y = batch
    for kind, i, j, k, c in (("regularized", 1, 1, 0, 2), ("baseline", 0, 2, 1, 1)):
        m = models[kind]
        t, _ = explorer.class_targets(m, x, y, explorer.CHOICES)
        layer = itp.models.scale_layers(m)[LAYERS[k]]
        heat = cams.cam_maps(m, x[i:i + 1], t[c, i:i + 1], METHODS[j], layer)
        want = (np.clip(overlay(to_image(x[i]), heat[0].numpy()), 0, 1) * 255).round()
        got = data.pictures[list(models).index(kind), i, j, k, c].astype(float)
        assert np.abs(got - want).max() <= 1, (kind, i, j, k, c)


def test_one_picture_per_combination(board, data):
    payload = _payload(board.to_html())
    view = next(o for o in payload["outputs"] if o["cls"] == "itp-explorer-view")
    assert len(view["values"]) == data.combinations
    assert payload["sizes"] == [2, 2, 3, 2, 3]
    assert payload["controls"] == list(explorer.CONTROLS)
    for v in set(view["values"]):
        assert _decode(payload["png"][v]).shape == (32, 32, 3)
    # the PNGs are the pictures (a 128-colour palette: close, not bit-exact; these random
    # images have many more colours than a photograph): each is closest to its own picture
    flat = data.pictures.reshape(-1, 32, 32, 3).astype(int)
    for n in (0, 17, data.combinations - 1):
        shown = _decode(payload["png"][view["values"][n]])
        errors = np.abs(flat - shown).mean((1, 2, 3))
        assert errors[n] < 15 and errors[n] == errors.min(), (n, errors[n], errors.min())


def test_chapter_3_payload_is_unchanged_by_the_generalization(board, data):
    # the generic explorer (static_explorer) keeps chapter 3's data, outputs and HTML: the
    # default controls, captions over (model, image, class), the heat key that never switches
    assert data.controls == explorer.CONTROLS == ("model", "image", "method", "layer", "class")
    assert data.caption_axes == ("model", "image", "class") and data.slider == "image"
    assert data.captions.shape == (2, 2, 3) and data.legend_axes == ()
    html = board.to_html()
    payload = _payload(html)
    assert [(o["cls"], o["dims"], o["png"]) for o in payload["outputs"]] == [
        ("itp-explorer-view", [0, 1, 2, 3, 4], True), ("itp-explorer-photo", [1], True),
        ("itp-explorer-caption", [0, 1, 4], False),
        ("itp-explorer-image-name", [1], False)]
    assert payload["png"] == board._png  # pictures and photos only, no key strips
    assert "itp-explorer-key" not in html
    assert '<span>1 high</span><span>0 low</span>' in html
    assert html.endswith(f"{_SCRIPT_END}</script></div>")


def test_controls_list_the_options(board, data):
    parsed = _Elements(board.to_html())
    assert set(parsed.controls) == set(explorer.CONTROLS)
    for key in ("model", "method", "layer", "class"):
        assert parsed.controls[key]["options"] == data.options[key], key
    assert parsed.controls["layer"]["selected"] == 1  # the deepest layer first
    image = parsed.controls["image"]
    assert (image["kind"], image["min"], image["max"]) == ("range", 0, 1)


def test_script_names_only_elements_that_exist(board):
    html = board.to_html()
    parsed = _Elements(html)
    assert len(parsed.ids) == len(set(parsed.ids)), "ids repeat"
    code = "".join(t for a, t in parsed.scripts if "type" not in a)
    assert "http" not in code
    for ident in re.findall(r'getElementById\("([^"]+)"\)', code):
        assert ident in parsed.ids, ident
    for key in _payload(html)["controls"]:
        assert f'data-key="{key}"' in html
    for out in _payload(html)["outputs"]:
        assert out["cls"] in parsed.classes, out["cls"]
    assert all(a.get("src", "").startswith("data:image/png;base64,") for a in parsed.imgs)
    assert not any(a.get("src") for a, _ in parsed.scripts)  # no external script


def test_every_control_changes_the_picture(board, data):
    payload = _payload(board.to_html())
    view = next(o for o in payload["outputs"] if o["cls"] == "itp-explorer-view")
    start = list(board.start)
    first = view["values"][_flat(payload, view["dims"], start)]
    for d, size in enumerate(payload["sizes"]):
        others = [view["values"][_flat(payload, view["dims"], start[:d] + [v] + start[d + 1:])]
                  for v in range(size) if v != start[d]]
        assert any(o != first for o in others), explorer.CONTROLS[d]


def test_initial_picture_matches_the_initial_setting(board):
    html = board.to_html()
    payload = _payload(html)
    view = next(o for o in payload["outputs"] if o["cls"] == "itp-explorer-view")
    first = payload["png"][view["values"][_flat(payload, view["dims"], list(board.start))]]
    assert 'class="itp-explorer-view" alt="map over the image" width="128"' in html
    assert f"base64,{first}" in html


def test_fresh_ids_and_a_dead_variant(board):
    a, b = board.to_html(), board.to_html()
    ids_a, ids_b = set(_Elements(a).ids), set(_Elements(b).ids)
    assert ids_a and not ids_a & ids_b
    dead = board.to_html(script=False)
    assert "<script" not in dead and 'class="itp-explorer"' in dead
    assert board._repr_html_().startswith('<div class="itp-explorer"')
    assert "pictures" in repr(board)


def test_size_per_picture(board, data):
    # the chapter's explorer (600 pictures) must stay near 1 MB: a few kB per picture here
    assert len(board.to_html()) / data.combinations < 2500


def test_page_holds_the_snippets(board):
    page = explorer.page(board.to_html(), board.to_html(script=False))
    assert page.startswith("<!doctype html>") and page.count('class="itp-explorer"') == 2


# --------------------------------------------------------------------------------------------
# In a browser: the script works, and tools/check_explorer.py finds a dead explorer
# --------------------------------------------------------------------------------------------


# browser_page: the shared fixture of conftest.py (headless Chromium, its errors)


@pytest.fixture(scope="module")
def check_explorer():
    spec = importlib.util.spec_from_file_location("check_explorer",
                                                  ROOT / "tools/check_explorer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_explorers_finds_the_dead_one(board, browser_page, check_explorer):
    page, errors = browser_page
    page.set_content(explorer.page(board.to_html(), board.to_html(script=False)))
    problems = check_explorer.check_explorers(page, timeout=3.0)
    assert errors == []
    assert len(problems) == len(explorer.CONTROLS), problems
    assert all(p.startswith("explorer 2 ") and "does not change the picture" in p
               for p in problems), problems
    for key in explorer.CONTROLS:
        assert any(repr(key) in p for p in problems), key


def test_selecting_updates_picture_and_caption(board, browser_page):
    page, errors = browser_page
    page.set_content(explorer.page(board.to_html()))
    root = page.locator(".itp-explorer")
    src = root.locator("img.itp-explorer-view").get_attribute("src")
    root.locator('[data-key="class"]').select_option("1")
    assert root.locator(".itp-explorer-caption").inner_text().startswith("2nd predicted: ")
    root.locator('[data-key="image"]').fill("1")
    assert root.locator(".itp-explorer-image-name").inner_text() == "class 9"
    assert root.locator("img.itp-explorer-view").get_attribute("src") != src
    assert page.evaluate("() => Array.from(document.images).every(i => i.naturalWidth > 0)")
    assert errors == []


def test_check_explorers_on_a_page_without_explorers(browser_page, check_explorer):
    page, _ = browser_page
    page.set_content("<p>no explorer here</p>")
    assert check_explorer.check_explorers(page) == []
