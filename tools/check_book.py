"""Open every page of the built book in headless Chromium and fail on what a reader would see.

    python tools/check_book.py [_build/html] [--screenshots _build/screenshots]

The HTML is served on a loopback port and each page is opened in Debian's Chromium (driven by
Playwright for Python, launched on the system browser: nothing is downloaded). A page fails on

- math left untypeset: ``\\(``, ``\\[`` or ``$$`` in the text outside code, a math element that
  MathJax did not replace, or a MathJax error;
- an ``img`` that did not load (``naturalWidth`` 0);
- a Jupyter widget that did not render (its view stayed empty, or shows an error or a widget's
  text fallback such as ``HBox(children=...)``);
- a static explorer (``div.itp-explorer``, interpretable.book.explorer) whose picture did not
  load or one of whose controls does not change the picture (tools/check_explorer.py);
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

from check_explorer import check_explorers
from page_scripts import PAGE_CHECKS

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

@dataclass(frozen=True)
class Problem:
    kind: str  # math, image, widget, explorer, javascript, request, traceback, overflow
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
        for detail in check_explorers(page, timeout):
            add("explorer", detail)
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
