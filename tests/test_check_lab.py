"""tools/check_lab.py finds each kind of defect in tiny notebooks, and passes a clean one.

The notebooks are made here (tmp_path): one run of JupyterLab checks them all, a second run with
jupyterlab-myst turned off shows that the book's markup left raw is caught, and a third shows
that JupyterLab and its kernels are stopped even when the check fails half-way. About two
minutes on a busy 2-core machine; `make check-lab` runs this first, like `make check-book` runs
tests/test_check_book.py. Needs a Chromium (Debian's /usr/bin/chromium, `make browser` installs
it, or $CHROMIUM), Playwright and JupyterLab with jupyterlab-myst (the `test` and `lab` extras);
skipped with the reason when one is missing.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
    pytest.skip(f"no Chromium at {CHROMIUM} (`make browser` installs Debian's chromium)",
                allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")
for _module in ("jupyterlab", "jupyterlab_myst", "ipywidgets", "ipykernel"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is not installed (lab extra)", allow_module_level=True)

# tools/ is not a package: check_lab imports its sibling check_book by name
sys.path.insert(0, str(ROOT / "tools"))
import check_lab  # noqa: E402
import lab_server  # noqa: E402

pytestmark = pytest.mark.slow

# a 1x1 PNG, the image a clean markdown cell shows
DOT = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQG"
                       "AhKmMIQAAAABJRU5ErkJggg==")
MARKUP = """# A clean chapter

As {cite}`torres2024learning` shows, and {cite:t}`mundhenk2020efficient` too.

```{note}
A note.
```

:::{exercise}
:label: ex-one
Do it.
:::

:::{solution} ex-one
:class: dropdown
Done.
:::

![a dot](dot.png)
"""
# an explorer like chapter 3's: the figure follows the dropdown and the slider
EXPLORER = """%matplotlib inline
import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display

def show(sign, n):
    plt.figure(figsize=(2, 1.5))
    plt.plot([0, 1], [0, SLOPE])
    plt.show()

display(widgets.interactive(
    show, sign=widgets.Dropdown(options=[1, -1], description="sign"),
    n=widgets.IntSlider(value=1, min=1, max=3, continuous_update=False, description="n")))"""

# notebook name: (cells, the kind of problem it must show; None for none)
NOTEBOOKS = {
    "clean": ([("markdown", MARKUP), ("code", "print('ok')"),
               ("code", EXPLORER.replace("SLOPE", "sign * n"))], None),
    "error_cell": ([("code", "1 / 0"), ("code", "print('never reached')")], "error"),
    # what a student sees without jupyterlab-myst: the role's text, then its argument as code
    "raw_cite": ([("markdown", "As \\{cite}`torres2024learning` shows.")], "markup"),
    "broken_image": ([("markdown", "A figure: ![missing](figures/missing.png)")], "image"),
    # a directive jupyterlab-myst does not know renders as an error box, not as the book does
    "unknown_directive": ([("markdown", "```{no-such-directive}\nText.\n```")], "markup"),
    # the figure ignores the controls: a widget that looks alive but explains nothing
    "dead_widget": ([("code", EXPLORER.replace("SLOPE", "1"))], "widget"),
}


def notebook(cells: list[tuple[str, str]]) -> dict:
    """An nbformat 4.5 notebook with these (type, source) cells and no outputs."""
    out = []
    for i, (kind, source) in enumerate(cells):
        cell = {"cell_type": kind, "id": f"c{i}", "metadata": {}, "source": source}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    return {"cells": out, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                        "name": "python3"},
                         "language_info": {"name": "python"}}}


def _write(folder: Path, names) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dot.png").write_bytes(DOT)
    paths = []
    for name in names:
        path = folder / f"{name}.ipynb"
        path.write_text(json.dumps(notebook(NOTEBOOKS[name][0]), indent=1))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    paths = _write(root / "book", NOTEBOOKS)
    before = {p: p.read_bytes() for p in paths}
    shots = root / "shots"
    results = check_lab.check_notebooks([str(p) for p in paths], shots, timeout=300,
                                        ui_timeout=120)
    return {Path(k).stem: v for k, v in results.items()}, shots, before


def test_every_notebook_is_checked(checked):
    results, _, _ = checked
    assert set(results) == set(NOTEBOOKS)


@pytest.mark.parametrize("name", sorted(n for n, (_, kind) in NOTEBOOKS.items() if kind))
def test_defect_is_found(checked, name):
    results, _, _ = checked
    assert NOTEBOOKS[name][1] in {p.kind for p in results[name]}, results[name]


def test_clean_notebook_passes(checked):
    # its citations render (unresolved: jupyterlab-myst reads no bibliography), its admonition,
    # exercise and dropdown render, its image loads, its explorer follows both controls
    results, _, _ = checked
    assert results["clean"] == []


def test_the_problems_say_what_is_wrong(checked):
    results, _, _ = checked
    details = {n: " | ".join(p.detail for p in v) for n, v in results.items()}
    assert "ZeroDivisionError" in details["error_cell"]
    assert "did not run" in details["error_cell"]  # Run All stops at the error
    assert "{cite}`torres2024learning`" in details["raw_cite"]
    assert "figures/missing.png" in details["broken_image"]
    assert "no-such-directive - Unknown Directive" in details["unknown_directive"]
    assert "dropdown 'sign'" in details["dead_widget"] and "slider 'n'" in details["dead_widget"]


def test_notebooks_are_left_unmodified(checked):
    # JupyterLab ran on copies: the originals keep their bytes and gain no checkpoints
    _, _, before = checked
    for path, data in before.items():
        assert path.read_bytes() == data, path
        assert not (path.parent / ".ipynb_checkpoints").exists()


def test_screenshots_are_written(checked):
    _, shots, _ = checked
    for name in [*NOTEBOOKS, "clean-explorer1-before", "clean-explorer1-after"]:
        assert (shots / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_raw_markup_is_found_without_jupyterlab_myst(tmp_path):
    # the same clean markup, rendered by JupyterLab's own markdown renderer
    (path,) = _write(tmp_path / "book", ["clean"])
    path.write_text(json.dumps(notebook([("markdown", MARKUP)])))
    results = check_lab.check_notebooks([path], timeout=120, ui_timeout=120,
                                        disable_extensions=["jupyterlab-myst"])
    details = [p.detail for p in results[str(path)] if p.kind == "markup"]
    assert any("{cite}`torres2024learning`" in d for d in details), details
    assert any(":::{exercise}" in d for d in details), details
    assert any("{note}" in d for d in details), details


def test_lab_and_its_kernels_are_stopped_on_failure(tmp_path):
    with pytest.raises(RuntimeError, match="half-way"):
        with check_lab.start_lab(tmp_path) as lab:
            kernel = lab.api("api/kernels", method="POST")
            deadline = time.monotonic() + 120
            while not (started := lab_server._descendants(lab.process.pid)):
                assert time.monotonic() < deadline, "the kernel did not start"
                time.sleep(0.5)
            assert kernel["name"] == "python3"
            raise RuntimeError("the check failed half-way")
    assert lab.process.poll() is not None
    time.sleep(1)
    alive = [pid for pid, cmd in started.items()
             if Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/cmdline").read_bytes() == cmd]
    assert alive == [], alive


def test_main_exit_status(tmp_path):
    assert check_lab.main([str(tmp_path / "missing.ipynb")]) == 2
    (path,) = _write(tmp_path, ["clean"])
    assert check_lab.main([str(path), "--chromium", str(tmp_path / "no-browser")]) == 2
