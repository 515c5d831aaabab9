"""Time every chapter of the book as ``make book`` executes it: per chapter and per cell.

    python tools/time_chapters.py [notebooks...] [--scale quick|full] [--out times.json]
    python tools/time_chapters.py --update     # write the committed times into the chapters

Each notebook runs in a fresh kernel (nbclient, the executor Jupyter Book uses) from the
folder it lives in, with ``SCALE`` (and ``VERIFY``, if set) in the environment; nothing is
written back to the notebooks. Prints a table of the chapters (minutes) and the slowest cells
of each, and writes the measurement with the machine it ran on to ``--out``. Without
notebooks: the chapters of ``_toc.yml``, in order. What ``start(minutes=...)`` tells readers
and the "Run time" line of its objectives are checked against the committed measurements
(``benchmarks/results/book_times_{quick,full}.json``) by ``tests/test_book_timings.py``;
``--update`` writes the measured minutes into both.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: the chapter's call ``start(..., minutes=(quick, full), ...)``
START_MINUTES = re.compile(r"minutes=\((\d+(?:\.\d+)?), (\d+(?:\.\d+)?)\)")
#: the sentence of the chapter's objectives box that says the same to readers
RUN_TIME = re.compile(r"\*\*Run time\.\*\* About (\d+) min \(quick SCALE\) or (\d+) min "
                      r"\(SCALE=full\) on a 2-core CPU")


def chapters(toc: Path = ROOT / "_toc.yml") -> list[Path]:
    """The notebooks of the table of contents, in reading order."""
    found = re.findall(r"(?:root|file):\s*(\S+)", toc.read_text())
    paths = [ROOT / f"{name}.ipynb" for name in found]
    return [p for p in paths if p.is_file()]


def _seconds(cell: dict) -> float:
    ex = cell.get("metadata", {}).get("execution", {})
    try:
        t0 = dt.datetime.fromisoformat(ex["iopub.execute_input"].replace("Z", "+00:00"))
        t1 = dt.datetime.fromisoformat(ex["shell.execute_reply"].replace("Z", "+00:00"))
    except KeyError:
        return 0.0
    return (t1 - t0).total_seconds()


def time_notebook(path: Path, timeout: int = 1800, root: Path = ROOT) -> dict:
    """Execute one notebook in a fresh kernel; its wall time and each code cell's seconds
    (``notebook``: its path relative to ``root``)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=True,
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()
    wall = time.perf_counter() - t0
    cells = [{"index": i, "seconds": round(_seconds(c), 2),
              "first_line": "".join(c.source).strip().splitlines()[0][:70]
              if c.source.strip() else ""}
             for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    return {"notebook": str(path.relative_to(root)), "seconds": round(wall, 1),
            "cells": cells}


def machine() -> dict:
    """Where the measurement ran: CPU count, torch threads, versions, the commit (short,
    ``+`` when the chapters or the package had uncommitted changes, as ``git describe``)."""
    import torch

    from interpretable.provenance import git_info, now_utc

    info = git_info(ROOT, paths=("book", "interpretable", "tools"))
    commit = info and info["commit"][:7] + ("+" if info["dirty"] else "")
    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "commit": commit, "date": now_utc()}


def measurement(scale: str, results: Path = RESULTS) -> dict:
    """The committed measurement at ``scale`` (what ``main`` writes to ``--out``)."""
    return json.loads((results / f"book_times_{scale}.json").read_text())


def measured_minutes(scale: str, results: Path = RESULTS, data: dict | None = None
                     ) -> dict[str, float]:
    """Minutes per chapter (by file stem) of the committed measurement at ``scale`` (or of
    ``data``, a measurement already read)."""
    data = data or measurement(scale, results)
    return {Path(c["notebook"]).stem: c["seconds"] / 60 for c in data["chapters"]}


def shown(minutes: float) -> int:
    """Whole minutes as a chapter states them (at least 1)."""
    return max(1, round(minutes))


