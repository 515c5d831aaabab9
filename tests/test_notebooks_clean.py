"""The chapters are committed clean: no outputs, no execution counts, no widget state.

Outputs belong to a run, not to the source: the book executes every chapter when it is built,
and a student's run in JupyterLab saves outputs into the working copy. Two guards keep them out
of commits: the nbstripout git filter that `make install` sets up (.gitattributes names it), and
this test, which reads each book/*.ipynb as the next commit would hold it (git's index) and as
it is on disk (dirty there only when the filter will strip it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def dirt(notebook: dict) -> list[str]:
    """What a notebook (its parsed JSON) holds that must not be committed."""
    found = []
    if "widgets" in notebook.get("metadata", {}):
        found.append("widget state (metadata.widgets)")
    for i, cell in enumerate(notebook.get("cells", []), 1):
        if cell.get("outputs"):
            found.append(f"cell {i}: {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            found.append(f"cell {i}: execution count {cell['execution_count']}")
    return found


def _git(*args: str, stdin: bytes | None = None) -> bytes | None:
    """git's output in the repository, or None when git is missing or the command fails (not a
    clone, a path it does not track, a clone owned by another user)."""
    if not shutil.which("git"):
        return None
    proc = subprocess.run(["git", *args], cwd=ROOT, input=stdin, capture_output=True)
    return proc.stdout if proc.returncode == 0 else None


def _filter_strips(rel: str) -> bool:
    """True when `git add rel` sends the notebook through a configured nbstripout filter."""
    attr = _git("check-attr", "filter", "--", rel)
    clean = _git("config", "--get", "filter.nbstripout.clean")
    return bool(attr and attr.strip().endswith(b": nbstripout") and clean and clean.strip())


def test_book_has_notebooks():
    assert NOTEBOOKS, "no book/*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_is_clean(path: Path):
    rel = path.relative_to(ROOT).as_posix()
    staged = _git("show", f":{rel}")  # what the next commit holds (None: untracked, no git)
    if staged is not None:
        found = dirt(json.loads(staged))
        assert not found, f"{rel} is staged with {found}: clear its outputs and add it again"
    found = dirt(json.loads(path.read_text(encoding="utf-8")))
    assert not found or _filter_strips(rel), (
        f"{rel} holds {found} and no nbstripout filter strips them when it is added: run "
        f"`make install` (sets the filter up), or clear the outputs (JupyterLab: Edit > Clear "
        f"Outputs of All Cells, then save)"
    )


def _dirty_notebook() -> dict:
    return {
        "cells": [
            {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": "# Title"},
            {"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": 3,
             "source": "print(1)",
             "outputs": [{"output_type": "stream", "name": "stdout", "text": "1\n"}]},
            {"cell_type": "code", "id": "c2", "metadata": {}, "execution_count": None,
             "source": "", "outputs": []},
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python", "version": "3.11.7",
                              "codemirror_mode": {"name": "ipython", "version": 3}},
            "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def test_dirt_finds_outputs_counts_and_widget_state(tmp_path: Path):
    path = tmp_path / "dirty.ipynb"
    path.write_text(json.dumps(_dirty_notebook()))
    found = dirt(json.loads(path.read_text()))
    assert found == ["widget state (metadata.widgets)", "cell 2: 1 output(s)",
                     "cell 2: execution count 3"]


def test_dirt_passes_a_clean_notebook():
    nb = _dirty_notebook()
    del nb["metadata"]["widgets"]
    nb["cells"][1].update(outputs=[], execution_count=None)
    assert dirt(nb) == []


def test_gitattributes_sends_notebooks_through_nbstripout():
    attr = _git("check-attr", "filter", "diff", "--", "book/02_gradients.ipynb")
    if attr is None:
        pytest.skip("not a git clone (or git refuses it)")
    assert b"filter: nbstripout" in attr and b"diff: ipynb" in attr, attr


def test_git_filter_strips_a_dirty_notebook():
    # the clean command `make install` configured, run as git runs it on `git add`
    clean = _git("config", "--get", "filter.nbstripout.clean")
    if not clean:
        pytest.skip("the nbstripout filter is not set up in this clone (`make install` does it)")
    proc = subprocess.run(clean.decode().strip(), shell=True, cwd=ROOT, capture_output=True,
                          input=json.dumps(_dirty_notebook()).encode())
    assert proc.returncode == 0, proc.stderr.decode()
    stripped = json.loads(proc.stdout)
    assert dirt(stripped) == []
    # the source, the cells' ids and the language's name stay as they were
    assert [c["id"] for c in stripped["cells"]] == ["m1", "c1", "c2"]
    assert ["".join(c["source"]) for c in stripped["cells"]] == ["# Title", "print(1)", ""]
    assert stripped["metadata"]["language_info"] == {"name": "python"}
    assert stripped["metadata"]["kernelspec"]["name"] == "python3"
