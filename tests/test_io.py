"""Atomic writes (interpretable/_io.py): all or nothing, no temp files left behind."""

from __future__ import annotations

import pytest

from interpretable._io import TEMP_SUFFIX, atomic_open, atomic_write_text


def test_writes_text_and_bytes_and_creates_folders(tmp_path):
    p = tmp_path / "a" / "b" / "out.json"
    atomic_write_text(p, '{"x": 1}\n')
    assert p.read_text() == '{"x": 1}\n'
    with atomic_open(tmp_path / "blob.bin", "wb") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01"
    assert not list(tmp_path.rglob(f"*{TEMP_SUFFIX}"))


def test_an_error_mid_write_keeps_the_old_file_and_no_temp(tmp_path):
    p = tmp_path / "log.json"
    p.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_open(p) as f:
        f.write("half a new fi")
        raise RuntimeError("boom")
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["log.json"]


def test_replaces_an_existing_file(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("old")
    atomic_write_text(p, "new")
    assert p.read_text() == "new"


def test_rejects_read_and_append_modes(tmp_path):
    for mode in ("r", "a", "w+"):
        with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "x", mode):
            pass