#: the README's table of run times sits between these two lines
TABLE_START = "<!-- book-times: tools/time_chapters.py --update -->"
TABLE_END = "<!-- /book-times -->"


def times_table(results: Path = RESULTS) -> str:
    """The committed measurements as a Markdown table: minutes per chapter at both SCALEs."""
    data = measurement("full", results)
    quick, full = measured_minutes("quick", results), measured_minutes("full", data=data)
    lines = ["| chapter | quick SCALE | SCALE=full |", "| --- | ---: | ---: |"]
    lines += [f"| `{stem}` | {quick[stem]:.1f} min | {full[stem]:.1f} min |" for stem in full]
    lines.append(f"| **whole book** | **{sum(quick.values()):.1f} min** | "
                 f"**{sum(full.values()):.1f} min** |")
    return (f"Measured with `VERIFY=quick` on {data['cpus']} CPU cores (torch "
            f"{data['torch']}, commit {data['commit']}), nothing else running:\n\n"
            + "\n".join(lines))


def update(paths: list[Path], results: Path = RESULTS, readme: Path | None = None
           ) -> list[str]:
    """Write the measured minutes into each chapter's ``start(minutes=...)`` and its "Run
    time" sentence, and the table into ``readme``; returns the files changed."""
    quick, full = measured_minutes("quick", results), measured_minutes("full", results)
    changed = []
    if readme is not None:
        text = readme.read_text()
        i, j = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
        new = text[:i] + "\n" + times_table(results) + "\n" + text[j:]
        if new != text:
            readme.write_text(new)
            changed.append(readme.name)
    for path in paths:
        if path.stem not in quick or path.stem not in full:
            continue
        q, f = shown(quick[path.stem]), shown(full[path.stem])
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            text = "".join(cell["source"])
            new = START_MINUTES.sub(f"minutes=({q}, {f})", text) \
                if cell["cell_type"] == "code" and "start(" in text else text
            new = RUN_TIME.sub(f"**Run time.** About {q} min (quick SCALE) or {f} min "
                               "(SCALE=full) on a 2-core CPU", new)
            if new != text:
                cell["source"] = new.splitlines(keepends=True)
        out = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        if out != path.read_text():
            path.write_text(out)
            changed.append(path.name)
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--scale", choices=("quick", "full"),
                    default=os.environ.get("SCALE") or "quick")
    ap.add_argument("--out", type=Path, help="JSON file for the measurement")
    ap.add_argument("--slowest", type=int, default=3, help="cells listed per chapter")
    ap.add_argument("--update", action="store_true",
                    help="write the committed measurements into the chapters, run nothing")
    args = ap.parse_args(argv)
    if args.update:
        changed = update([p.resolve() for p in args.notebooks] or chapters(),
                         readme=ROOT / "README.md")
        print("updated:", ", ".join(changed) or "nothing")
        return 0
    os.environ["SCALE"] = args.scale  # the kernels inherit it
    paths = [p.resolve() for p in args.notebooks] or chapters()
    result = {"scale": args.scale, "verify": os.environ.get("VERIFY") or "quick",
              **machine(), "chapters": []}
    print(f"SCALE={result['scale']} VERIFY={result['verify']}, {result['cpus']} CPUs")
    for path in paths:
        timed = time_notebook(path)
        result["chapters"].append(timed)
        print(f"{timed['notebook']:<28} {timed['seconds'] / 60:6.1f} min", flush=True)
        for c in sorted(timed["cells"], key=lambda c: -c["seconds"])[:args.slowest]:
            print(f"    {c['seconds']:7.1f} s  cell {c['index']:>2}: {c['first_line']}")
        if args.out:  # after every chapter: a long run keeps what it measured
            tmp = args.out.with_suffix(".tmp")
            tmp.write_text(json.dumps(result, indent=1) + "\n")
            tmp.replace(args.out)
    total = sum(c["seconds"] for c in result["chapters"])
    print(f"{'total':<28} {total / 60:6.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
