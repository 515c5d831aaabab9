"""Open every page of the built book in headless Chromium and fail on what a reader would see.

    python tools/check_book.py [_build/html] [--screenshots _build/screenshots]

The HTML is served on a loopback port and each page is opened in Debian's Chromium (driven by
Playwright for Python, launched on the system browser: nothing is downloaded). A page fails on

- math left untypeset: ``\\(``, ``\\[`` or ``$$`` in the text outside code, a math element that
  MathJax did not replace, or a MathJax error;
- an ``img`` that did not load (``naturalWidth`` 0);
- a Jupyter widget that did not render (its view stayed empty, or shows an error or a widget's
  text fallback such as ``HBox(children=...)``);
- a JavaScript error (an uncaught exception or a ``console.error``);
- a request that failed (an HTTP error, a refused load) and any request for a non-loopback
  address: the book must carry everything it loads, so such requests are blocked and reported;
- a Python traceback in an output (``Traceback (most recent call last)``, an error output,
  a raw ANSI escape);
- an output line cut at the right edge (a ``pre`` in an output wider than its box).

A full-page screenshot of each page goes to the screenshots folder. Exit status 0 when no page
has a problem, 1 otherwise, 2 when the browser or the HTML is missing.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import ipaddress
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# what Chromium needs on a machine whose network is closed (no background connections)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", "_panels_static"}

# The start of every in-page check (here and in tools/check_lab.py): a list of problems and
# helpers to record one and to wait for a condition (bounded by `timeout` ms).
JS_PRELUDE = r"""
  const problems = [];
  const add = (kind, detail) => problems.push([kind, String(detail).slice(0, 300)]);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const until = async (cond) => {
    const end = Date.now() + timeout;
    while (Date.now() < end) { if (cond()) return true; await sleep(100); }
    return cond();
  };
  const short = (s) => s.replace(/\s+/g, " ").trim().slice(0, 120);
