"""tools/check_book.py finds each kind of defect on small hand-made pages, and passes a clean one.

Needs a Chromium (Debian's /usr/bin/chromium, `make browser` installs it, or $CHROMIUM) and
Playwright for Python (the `test` extra); skipped with the reason when either is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
    pytest.skip(f"no Chromium at {CHROMIUM} (`make browser` installs Debian's chromium)",
                allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")

# tools/ is not a package: check_book imports its sibling page_scripts by name
sys.path.insert(0, str(ROOT / "tools"))
import check_book  # noqa: E402

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>t</title>{head}</head>
<body><main style="width: 600px">{body}</main></body></html>"""

# page name: (head, body, the kind of problem it must show)
DEFECTS = {
    "raw_math": ("", r"<p>The shape is \(1 \times 3\) and $$\mu = 0$$.</p>", "math"),
    "broken_image": ("", '<p><img src="data:image/png;base64,AAAA" alt="x"></p>', "image"),
    "missing_image": ("", '<p><img src="_images/missing.png" alt="x"></p>', "image"),
    "empty_widget": (
        "",
        '<div class="cell_output"><div class="output">'
        '<script type="application/vnd.jupyter.widget-view+json">'
        '{"version_major": 2, "version_minor": 0, "model_id": "abc123"}</script>'
        "</div></div>",
        "widget",
    ),
    "widget_fallback": (
        "",
        '<div class="cell_output"><div class="output text_plain"><pre>'
        "HBox(children=(HTML(value=''), FloatProgress(value=0.0, max=7.0)))</pre></div></div>",
        "widget",
    ),
    "js_error": ("", "<script>undefined_function_of_the_book();</script><p>text</p>",
                 "javascript"),
    "console_error": ("", '<script>console.error("widget manager failed")</script><p>t</p>',
                      "javascript"),
    "cdn_script": (
        '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>',
        "<p>text</p>",
        "request",
    ),
    "missing_css": ('<link rel="stylesheet" href="_static/missing.css">', "<p>text</p>",
                    "request"),
    "traceback": (
        "",
        '<div class="cell_output"><div class="output stderr"><pre>'
        "Traceback (most recent call last):\n  File \"x.py\", line 1, in &lt;module&gt;\n"
        "ZeroDivisionError: division by zero</pre></div></div>",
        "traceback",
    ),
    "error_output": (
        "",
        '<div class="cell_output"><div class="output traceback highlight-ipythontb">'
        "<pre>NameError: name 'x' is not defined</pre></div></div>",
        "traceback",
    ),
    "figure_as_text": (
        "",
        '<div class="cell_output"><div class="output text_plain"><pre>'
        "&lt;Figure size 900x600 with 25 Axes&gt;</pre></div></div>",
        "image",
    ),
    "long_line": (
        "<style>pre { white-space: pre; overflow-x: auto; }</style>",
        '<div class="cell_output"><div class="output stream"><pre>reference run: '
        + "resnet18_regularized epoch 20 top-1 52.3 " * 8
        + "</pre></div></div>",
        "overflow",
    ),
}

