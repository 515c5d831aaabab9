"""What each chapter's first line promises about its run time is what was measured.

``start(minutes=(quick, full))`` prints the chapter's run time on a 2-core CPU at both SCALEs;
``benchmarks/results/book_times_{quick,full}.json`` are measurements by
``tools/time_chapters.py`` (``make time-book``, ``SCALE=full make time-book``) on the 2-core
machine with nothing else running. The published book is built at the full SCALE, within
an hour."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import time_chapters  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
#: the published (full SCALE) book builds within this many minutes on 2 cores
FULL_BUDGET = 60


def declared_minutes(path: Path) -> tuple[float, float]:
    """The ``minutes=(quick, full)`` of the chapter's ``start(...)`` call."""
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        if "start(" not in src:
            continue
        lines = [line for line in src.splitlines() if not line.startswith("%")]
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "start":
                for kw in node.keywords:
                    if kw.arg == "minutes":
                        return ast.literal_eval(kw.value)
    raise AssertionError(f"{path.name}: no start(minutes=...) call")


def measured(scale: str) -> dict[str, float]:
    data = time_chapters.measurement(scale)
    assert data["scale"] == scale and data["verify"] == "quick"
    assert data["cpus"] == 2
    return time_chapters.measured_minutes(scale, data=data)


def test_the_measurements_cover_every_chapter():
    stems = {p.stem for p in time_chapters.chapters()}
    assert {p.stem for p in time_chapters.chapters()} >= {"intro", "02_gradients"}
    for scale in ("quick", "full"):
        assert set(measured(scale)) == stems


@pytest.mark.parametrize("path", time_chapters.chapters(), ids=lambda p: p.stem)
def test_declared_minutes_are_the_measured_ones(path):
    """``start(minutes=...)`` and the "Run time" sentence: the committed measurements in
    whole minutes (``python tools/time_chapters.py --update`` writes them)."""
    expected = tuple(time_chapters.shown(measured(s)[path.stem]) for s in ("quick", "full"))
    assert declared_minutes(path) == expected
    if path.stem != "intro":
        text = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                       if c["cell_type"] == "markdown")
        said = time_chapters.RUN_TIME.findall(text)
        assert said == [tuple(str(m) for m in expected)], said


def test_the_readme_shows_the_measured_times():
    readme = (ROOT / "README.md").read_text()
    assert time_chapters.times_table() in readme


def test_update_writes_the_measured_minutes(tmp_path):
    chapter = ROOT / "book" / "07_speed.ipynb"
    copy = tmp_path / chapter.name
    copy.write_text(time_chapters.START_MINUTES.sub("minutes=(99, 98)", chapter.read_text()))
    results = tmp_path / "results"
    results.mkdir()
    for scale, seconds in (("quick", 130), ("full", 20)):
        (results / f"book_times_{scale}.json").write_text(json.dumps(
            {"chapters": [{"notebook": "book/07_speed.ipynb", "seconds": seconds}]}))
    assert time_chapters.update([copy], results) == [copy.name]
    assert "minutes=(2, 1)" in copy.read_text()
    assert "About 2 min (quick SCALE) or 1 min (SCALE=full)" in copy.read_text()
    assert time_chapters.update([copy], results) == []  # nothing left to change


def test_the_full_book_builds_within_the_budget():
    total = sum(measured("full").values())
    assert total <= FULL_BUDGET, f"SCALE=full takes {total:.0f} min"


def test_time_notebook_measures_each_cell(tmp_path, monkeypatch):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# a chapter"),
        nbformat.v4.new_code_cell("import os, time\ntime.sleep(0.5)"),
        nbformat.v4.new_code_cell("assert os.environ['SCALE'] == 'full'")])
    path = tmp_path / "chapter.ipynb"
    nbformat.write(nb, path)
    before = path.read_text()
    monkeypatch.setenv("SCALE", "full")  # the kernel inherits it
    timed = time_chapters.time_notebook(path, root=tmp_path)
    assert [c["index"] for c in timed["cells"]] == [1, 2]
    assert 0.5 <= timed["cells"][0]["seconds"] < 5
    assert timed["seconds"] >= timed["cells"][0]["seconds"]
    assert path.read_text() == before  # nothing written back


def test_the_published_book_is_built_at_the_full_scale():
    workflow = (ROOT / ".github" / "workflows" / "book.yml").read_text()
    build = workflow[workflow.index("run: make book") - 200:workflow.index("run: make book")]
    assert "SCALE: full" in build and "VERIFY" not in build


def test_git_info_counts_only_changes_below_paths(tmp_path):
    import subprocess

    from interpretable.provenance import git_info

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    for name in ("book", "reference"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f.txt").write_text("a")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    (tmp_path / "reference" / "f.txt").write_text("b")  # e.g. a lane's checkpoint
    assert git_info(tmp_path)["dirty"]
    assert not git_info(tmp_path, paths=("book",))["dirty"]
    (tmp_path / "book" / "f.txt").write_text("b")
    assert git_info(tmp_path, paths=("book",))["dirty"]
