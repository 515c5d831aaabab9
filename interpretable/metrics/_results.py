"""Result files of :func:`evaluate`: atomic CSV / gzipped CSV / JSON writes, resume, tables.

Formats (by suffix): ``.csv`` and ``.csv.gz`` (one header line, then one line per row; the
run's settings in ``<file>.meta.json`` beside it) and ``.json`` (``{"meta": ..., "rows":
[...]}``). Floats are written with ``repr``, which round-trips exactly, so a resumed run
rereads bit for bit what it wrote.

:class:`ResultWriter` keeps every row already written in its encoded form (CSV text, JSON
text, or for ``.csv.gz`` the deflate stream so far, sync-flushed), so writing the file after
a batch costs the encoding of that batch's rows plus one copy of the bytes to disk, not a
re-encoding (and re-compression) of everything: a 10,000-image run stays linear.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import struct
import zlib
from pathlib import Path

from .._io import atomic_open, atomic_write_text
from ..tables import pandas_or_none
from .definitions import COLUMNS as _COLUMNS
from .definitions import CONVENTIONS

__all__ = ["check_suffix", "kind", "save", "load", "read", "write_meta", "meta_path",
           "with_conventions", "complete_rows", "as_table", "ResultWriter"]

_INTS = ("index", "label", "predicted", "target")
SUFFIXES = (".csv", ".csv.gz", ".json")
#: Settings that result files hold since the insertion/deletion conventions became options;
#: files written before hold none of them and were computed with ours (and their ``step``).
#: The name (``"conventions"``) follows from these and the step, so resume does not compare it.
_OURS = CONVENTIONS["ours"]
_CONVENTION_KEYS = {"substrate": _OURS.substrate, "blur_kernel": _OURS.blur_kernel,
                    "blur_sigma": _OURS.blur_sigma}
_DERIVED = ("conventions",)


def kind(path: Path) -> str:
    """``"csv"``, ``"csv.gz"`` or ``"json"`` from the file name (ValueError otherwise)."""
    name = Path(path).name.lower()
    for suffix in (".csv.gz", ".csv", ".json"):
        if name.endswith(suffix):
            return suffix[1:]
    raise ValueError(f"out must end in .csv, .csv.gz or .json, got {str(path)!r}")


def check_suffix(path: Path) -> None:
    kind(path)


def meta_path(path: Path) -> Path:
    """Where a CSV result file keeps the run's settings: ``<file>.meta.json``."""
    return path.with_name(path.name + ".meta.json")


def write_meta(path: Path, meta: dict) -> None:
    """CSV keeps the run's settings beside it (JSON holds them inside, see :func:`save`)."""
    if kind(path) != "json":
        atomic_write_text(meta_path(path), json.dumps(meta, indent=1))


def _json_value(v):
    return None if isinstance(v, float) and math.isnan(v) else v


def _csv_text(rows: list[dict], header: bool) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    # repr() of a float round-trips exactly, so resuming loses nothing.
    writer.writerows({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()}
                     for r in rows)
    return buf.getvalue()


class _GzipStream:
    """A gzip file built incrementally: compress each piece once, finish a copy on demand."""

    # RFC 1952 header: magic, deflate, no flags, mtime 0 (reproducible bytes), OS unknown
    HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

    def __init__(self):
        self._z = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._body = bytearray()
        self._crc = 0
        self._size = 0

    def add(self, data: bytes) -> None:
        self._body += self._z.compress(data)
        self._body += self._z.flush(zlib.Z_SYNC_FLUSH)  # byte-aligned: the file can end here
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)

    def write_to(self, f) -> None:
        f.write(self.HEADER)
        f.write(self._body)
        f.write(self._z.copy().flush(zlib.Z_FINISH))
        f.write(struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF))


