"""Drive the static explorers of a built book page and report the controls that do nothing.

A static explorer (``interpretable.book.explorer``) is a ``div.itp-explorer`` holding
``<select>`` and ``<input type=range>`` controls and a picture ``img.itp-explorer-view``
whose source its script swaps. :func:`check_explorers` takes a Playwright ``Page`` of a
loaded book page, and for every explorer and every control tries the control's other values
one by one (restoring the first value after each control): a control none of whose other
values changes the picture's source is reported, and so is a picture that did not load
(``naturalWidth`` 0) at the start or after a change. Returns one string per problem, []
when every explorer responds (or the page has none).

    python tools/check_explorer.py page.html [more.html ...]    # opens each file directly
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT_SELECTOR = ".itp-explorer"
VIEW_SELECTOR = "img.itp-explorer-view"
CONTROL_SELECTOR = "select, input[type=range]"

# The picture's source once it has settled: [src, naturalWidth] (waits up to `timeout` ms for
# the image to finish loading; a data URI decodes asynchronously).
_PICTURE = """
async (img, timeout) => {
  const end = Date.now() + timeout;
  while (!img.complete && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  return [img.currentSrc || img.src || "", img.complete ? img.naturalWidth : 0];
}
"""

# The values a control can take other than its current one (options of a select, the steps
# of a range), and its current value.
_VALUES = """
(el) => {
  if (el.tagName === "SELECT") return [el.value, Array.from(el.options).map((o) => o.value)];
  const lo = Number(el.min || 0), hi = Number(el.max || 100);
  const step = Number(el.step) > 0 ? Number(el.step) : 1;
  const all = [];
  for (let v = lo; v <= hi + 1e-9 && all.length < 1000; v += step) all.push(String(v));
  return [el.value, all];
}
"""


def _set(control, value: str) -> None:
    """Set a control as a reader would: choose the option, or move the slider (both fire
    the ``input`` and ``change`` events)."""
    if control.evaluate("el => el.tagName") == "SELECT":
        control.select_option(value)
    else:
        control.fill(value)


def check_explorers(page, timeout: float = 5.0) -> list[str]:
    """Problems of the static explorers on ``page`` (a Playwright sync ``Page``, loaded)."""
    problems: list[str] = []
    roots = page.locator(ROOT_SELECTOR)
    for i in range(roots.count()):
        root = roots.nth(i)
        name = f"explorer {i + 1} ({root.get_attribute('id') or 'no id'})"
        view = root.locator(VIEW_SELECTOR)
        if view.count() != 1:
            problems.append(f"{name}: {view.count()} pictures ({VIEW_SELECTOR}), expected 1")
            continue

        def picture(view=view) -> tuple[str, int]:
            src, width = view.evaluate(_PICTURE, int(timeout * 1000))
            return src, int(width)

        start, width = picture()
        if width == 0:
            problems.append(f"{name}: the picture did not load (naturalWidth 0)")
        controls = root.locator(CONTROL_SELECTOR)
        if controls.count() == 0:
            problems.append(f"{name}: no controls")
        for j in range(controls.count()):
            control = controls.nth(j)
            label = (control.get_attribute("data-key") or control.get_attribute("id")
                     or f"control {j + 1}")
            current, values = control.evaluate(_VALUES)
            others = [v for v in values if v != current]
            if not others:
                problems.append(f"{name}: control {label!r} has no other value")
                continue
            changed = False
            for value in others:
                _set(control, value)
                src, width = picture()
                if width == 0:
                    problems.append(f"{name}: the picture did not load after setting "
                                    f"{label!r} to {value!r} (naturalWidth 0)")
                    break
                if src != start:
                    changed = True
                    break
            _set(control, current)
            if not changed:
                problems.append(f"{name}: changing {label!r} does not change the picture")
            elif picture()[0] != start:
                problems.append(f"{name}: setting {label!r} back to {current!r} does not "
                                "restore the picture")
    return problems


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from check_book import CHROMIUM, CHROMIUM_ARGS

    files = [Path(a).resolve() for a in (argv if argv is not None else sys.argv[1:])]
    if not files:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    bad = 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            for f in files:
                page = browser.new_page()
                page.goto(f.as_uri(), wait_until="load")
                found = check_explorers(page)
                n = page.locator(ROOT_SELECTOR).count()
                print(f"{f.name}: {n} explorer(s), "
                      + (f"{len(found)} problem(s)" if found else "ok"))
                for p in found:
                    print(f"    {p}")
                bad += bool(found)
                page.close()
        finally:
            browser.close()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
