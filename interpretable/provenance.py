"""Where a result comes from: the code's git commit, the time, the command line. Every file
of results (per-image metrics, ROAR cells, rank caches) records these beside its numbers."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["git_info", "now_utc", "command_line", "PACKAGE_DIR"]

#: the installed package's folder (inside the repository for an editable install)
PACKAGE_DIR = Path(__file__).resolve().parent


def git_info(folder: str | os.PathLike = PACKAGE_DIR, paths: Sequence[str] = ()
             ) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout holding ``folder`` (tracked files only;
    ``paths``: only changes below these paths of the checkout count), or None outside git."""
    def run(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()

    try:
        commit = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no", "--", *paths))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def now_utc() -> str:
    """The current time, ISO 8601 in UTC to the second."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def command_line(command: Sequence[str] | str | None = None) -> str:
    """``command`` as one shell-quoted string (default: this process's ``sys.argv``)."""
    if command is None:
        command = [Path(sys.executable).name, *sys.argv]
    return command if isinstance(command, str) else shlex.join(list(command))