"""

# Runs in the page once it has loaded: waits for MathJax, images and widgets (each bounded by
# `timeout` ms), then returns [[kind, detail], ...].
PAGE_CHECKS = "async (timeout) => {\n" + JS_PRELUDE + r"""

  // MathJax 3 typesets after it has loaded; wait for it when the page loads it.
  const loadsMathJax = Array.from(document.scripts).some(
    (s) => /mathjax[^?]*\/(?:tex|mml)-[\w-]+\.js|\/MathJax\.js/i.test(s.src));
  await until(() => !loadsMathJax ||
                    (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise));
  if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    try { await Promise.race([window.MathJax.startup.promise, sleep(timeout)]); }
    catch (e) { add("math", "MathJax failed: " + e); }
  }

  // Images: load lazy ones now, then wait for every image to settle.
  const imgs = Array.from(document.images);
  imgs.forEach((img) => { if (img.loading === "lazy") img.loading = "eager"; });
  await until(() => imgs.every((img) => img.complete));
  for (const img of imgs) {
    if (!img.complete || img.naturalWidth === 0) {
      add("image", "image did not load: " + (img.currentSrc || img.src || img.outerHTML));
    }
  }

  // Widgets: the widget manager puts a div.widget-subarea before each view's script tag.
  const views = Array.from(
    document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'));
  // A view hidden by its own saved state (tqdm hides a leave=False bar when it is done) is
  // rendered; the book's CSS collapses it.
  const hiddenByState = (box) => Array.from(box.children).every(
    (c) => c.style.visibility === "hidden" || c.style.display === "none");
  const rendered = (s) => {
    const box = s.previousElementSibling;
    return box && box.classList.contains("widget-subarea") && box.childElementCount > 0 &&
      (box.getBoundingClientRect().height > 0 || hiddenByState(box));
  };
  await until(() => views.every(rendered));
  for (const s of views) {
    let id = "?";
    try { id = JSON.parse(s.textContent).model_id; } catch (e) { /* reported below */ }
    if (!rendered(s)) { add("widget", "widget " + id + " did not render"); continue; }
    const box = s.previousElementSibling;
    if (/Error displaying widget|Could not create a view/.test(box.textContent) ||
        box.querySelector(".jupyter-widgets-error-widget, .widget-error")) {
      add("widget", "widget " + id + " shows an error: " + short(box.textContent));
    }
  }
  const outputs = Array.from(document.querySelectorAll(".cell_output, .output"));
  const fallback = new RegExp(
    "\\b(?:HBox|VBox|Box|interactive|FloatProgress|IntProgress|Output|Tab|Accordion)" +
    "\\(children=|\\bLoading widget\\.\\.\\.|\\bWidget not rendered\\b|" +
    "\\bError displaying widget\\b");
  for (const o of outputs) {
    if (o.closest(".widget-subarea")) continue;
    const m = (o.innerText || "").match(fallback);
    if (m && !o.parentElement.closest(".cell_output, .output")) {
      add("widget", "widget shown as its text fallback: " + short(m[0]));
    }
  }

  // Raw math delimiters in the text a reader sees (code and outputs in <pre> are left alone).
  const skip = "pre, code, script, style, textarea, kbd, samp, .highlight, mjx-container, " +
               ".widget-subarea";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let text = "";
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(skip)) continue;  // hidden text counts too (a collapsed section)
    text += n.nodeValue + "\n";
  }
  const raw = text.match(/\\\(|\\\[|\$\$/g) || [];
  if (raw.length) {
    const i = text.search(/\\\(|\\\[|\$\$/);
    add("math", raw.length + " raw math delimiter(s) in the text, first: " +
        short(text.slice(Math.max(0, i - 20), i + 60)));
  }
  for (const m of document.querySelectorAll("span.math, div.math")) {
    if (!m.querySelector("mjx-container") && /\\\(|\\\[|\$/.test(m.textContent)) {
      add("math", "math not typeset: " + short(m.textContent));
    }
  }
  for (const e of document.querySelectorAll("mjx-merror, [data-mjx-error]")) {
    add("math", "MathJax error: " + (e.getAttribute("data-mjx-error") || short(e.textContent)));
  }

  // Python tracebacks and error outputs.
  for (const o of document.querySelectorAll(".cell_output .traceback, .output.traceback, " +
                                             ".output.error, .output_error")) {
    add("traceback", "error output: " + short(o.textContent));
  }
  for (const o of outputs) {
    if (o.parentElement.closest(".cell_output, .output")) continue;
    const t = o.textContent || "";
    const i = t.indexOf("Traceback (most recent call last)");
    if (i >= 0 && !o.querySelector(".traceback")) {
      add("traceback", "traceback in an output: " + short(t.slice(i, i + 160)));
    }
    if (/\x1b\[[0-9;]*m|\[0;3[0-9]m/.test(t)) {
      add("traceback", "raw ANSI escape in an output: " + short(t));
    }
  }

  // Output lines cut at the right edge: a <pre> in an output wider than its box.
  for (const p of document.querySelectorAll(".cell_output pre, .output pre")) {
    if (p.closest(".cell_input, .widget-subarea")) continue;
    if (p.scrollWidth > p.clientWidth + 2) {
      const line = (p.textContent || "").split("\n")
        .reduce((a, b) => (b.length > a.length ? b : a), "");
      add("overflow", "output wider than the page (" + p.scrollWidth + " > " + p.clientWidth +
          " px): " + short(line));
    }
  }
  return problems;
}
"""


@dataclass(frozen=True)
class Problem:
    kind: str  # math, image, widget, javascript, request, traceback, overflow
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve `root` on a free loopback port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def pages(root: Path) -> list[str]:
    """Every HTML page of the build, as paths relative to `root` (assets left out)."""
    out = []
    for p in sorted(root.rglob("*.html")):
        rel = p.relative_to(root)
        if not SKIP_DIRS.intersection(rel.parts[:-1]):
            out.append(rel.as_posix())
    return out


def _loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    host = (parts.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shot_name(page: str) -> str:
    return page.removesuffix(".html").replace("/", "__") + ".png"


def check_site(
    root: Path | str,
    screenshots: Path | str | None = None,
    only: Iterable[str] | None = None,
    chromium: str = CHROMIUM,
    timeout: float = 20.0,
    log=None,
) -> dict[str, list[Problem]]:
    """Check the pages under `root` (all, or the relative paths in `only`)."""
    from playwright.sync_api import sync_playwright

    root = Path(root)
    todo = list(only) if only is not None else pages(root)
    shots = Path(screenshots) if screenshots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[Problem]] = {}
    with (
        serve(root) as base,
        sync_playwright() as pw,
        tempfile.TemporaryDirectory(prefix="check-book-") as profile,
    ):
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            service_workers="block",
        )
        try:
            for rel in todo:
                start = time.perf_counter()
                results[rel] = _check_page(context, base + rel, shots and shots / _shot_name(rel),
                                           timeout)
                if log:
                    _log_page(log, rel, results[rel], time.perf_counter() - start)
        finally:
            context.close()
    return results


def _log_page(log, rel: str, problems: list[Problem], seconds: float, per_kind: int = 6):
    log(f"{rel}: {f'{len(problems)} problem(s)' if problems else 'ok'} ({seconds:.1f} s)")
    shown: dict[str, int] = {}
    for p in problems:
        shown[p.kind] = shown.get(p.kind, 0) + 1
        if shown[p.kind] <= per_kind:
            log(f"    {p}")
    for kind, n in shown.items():
        if n > per_kind:
            log(f"    {kind}: ... and {n - per_kind} more")


class Found:
    """The problems of one page, each reported once. ``route`` is a Playwright route handler
    that lets loopback requests through and blocks (and reports) every other one: the pages
    must not need the Internet."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._seen: set[tuple[str, str]] = set()

    def add(self, kind: str, detail: str) -> None:
        if (kind, detail) not in self._seen:
            self._seen.add((kind, detail))
            self.problems.append(Problem(kind, detail))

    def route(self, r) -> None:
        if _loopback(r.request.url):
            r.continue_()
        else:
            self.add("request", f"non-loopback request blocked: {r.request.url}")
            r.abort("blockedbyclient")


def _check_page(context, url: str, shot: Path | None, timeout: float) -> list[Problem]:
    found = Found()
    problems, add, route = found.problems, found.add, found.route

    def on_failed(req):
        if _loopback(req.url):  # the blocked ones are reported by route()
            add("request", f"request failed ({req.failure}): {req.url}")

    def on_response(resp):
        if resp.status >= 400:
            add("request", f"HTTP {resp.status}: {resp.url}")

    def on_console(msg):
        if msg.type == "error":
            where = msg.location.get("url", "") if msg.location else ""
            add("javascript", f"console error: {msg.text}" + (f" ({where})" if where else ""))

    page = context.new_page()
    page.route("**/*", route)
    page.on("requestfailed", on_failed)
    page.on("response", on_response)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: add("javascript", f"uncaught: {exc}"))
    try:
        page.goto(url, wait_until="load", timeout=timeout * 1000)
        try:  # late loads (fonts, widget assets); a page that never settles is still checked
            page.wait_for_load_state("networkidle", timeout=timeout * 1000)
        except Exception:
            pass
        for kind, detail in page.evaluate(PAGE_CHECKS, int(timeout * 1000)):
            add(kind, detail)
        if shot:
            page.evaluate("document.fonts.ready.then(() => true)")
            page.screenshot(path=str(shot), full_page=True, timeout=timeout * 3000)
        page.wait_for_timeout(250)  # a late console error or failed request still counts
    except Exception as exc:  # a page that did not load at all
        add("javascript", f"page could not be checked: {type(exc).__name__}: {exc}")
    finally:
        page.close()
    return problems


def ready(tool: str, chromium: str, screenshots: str | None) -> bool:
    """Whether a check can start: False (after saying why on stderr) without a browser at
    ``chromium``; else the screenshot folder is emptied for this run."""
    if not (shutil.which(chromium) or Path(chromium).is_file()):
        print(f"{tool}: no browser at {chromium} (`make browser` installs Debian's chromium; "
              "or set CHROMIUM=/path/to/chrome)", file=sys.stderr)
        return False
    if screenshots:
        shutil.rmtree(screenshots, ignore_errors=True)
    return True


def finish(tool: str, results: dict, what: str, seconds: float, screenshots: str | None) -> int:
    """Print the closing line of a check and return its exit status (1 on any problem)."""
    bad = {k: v for k, v in results.items() if v}
    print(f"{tool}: {len(results)} {what} in {seconds:.0f} s, "
          f"{sum(len(v) for v in bad.values())} problem(s) in {len(bad)}"
          + (f"; screenshots in {screenshots}/" if screenshots else ""))
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html", nargs="?", default="_build/html", help="the built book")
    ap.add_argument("--screenshots", default="_build/screenshots",
                    help="folder for a full-page PNG of each page ('' for none)")
    ap.add_argument("--chromium", default=CHROMIUM, help="the browser (default %(default)s)")
    ap.add_argument("--page", action="append", help="check only this page (relative path)")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per wait")
    args = ap.parse_args(argv)

    root = Path(args.html)
    if not (root / "index.html").is_file():
        print(f"check-book: no built book at {root} (run `make book` first)", file=sys.stderr)
        return 2
    if not ready("check-book", args.chromium, args.screenshots):
        return 2
    start = time.perf_counter()
    results = check_site(root, args.screenshots or None, args.page, args.chromium, args.timeout,
                         log=print)
    return finish("check-book", results, "pages", time.perf_counter() - start,
                  args.screenshots)


if __name__ == "__main__":
    sys.exit(main())
