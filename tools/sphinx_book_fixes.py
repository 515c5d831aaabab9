"""Sphinx fixes for the book's HTML; a local extension (_config.yml, sphinx.local_extensions).

Sphinx 7.4 adds an inline script registered after the builder started (sphinx-thebe's
``const THEBE_JS_URL = ...``, sphinx-togglebutton's selector) twice to every page: once as it
was registered and once when it re-reads the registry, with the file name ``''`` instead of
``None``, so its own duplicate check misses it. Declaring a ``const`` twice is a JavaScript
error on every page ("Identifier 'THEBE_JS_URL' has already been declared"). This extension
drops the second copy of any script, just before the page is written.
"""

from __future__ import annotations

from typing import Any


def _script_key(js: Any) -> tuple:
    filename = getattr(js, "filename", js) or ""
    attributes = getattr(js, "attributes", {}) or {}
    return (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen: set[tuple] = set()
    unique = []
    for js in scripts:
        key = _script_key(js)
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def setup(app) -> dict[str, Any]:
    # late (priority 900): after the extensions that add per-page scripts (myst-nb's widgets)
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
