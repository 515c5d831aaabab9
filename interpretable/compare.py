"""Committed per-image results of several runs side by side: ``python -m interpretable compare``.

The paper's table (mean of each metric with its 95% interval, per run and method, with the
run's top-1) and, for every run after the first, the paired difference against the first
(:func:`interpretable.tables.paired_comparison`: the same images, a Student-t interval,
a verdict only where the interval excludes zero, marked ``*`` where it does so also after a
Bonferroni correction over the comparison's cells). Chapter 6 shows the same numbers. A result
file without its provenance record (an evaluate run still going) is used as it is and named at
the end as partial.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["RESULT_FILES", "load_results", "top1", "report"]

# The result files of a run folder, as reference/run_all.py writes them: all methods on the
# main file, MobileNet-V2's Score-CAM on a seeded subset in its own file.
RESULT_FILES = ("metrics.csv.gz", "metrics_scorecam.csv.gz")


def load_results(source: str | os.PathLike, files: Sequence[str] = RESULT_FILES):
    """The per-image rows of ``source``: a result file, or a run folder (its ``files`` that
    exist, concatenated; a method may appear in one of them only).

    ``attrs["files"]`` of the returned table maps each method to the file its rows came from
    (a folder's file name, or the file's own name).

    Raises FileNotFoundError when there is no result, ValueError when two files of a folder
    hold the same method.
    """
    import pandas as pd

    from .metrics import read_results

    path = Path(source)
    if path.is_file():
        parts = {path.name: read_results(path)}
    elif path.is_dir():
        parts = {f: read_results(path / f) for f in files if (path / f).is_file()}
    else:
        raise FileNotFoundError(f"source={str(source)!r}: no such result file or run folder")
    if not parts:
        raise FileNotFoundError(f"{path}: none of {', '.join(files)} is there (make them with "
                                f"python -m interpretable evaluate {path})")
    origin: dict[str, str] = {}
    for f, t in parts.items():
        for m in t["method"].unique():
            if m in origin:
                raise ValueError(f"{path}: method {m!r} is in two result files")
            origin[m] = f
    table = pd.concat(parts.values(), ignore_index=True)
    table.attrs["files"] = origin
    return table


def top1(source: str | os.PathLike) -> float | None:
    """Test top-1 of a run folder from its ``summary.json`` (that of the stored weights when
    they were stored in float16), None when there is none."""
    path = Path(source)
    summary = (path if path.is_dir() else path.parent) / "summary.json"
    if not summary.is_file():
        return None
    s = json.loads(summary.read_text())
    return s.get("test_acc_float16_weights", s.get("test_acc"))


def _name(source) -> str:
    p = Path(source)
    return p.name if p.is_dir() else f"{p.parent.name}/{p.name}"


def _markdown(frame) -> str:
    """A pipe table of ``frame`` with its index as the first columns (no tabulate needed)."""
    flat = frame.reset_index()
    head = [str(c) for c in flat.columns]
    rows = [["" if v is None or v != v else str(v) for v in r]
            for r in flat.itertuples(index=False)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def report(sources: Sequence[str | os.PathLike], markdown: bool = False) -> str:
    """The text ``python -m interpretable compare`` prints (see the module docstring)."""
    import pandas as pd

    from .metrics import provenance_path
    from .tables import lower_is_better, paired_comparison, paired_grid, paired_images, paper_table

    if len(sources) < 1:
        raise ValueError("sources: give at least one run folder or result file")
    tables = {_name(s): load_results(s) for s in sources}
    if len(tables) < len(sources):
        raise ValueError("sources: two of them have the same name")
    show = _markdown if markdown else (lambda f: f.to_string())
    blocks, partial = [], []
    for (name, t), source in zip(tables.items(), sources, strict=True):
        for method, f in t.attrs["files"].items():  # evaluate writes provenance when done
            path = Path(source) / f if Path(source).is_dir() else Path(source)
            if not provenance_path(path).is_file():
                n = t.loc[t["method"] == method, "index"].nunique()
                partial.append(f"{name} {method} ({f}, {n} images so far)")
        p = paper_table(t, ci=True)
        p["images"] = t.groupby("method", sort=False)["index"].nunique().reindex(p.index)
        acc = top1(source)
        p["top-1 %"] = "" if acc is None else f"{acc:.2f}"
        blocks.append(p.assign(run=name).reset_index().set_index(["run", "method"]))
    out = ["Mean per run and method, percent, ± half-width of the 95% interval over images "
           f"(lower is better for {lower_is_better()})", show(pd.concat(blocks))]
    names = list(tables)
    for name in names[1:]:
        c = paired_comparison(tables[names[0]], tables[name])
        out += ["", f"{name} minus {names[0]}, paired over {paired_images(c)} images "
                "(better/worse where the interval excludes 0; * also after Bonferroni "
                f"correction over the {len(c)} cells)", show(paired_grid(c))]
    if partial:
        out += ["", "In progress (no provenance record yet: the evaluate run that writes it has "
                "not finished), so partial: " + "; ".join(partial)]
    return "\n".join(out)
