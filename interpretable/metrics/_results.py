"""Result files of :func:`evaluate`: atomic CSV/JSON writes, loading for resume, tables."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from .._io import atomic_write_text

__all__ = ["check_suffix", "save", "load", "write_meta", "complete_rows", "as_table", "rows_of"]

_COLUMNS = ("index", "label", "predicted", "target", "method", "Y", "O",
            "ad", "ag", "ai", "insertion", "deletion")
_INTS = ("index", "label", "predicted", "target")


def check_suffix(path: Path) -> None:
    if path.suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"out must end in .csv or .json, got {str(path)!r}")


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def write_meta(path: Path, meta: dict) -> None:
    """CSV keeps the run's settings beside it (JSON holds them inside, see :func:`save`)."""
    if path.suffix.lower() == ".csv":
        atomic_write_text(_meta_path(path), json.dumps(meta, indent=1))


def _json_value(v):
    return None if isinstance(v, float) and math.isnan(v) else v


def save(path: Path, rows: list[dict], meta: dict) -> None:
    """Write all rows (CSV with a header, or JSON ``{"meta": ..., "rows": [...]}``)."""
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=_COLUMNS, lineterminator="\n")
        writer.writeheader()
        # repr() of a float round-trips exactly, so resuming loses nothing.
        writer.writerows({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()}
                         for r in rows)
        atomic_write_text(path, buf.getvalue())
    else:
        clean = [{k: _json_value(v) for k, v in r.items()} for r in rows]
        atomic_write_text(path, json.dumps({"meta": meta, "rows": clean}))


def _typed(row: dict) -> dict:
    out = {}
    for k in _COLUMNS:
        if k not in row:
            raise ValueError(f"missing column {k!r}")
        v = row[k]
        if k in _INTS:
            out[k] = int(v)
        elif k == "method":
            out[k] = str(v)
        else:
            out[k] = math.nan if v is None or v == "" else float(v)
    return out


def load(path: Path, expected_meta: dict) -> list[dict]:
    """Rows of an earlier run of the same settings (for resume); ValueError otherwise."""
    hint = "delete the file or pass resume=False to start over"
    try:
        if path.suffix.lower() == ".csv":
            meta_file = _meta_path(path)
            if not meta_file.exists():
                raise ValueError(f"{meta_file.name} with the run's settings is missing")
            meta = json.loads(meta_file.read_text())
            with open(path, newline="") as f:
                raw = list(csv.DictReader(f))
        else:
            data = json.loads(path.read_text())
            meta, raw = data["meta"], data["rows"]
        rows = [_typed(r) for r in raw]
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"out={str(path)!r}: cannot resume from it ({exc}); {hint}") from exc
    diff = sorted(k for k in expected_meta if meta.get(k) != expected_meta[k])
    if diff:
        got = {k: meta.get(k) for k in diff}
        want = {k: expected_meta[k] for k in diff}
        raise ValueError(
            f"out={str(path)!r} was written by a run with other settings: {got} (this run: "
            f"{want}); {hint}"
        )
    return rows


def complete_rows(rows: list[dict], methods: list[str]) -> list[dict]:
    """Keep the rows of images that have a row for every method (others are recomputed)."""
    have: dict[int, set] = {}
    for r in rows:
        have.setdefault(r["index"], set()).add(r["method"])
    full = {i for i, m in have.items() if set(methods) <= m}
    return [r for r in rows if r["index"] in full and r["method"] in methods]


def _pandas():
    try:
        import pandas
    except ImportError:  # pandas is optional (the `book` extra)
        return None
    return pandas


def as_table(rows: list[dict], as_frame: bool | None):
    """A pandas DataFrame (if wanted and installed) or the list of row dicts."""
    pd = _pandas()
    if as_frame and pd is None:
        raise ImportError("as_frame=True needs pandas: pip install pandas (or the book extra)")
    if (as_frame is None and pd is not None) or as_frame:
        return pd.DataFrame(rows, columns=list(_COLUMNS))
    return rows


def rows_of(table) -> list[dict]:
    """Row dicts of a DataFrame or of a list of dicts."""
    if hasattr(table, "to_dict") and hasattr(table, "columns"):
        return table.to_dict("records")
    if isinstance(table, list):
        return table
    raise TypeError(f"table must be a DataFrame or a list of row dicts, got {type(table).__name__}")
