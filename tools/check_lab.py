"""Run chapters in JupyterLab in headless Chromium, as a student does, and fail on what they see.

    python tools/check_lab.py [NOTEBOOK ...] [--screenshots _build/lab-screenshots]

JupyterLab (with the extensions the project installs: jupyterlab-myst renders the book's MyST
markup, the ipywidgets manager renders the widgets) is started on a free loopback port with a
random token, on a copy of the notebooks' folder in a temporary directory, with its settings,
workspaces, runtime files and IPython profile there too: nothing is written to the repository
or to the user's Jupyter folders, and the notebooks are hashed before and after to prove it.
Each notebook is opened in Debian's Chromium (Playwright, the same launch as
``tools/check_book.py``), run with Run > Run All Cells with ``SCALE=quick`` (``--scale``), and
fails on

- an error output, or code cells that never ran (Run All stops at the first error);
- MyST markup left raw in rendered markdown: a ``{cite}`` role, a ```` ```{directive} ```` or
  ``:::{directive}`` fence, or a directive jupyterlab-myst reports as unknown;
- an ``img`` that did not load (``naturalWidth`` 0);
- a widget that did not render, and an interactive explorer (``ipywidgets.interactive``) whose
  figure stays the same when its first dropdown, or its first slider, changes;
- a JavaScript error (uncaught, or a ``console.error``), an HTTP error or a request for a
  non-loopback address (blocked: the lab must work offline);
- the kernel not being the project's (the Python this checker runs on), or a kernel dialog.

Citations cannot be resolved in JupyterLab (jupyterlab-myst reads no bibliography): a rendered
``{cite}`` shows its key with a warning icon ("Citation Not Found"), which is counted, not failed.
Screenshots of each notebook and of each explorer before and after the change go to the
screenshots folder. JupyterLab, its kernels and the browser are stopped on every exit path.
Exit status 0 when no notebook has a problem, 1 otherwise, 2 when something needed is missing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

# The browser launch and the report format are the book checker's: one setup for both.
from check_book import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Found,
    Problem,
    _log_page,
    finish,
    ready,
)
from lab_server import Lab, notebook_hashes, start_lab
from page_scripts import EXPLORER_STATE, KERNEL_IDLE, NOTEBOOK_CHECKS, WATCH_KERNEL

DEFAULT_NOTEBOOKS = ("book/03_cams.ipynb", "book/02_gradients.ipynb")
VIEWPORT = {"width": 1280, "height": 1000}
# Copied with the notebooks' folder: nothing a notebook reads, and possibly large.
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "_build", ".ipynb_checkpoints", "__pycache__", "*.npz"
)
Log = Callable[[str], None]

def _kernel_problems(lab: Lab) -> list[Problem]:
    """The kernel the notebooks get must be the project's: this Python's environment."""
    specs = lab.api("api/kernelspecs")
    name = specs.get("default")
    spec = specs.get("kernelspecs", {}).get(name, {}).get("spec", {})
    argv = spec.get("argv") or ["?"]
    exe = shutil.which(argv[0]) or argv[0]
    if not Path(exe).absolute().is_relative_to(Path(sys.prefix).absolute()):
        return [Problem("kernel", f"the default kernel {name!r} runs {argv[0]}, not the "
                                  f"project's Python in {sys.prefix}")]
    return []


def _wait(page, js: str, timeout: float, arg=None, settle: float = 1.0) -> bool:
    """Poll `js` in the page until it is true, and still true `settle` s later (a kernel is
    idle for a moment between two queued cells), or until `timeout` s have passed."""
    end = time.monotonic() + timeout
    while True:
        if page.evaluate(js, arg):
            if not settle:
                return True
            page.wait_for_timeout(settle * 1000)
            if page.evaluate(js, arg):
                return True
        if time.monotonic() > end:
            return False
        page.wait_for_timeout(250)


def _run_all(page, ui_timeout: float) -> None:
    """Run > Run All Cells, through the menu bar as a student would."""
    page.get_by_role("menuitem", name="Run", exact=True).click(timeout=ui_timeout * 1000)
    item = page.locator(".lm-Menu-item", has=page.locator(".lm-Menu-itemLabel",
                                                          has_text=re.compile(r"^Run All Cells$")))
    item.click(timeout=ui_timeout * 1000)


def _explorer_problems(page, stem: str, shots: Path | None, timeout: float,
                       ui_timeout: float) -> list[Problem]:
    """Change each explorer's first dropdown, then its slider; the figure must change each time.

    After a change the kernel must take a turn (busy, then idle: the explorer's function ran);
    the figure is then compared with the one before, with a few seconds left for the page to
    draw it. A control the kernel never answers is a dead widget too.
    """
    problems: list[Problem] = []
    boxes = page.locator(".jp-Notebook .widget-interact")
    if boxes.count():
        page.evaluate(WATCH_KERNEL)
    for i in range(boxes.count()):
        box = boxes.nth(i)
        box.scroll_into_view_if_needed()
        if shots:
            box.screenshot(path=str(shots / f"{stem}-explorer{i + 1}-before.png"))
        controls = [c for c, sel in (("dropdown", "select"), ("slider", ".noUi-handle"))
                    if box.locator(sel).count()]
        if not controls:
            problems.append(Problem("widget", f"explorer {i + 1} has no dropdown or slider"))
        for control in controls:
            before = box.evaluate(EXPLORER_STATE)
            if not before["imgs"]:
                problems.append(Problem("widget", f"explorer {i + 1} shows no figure"))
                break
            turns = page.evaluate("() => window.__checkLab.started")
            if control == "dropdown":
                select = box.locator("select").first
                label = select.evaluate(
                    "s => { const l = s.closest('.widget-dropdown')?.querySelector('label');"
                    " return l ? l.textContent : ''; }")
                n = select.locator("option").count()
                if n < 2:
                    continue
                select.select_option(index=(select.evaluate("s => s.selectedIndex") + 1) % n)
            else:
                handle = box.locator(".noUi-handle").first
                label = handle.evaluate("h => h.closest('.widget-slider, .widget-hslider')"
                                        "?.querySelector('label')?.textContent || ''")
                handle.focus()
                # the slider may start at its maximum: then one step down is the change
                up = handle.get_attribute("aria-valuenow") != handle.get_attribute("aria-valuemax")
                handle.press("ArrowRight" if up else "ArrowLeft")
            what = f"the {control}" + (f" {label.strip()!r}" if label and label.strip() else "")
            answered = _wait(page, f"() => window.__checkLab.started > {turns}", ui_timeout,
                             settle=0)
            if not answered or not _wait(page, KERNEL_IDLE, timeout):
                problems.append(Problem("widget", f"explorer {i + 1}: the kernel did not answer "
                                                  f"when {what} changed"))
                continue
            if not _wait(page, "([box, before]) => { const s = (" + EXPLORER_STATE + ")(box);"
                               " return s.imgs > 0 && s.figure !== before.figure; }",
                         5, [box.element_handle(), before], settle=0):
                problems.append(Problem("widget", f"explorer {i + 1}: the figure did not change "
                                                  f"when {what} changed"))
        if shots:
            box.screenshot(path=str(shots / f"{stem}-explorer{i + 1}-after.png"))
    return problems


def _check_notebook(context, lab: Lab, rel: str, shots: Path | None, timeout: float,
                    ui_timeout: float) -> tuple[list[Problem], str]:
    """Open `rel` in a new page, run all its cells and check what the page shows."""
    found = Found()  # the lab must not need the Internet: other requests are blocked
    problems, add, route = found.problems, found.add, found.route
    info = ""

    def on_response(resp):
        # a missing markdown image is reported once, as an image, by the page checks
        if resp.status >= 400 and "/files/" not in resp.url and "/api/contents/" not in resp.url:
            add("request", f"HTTP {resp.status}: {resp.url.split('?')[0]}")

    def on_console(msg):
        # a failed load is reported by its response (or as an image) already
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            add("javascript", f"console error: {' '.join(msg.text.split())[:300]}")

    stem = Path(rel).stem
    page = context.new_page()
    page.route("**/*", route)
    page.on("response", on_response)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: add("javascript", f"uncaught: {exc}"))
    try:
        page.goto(lab.page_url(rel), wait_until="load", timeout=ui_timeout * 1000)
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                               " && window.jupyterapp.shell.currentWidget.content"
                               " && document.querySelector('.jp-Notebook .jp-Cell')",
                               timeout=ui_timeout * 1000)
        if not _wait(page, KERNEL_IDLE, ui_timeout):
            dialog = page.locator(".jp-Dialog")
            detail = dialog.first.inner_text() if dialog.count() else "no idle kernel"
            add("kernel", f"the kernel did not start: {' '.join(detail.split())[:200]}")
            return problems, info
        start = time.monotonic()
        _run_all(page, ui_timeout)
        page.wait_for_timeout(1000)  # Run All marks the cells queued before the kernel is busy
        if not _wait(page, KERNEL_IDLE, timeout):
            add("timeout", f"Run All Cells did not finish in {timeout:.0f} s")
        ran = time.monotonic() - start
        result = page.evaluate(NOTEBOOK_CHECKS, int(ui_timeout * 1000))
        for kind, detail in result["problems"]:
            add(kind, detail)
        info = (f"ran in {ran:.0f} s; {result['images']} image(s), {result['explorers']} "
                f"explorer(s), {result['unresolved']} citation(s) shown unresolved")
        if shots:
            _screenshot(page, shots / f"{stem}.png")
        for p in _explorer_problems(page, stem, shots, timeout, ui_timeout):
            add(p.kind, p.detail)
    except Exception as exc:  # the page or the lab failed: that is a finding, not a crash
        add("javascript", f"notebook could not be checked: {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:300]}")
        if shots:
            try:
                page.screenshot(path=str(shots / f"{stem}-failure.png"))
            except Exception:
                pass
    finally:
        page.close()
        try:  # the notebook's kernel goes with its page
            for s in lab.api("api/sessions"):
                lab.api(f"api/sessions/{s['id']}", method="DELETE")
        except (OSError, urllib.error.URLError, ValueError, TypeError, KeyError):
            pass
    return problems, info


def _screenshot(page, path: Path, max_height: int = 16000) -> None:
    """The whole notebook in one picture: the page is made as tall as the notebook is."""
    height = page.evaluate(
        "() => { const o = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');"
        " return o ? o.scrollHeight : 0; }")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"],
                            "height": max(size["height"], min(max_height, height + 200))})
    try:
        # Run All leaves the notebook scrolled to its last cell
        page.evaluate("() => { const o = document.querySelector("
                      "'.jp-NotebookPanel .jp-WindowedPanel-outer'); if (o) o.scrollTop = 0; }")
        page.wait_for_timeout(500)
        page.screenshot(path=str(path))
    finally:
        page.set_viewport_size(size)


def check_notebooks(
    notebooks: Sequence[Path | str],
    screenshots: Path | str | None = None,
    *,
    chromium: str = CHROMIUM,
    scale: str | None = "quick",
    timeout: float = 1800.0,
    ui_timeout: float = 120.0,
    disable_extensions: Iterable[str] = (),
    log: Log | None = None,
) -> dict[str, list[Problem]]:
    """Open each notebook in JupyterLab, run all its cells, and return its problems.

    The notebooks' common folder is copied to a temporary directory and JupyterLab serves the
    copy; the originals are hashed before and after (a change is a ``repository`` problem).
    `timeout` bounds one Run All (seconds), `ui_timeout` each wait for the interface.
    """
    from playwright.sync_api import sync_playwright

    paths = [Path(n).resolve() for n in notebooks]
    source = Path(os.path.commonpath([p.parent for p in paths]))
    shots = Path(screenshots) if screenshots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    before = notebook_hashes(source)
    results: dict[str, list[Problem]] = {str(n): [] for n in notebooks}
    try:
        with tempfile.TemporaryDirectory(prefix="check-lab-nb-") as tmp:
            root = Path(tmp) / source.name
            shutil.copytree(source, root, ignore=COPY_IGNORE)
            with start_lab(root, scale, disable_extensions, ui_timeout) as lab, \
                    sync_playwright() as pw:
                kernel = _kernel_problems(lab)
                browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                             args=CHROMIUM_ARGS)
                try:
                    context = browser.new_context(viewport=VIEWPORT, service_workers="block")
                    for name, path in zip(notebooks, paths, strict=True):
                        start = time.perf_counter()
                        problems, info = _check_notebook(
                            context, lab, path.relative_to(source).as_posix(), shots, timeout,
                            ui_timeout)
                        results[str(name)] = kernel + problems
                        if log:
                            _log_page(log, str(name), results[str(name)],
                                      time.perf_counter() - start)
                            if info:
                                log(f"    {info}")
                finally:
                    browser.close()
    finally:
        after = notebook_hashes(source)
        for rel in sorted(set(before) | set(after)):
            if before.get(rel) != after.get(rel):
                p = source / rel
                key = next((str(n) for n, q in zip(notebooks, paths, strict=True) if q == p),
                           str(p))
                problem = Problem("repository", f"{p} changed while JupyterLab ran (sha256 "
                                                f"before and after differ)")
                results.setdefault(key, []).append(problem)
                if log:
                    log(f"{key}: {problem}")
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", default=list(DEFAULT_NOTEBOOKS),
                    help="notebooks to run (default: %(default)s)")
    ap.add_argument("--screenshots", default="_build/lab-screenshots",
                    help="folder for the screenshots ('' for none)")
    ap.add_argument("--chromium", default=CHROMIUM, help="the browser (default %(default)s)")
    ap.add_argument("--scale", default="quick",
                    help="SCALE for the kernel ('' leaves it unset; default %(default)s)")
    ap.add_argument("--timeout", type=float, default=1800.0,
                    help="seconds for one notebook's Run All (default %(default)s)")
    ap.add_argument("--ui-timeout", type=float, default=120.0,
                    help="seconds for each wait for the interface (default %(default)s)")
    args = ap.parse_args(argv)

    missing = [n for n in args.notebooks if not Path(n).is_file()]
    if missing:
        print(f"check-lab: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    if not ready("check-lab", args.chromium, args.screenshots):
        return 2
    start = time.perf_counter()
    try:
        results = check_notebooks(args.notebooks, args.screenshots or None,
                                  chromium=args.chromium, scale=args.scale or None,
                                  timeout=args.timeout, ui_timeout=args.ui_timeout, log=print)
    except RuntimeError as exc:  # JupyterLab did not start
        print(f"check-lab: {exc}", file=sys.stderr)
        return 2
    return finish("check-lab", results, "notebook(s)", time.perf_counter() - start,
                  args.screenshots)


if __name__ == "__main__":
    sys.exit(main())
