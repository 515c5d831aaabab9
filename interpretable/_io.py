"""Atomic file writes: a reader (or a run killed mid-write) never sees a half-written file.

Every file the package writes (checkpoints, logs, result tables, the converted dataset, the
benchmark JSON) goes through :func:`atomic_open`: the data go to a temp file in the target's
folder (same file system, so the final rename is atomic), are flushed to disk, and replace
the target with ``os.replace``. On any error the temp file is removed and the old target is
left as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_write_text", "sha256_file", "TEMP_SUFFIX"]

#: Suffix of the temp files; a folder can be swept of leftovers of killed writes with it.
TEMP_SUFFIX = ".tmp"


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, fsync: bool = True,
                **open_kwargs: Any) -> Iterator[IO]:
    """Open a temp file beside ``path``; on a clean exit it atomically becomes ``path``.

    ``mode`` is ``"w"`` or ``"wb"``; ``open_kwargs`` go to :func:`os.fdopen` (e.g.
    ``newline=""``). ``fsync`` forces the data to disk before the rename, so a crash right
    after cannot leave an empty file in place of the old one. Parent folders are created.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = True) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w", fsync=fsync, newline="") as f:
        f.write(text)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (provenance of checkpoints and result files)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
