"""The book's notebooks as committed: valid nbformat 4.5 with a unique id per cell, and no
outputs (the book build and nbval execute them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 7


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_and_committed_without_outputs(path):
    import nbformat

    raw = json.loads(path.read_text())
    ids = [c.get("id") for c in raw["cells"]]
    assert None not in ids, f"{path.name}: cells {[i for i, v in enumerate(ids) if v is None]} " \
        "have no id (nbformat 4.5 requires one)"
    assert len(set(ids)) == len(ids), f"{path.name}: cell ids repeat"
    nbformat.validate(nbformat.reads(path.read_text(), as_version=4))
    for i, c in enumerate(raw["cells"]):
        if c["cell_type"] == "code":
            assert c.get("outputs") == [] and c.get("execution_count") is None, \
                f"{path.name}: cell {i} was committed with outputs"
