"""Packaging: environment.yml lists what pyproject.toml lists; importing stays cheap."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return {r.replace(" ", "") for r in reqs}


def _environment_requirements() -> set[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\s*- pip:\s*$", line))
    reqs = set()
    for line in lines[start + 1 :]:
        m = re.match(r"\s+- (.+?)\s*(#.*)?$", line)
        if not m:
            break
        reqs.add(m.group(1).replace(" ", ""))
    return reqs


def _student_requirements() -> set[str]:
    """What environment.yml (Binder) installs: the dependencies and the `lab` extra only."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["lab"]
    return {r.replace(" ", "") for r in reqs}


def test_environment_matches_pyproject():
    py, env = _student_requirements(), _environment_requirements()
    assert py == env, (
        f"only in pyproject: {sorted(py - env)}; only in environment.yml: {sorted(env - py)}"
    )


def test_pinned_ranges_admit_the_local_releases():
    from packaging.specifiers import SpecifierSet

    reqs = {re.split(r"[<>=!~]", r)[0]: r for r in _pyproject_requirements()}
    assert "2.14.1" in SpecifierSet(reqs["torch"][len("torch") :])
    assert "0.29.1" in SpecifierSet(reqs["torchvision"][len("torchvision") :])
    book = SpecifierSet(reqs["jupyter-book"][len("jupyter-book") :])
    assert "1.0.4" in book and "2.0.0" not in book


def _import_seconds(code: str) -> float:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import time; import torch, torchvision; t = time.perf_counter(); "
            f"{code}; print(time.perf_counter() - t)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return float(out.stdout.strip().splitlines()[-1])


def test_import_adds_under_one_second():
    # median of three: the machine is shared and noisy
    runs = sorted(
        _import_seconds("import interpretable as itp; itp.data; itp.models") for _ in range(3)
    )
    assert runs[1] < 1.0, runs