CLEAN = (
    "<style>pre { white-space: pre-wrap; }</style>",
    '<p>Plain text with a price of 3 $ and code <code>\\(x\\)</code>.</p>'
    '<pre>print("$$ in code is fine")</pre>'
    '<p><img src="data:image/svg+xml;utf8,<svg xmlns=%22http://www.w3.org/2000/svg%22 '
    'width=%2210%22 height=%2210%22/>" alt="ok"></p>'
    '<div class="cell_output"><div class="output stream"><pre>'
    + "a long line that wraps " * 20
    + "</pre></div></div>",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    for name, (head, body, _) in DEFECTS.items():
        (root / f"{name}.html").write_text(PAGE.format(head=head, body=body))
    (root / "clean.html").write_text(PAGE.format(head=CLEAN[0], body=CLEAN[1]))
    (root / "index.html").write_text(PAGE.format(head="", body="<p>index</p>"))
    shots = root.parent / f"{root.name}-shots"
    results = check_book.check_site(root, shots, timeout=3.0)
    return root, shots, results


def test_every_page_is_checked(site):
    root, _, results = site
    assert set(results) == {f"{n}.html" for n in DEFECTS} | {"clean.html", "index.html"}


@pytest.mark.parametrize("name", sorted(DEFECTS))
def test_defect_is_found(site, name):
    _, _, results = site
    kinds = {p.kind for p in results[f"{name}.html"]}
    assert DEFECTS[name][2] in kinds, results[f"{name}.html"]


def test_clean_page_passes(site):
    _, _, results = site
    assert results["clean.html"] == [] and results["index.html"] == []


def test_blocked_request_names_the_address(site):
    _, _, results = site
    details = [p.detail for p in results["cdn_script.html"] if p.kind == "request"]
    assert any("non-loopback" in d and "cdn.jsdelivr.net" in d for d in details), details


def test_screenshots_are_written(site):
    _, shots, results = site
    for page in results:
        png = shots / page.replace(".html", ".png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_main_exit_status(site, tmp_path):
    root, _, _ = site
    assert check_book.main([str(root), "--screenshots", "", "--page", "clean.html"]) == 0
    assert check_book.main([str(root), "--screenshots", "", "--page", "raw_math.html"]) == 1
    assert check_book.main([str(tmp_path), "--screenshots", ""]) == 2  # no index.html


@pytest.mark.skipif(not (ROOT / "node_modules" / "mathjax").is_dir(),
                    reason="node_modules/mathjax not installed (`make book-assets`)")
def test_local_mathjax_typesets(tmp_path):
    # the same raw-math page passes once the local MathJax has typeset it
    shutil.copy(ROOT / "node_modules/mathjax/es5/tex-mml-chtml.js", tmp_path)
    fonts = ROOT / "node_modules/mathjax/es5/output/chtml/fonts/woff-v2"
    shutil.copytree(fonts, tmp_path / "output/chtml/fonts/woff-v2")
    head = '<script defer src="tex-mml-chtml.js"></script>'
    body = r'<p>The shape is <span class="math">\(1 \times 3\)</span>.</p>'
    (tmp_path / "index.html").write_text(PAGE.format(head=head, body=body))
    results = check_book.check_site(tmp_path, timeout=10.0)
    assert results == {"index.html": []}


@pytest.mark.skipif(
    not (ROOT / "node_modules" / "@jupyter-widgets" / "html-manager").is_dir(),
    reason="node_modules/@jupyter-widgets/html-manager not installed (`make book-assets`)")
def test_local_widget_manager_renders_saved_state(tmp_path):
    # a saved progress bar renders through the local widget manager; a view whose model is
    # not in the saved state stays empty and fails
    dist = ROOT / "node_modules/@jupyter-widgets/html-manager/dist"
    for f in dist.iterdir():
        if f.suffix in {".js", ".woff", ".woff2", ".ttf", ".eot", ".svg"} and "amd" not in f.name:
            shutil.copy(f, tmp_path)

    def model(name, module, **state):
        return {"model_name": name, "model_module": module, "model_module_version": "2.0.0",
                "state": state}

    state = {"version_major": 2, "version_minor": 0, "state": {
        "L": model("LayoutModel", "@jupyter-widgets/base"),
        "S": model("ProgressStyleModel", "@jupyter-widgets/controls"),
        "P": model("FloatProgressModel", "@jupyter-widgets/controls", value=5.0, max=5.0,
                   bar_style="success", layout="IPY_MODEL_L", style="IPY_MODEL_S"),
    }}

    def view(model_id):
        return ('<div class="cell_output"><script type="application/vnd.jupyter.widget-view+json">'
                + json.dumps({"version_major": 2, "version_minor": 0, "model_id": model_id})
                + "</script></div>")

    head = ('<script type="application/vnd.jupyter.widget-state+json">' + json.dumps(state)
            + '</script><script src="embed.js"></script>')
    (tmp_path / "index.html").write_text(PAGE.format(head=head, body=view("P")))
    (tmp_path / "missing.html").write_text(PAGE.format(head=head, body=view("P") + view("Q")))
    results = check_book.check_site(tmp_path, timeout=3.0)
    assert results["index.html"] == []
    assert [p.kind for p in results["missing.html"]] == ["widget"], results["missing.html"]