class ResultWriter:
    """Rows of one result file, encoded as they come; :meth:`write` replaces the file atomically.

    ``rows`` (optional) are the rows already there (a resumed run); :meth:`add` encodes new
    ones; :meth:`write` writes everything added so far (``fsync`` as :func:`atomic_open`).
    """

    def __init__(self, path: Path, meta: dict, rows: list[dict] | None = None):
        self.path = Path(path)
        self.kind = kind(self.path)
        self.meta = meta
        self.n_rows = 0
        self._pieces: list[str] = []
        self._gz = _GzipStream() if self.kind == "csv.gz" else None
        if self.kind != "json":
            self._put(_csv_text([], header=True))
        self.add(rows or [])

    def _put(self, text: str) -> None:
        if self._gz is not None:
            self._gz.add(text.encode())
        else:
            self._pieces.append(text)

    def add(self, rows: list[dict]) -> None:
        if not rows:
            return
        self.n_rows += len(rows)
        if self.kind == "json":
            self._pieces.extend(json.dumps({k: _json_value(v) for k, v in r.items()})
                                for r in rows)
        else:
            self._put(_csv_text(rows, header=False))

    def write(self, fsync: bool = True) -> None:
        if self._gz is not None:
            with atomic_open(self.path, "wb", fsync=fsync) as f:
                self._gz.write_to(f)
        elif self.kind == "csv":
            atomic_write_text(self.path, "".join(self._pieces), fsync=fsync)
        else:  # the same text as json.dumps({"meta": meta, "rows": rows})
            text = f'{{"meta": {json.dumps(self.meta)}, "rows": [{", ".join(self._pieces)}]}}'
            atomic_write_text(self.path, text, fsync=fsync)


def save(path: Path, rows: list[dict], meta: dict) -> None:
    """Write all rows (CSV with a header, gzipped CSV, or JSON ``{"meta": ..., "rows": [...]}``)."""
    ResultWriter(path, meta, rows).write()


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


def read(path: Path) -> tuple[list[dict], dict]:
    """``(rows, meta)`` of a result file; OSError/KeyError/TypeError/ValueError if broken."""
    path = Path(path)
    k = kind(path)
    if k == "json":
        data = json.loads(path.read_text())
        meta, raw = data["meta"], data["rows"]
    else:
        meta_file = meta_path(path)
        if not meta_file.exists():
            raise ValueError(f"{meta_file.name} with the run's settings is missing")
        meta = json.loads(meta_file.read_text())
        opener = gzip.open if k == "csv.gz" else open
        with opener(path, "rt", newline="") as f:
            raw = list(csv.DictReader(f))
    if not isinstance(meta, dict):
        raise ValueError("the run's settings are not a JSON object")
    return [_typed(r) for r in raw], meta


def with_conventions(meta: dict) -> dict:
    """``meta`` of a result file with the conventions of a file written before they were
    recorded filled in: ours (none without curves)."""
    curves = meta.get("curves", True)
    missing = {k: (v if curves else None) for k, v in _CONVENTION_KEYS.items() if k not in meta}
    return {**meta, **missing}


def load(path: Path, expected_meta: dict) -> list[dict]:
    """Rows of an earlier run of the same settings (for resume); ValueError otherwise."""
    hint = "delete the file or pass resume=False to start over"
    try:
        rows, meta = read(path)
    except (OSError, EOFError, KeyError, TypeError, ValueError, zlib.error) as exc:
        raise ValueError(f"out={str(path)!r}: cannot resume from it ({exc}); {hint}") from exc
    meta = with_conventions(meta)
    diff = sorted(k for k in expected_meta
                  if k not in _DERIVED and meta.get(k) != expected_meta[k])
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


def as_table(rows: list[dict], as_frame: bool | None):
    """A pandas DataFrame (if wanted and installed) or the list of row dicts."""
    pd = pandas_or_none()
    if as_frame and pd is None:
        raise ImportError("as_frame=True needs pandas: pip install pandas (or the book extra)")
    if (as_frame is None and pd is not None) or as_frame:
        return pd.DataFrame(rows, columns=list(_COLUMNS))
    return rows
