"""A JupyterLab server for tools/check_lab.py: started on a free loopback port with a random
token and temporary settings, stopped with every process it started (found through /proc)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Lab", "LAB_SETTINGS", "free_port", "notebook_hashes", "start_lab", "stop_lab"]

# User settings JupyterLab starts with (files in a temporary user-settings folder).
LAB_SETTINGS = {
    # nothing is saved behind the checker's back (the notebooks are copies anyway)
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    # every cell attached to the page, so every output and image can be checked
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    # no news or update requests to the Internet, no toast asking about them
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                    "checkForUpdates": False},
}

@dataclass
class Lab:
    """A running JupyterLab: its base URL, token and the folder it serves."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen
    log: Path

    def api(self, path: str, method: str = "GET", timeout: float = 10.0):
        """Call the server's REST API; the decoded JSON answer (None when empty)."""
        req = urllib.request.Request(self.url + path.lstrip("/"), method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def page_url(self, notebook: str) -> str:
        """The URL that opens `notebook` (relative to the root) in a fresh workspace."""
        return f"{self.url}lab/tree/{notebook}?reset&token={self.token}"

    def log_tail(self, lines: int = 25) -> str:
        """The end of the server's log, for an error message."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    """A loopback port that was free a moment ago (the server is told not to try others)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def notebook_hashes(root: Path) -> dict[str, str]:
    """sha256 of every notebook under `root`, by relative path."""
    out = {}
    for p in sorted(root.rglob("*.ipynb")):
        rel = p.relative_to(root)
        if ".ipynb_checkpoints" not in rel.parts and "_build" not in rel.parts:
            out[rel.as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc (empty where there is no /proc)."""
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # the command name may hold spaces and parentheses: the ppid follows the last ')'
            fields = stat.read_text().rsplit(")", 1)[1].split()
            tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return tree


def _descendants(pid: int) -> dict[int, bytes]:
    """Every process under `pid`, with its command line (to recognise it again later)."""
    tree, out, todo = _children(), {}, [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            try:
                out[child] = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            todo.append(child)
    return out


def _kill(pids: dict[int, bytes], sig: int) -> None:
    """Send `sig` to each process still running the command it ran when it was recorded."""
    for pid, cmdline in pids.items():
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                os.kill(pid, sig)
        except (OSError, ProcessLookupError):
            pass


def stop_lab(lab: Lab) -> None:
    """Stop the server and everything it started: its kernels run in sessions of their own,
    so they are found through /proc before the server goes, and ended after it if still up."""
    started = _descendants(lab.process.pid)
    try:
        lab.api("api/shutdown", method="POST", timeout=5)  # shuts its kernels down too
    except (OSError, urllib.error.URLError, ValueError):
        pass
    try:
        lab.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(lab.process.pid, sig)  # the server's own process group
            except ProcessLookupError:
                break
            try:
                lab.process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    _kill(started, signal.SIGTERM)
    time.sleep(0.5)
    _kill(started, signal.SIGKILL)


@contextmanager
def start_lab(
    root: Path,
    scale: str | None = "quick",
    disable_extensions: Iterable[str] = (),
    timeout: float = 120.0,
) -> Iterator[Lab]:
    """Run JupyterLab on `root` (loopback, free port, random token) until the block ends.

    Settings, workspaces, the Jupyter config/data/runtime folders and the IPython profile live
    in a temporary folder, so the server reads no user configuration and writes nothing outside
    it; the only kernels it sees are the ones installed in this Python's environment (the
    project's). `scale` is the kernel's SCALE (None: left unset). `disable_extensions` names
    JupyterLab extensions to turn off (the checker's test turns jupyterlab-myst off).
    """
    with tempfile.TemporaryDirectory(prefix="check-lab-") as tmp:
        home = Path(tmp)
        settings = home / "user-settings"
        for plugin, values in LAB_SETTINGS.items():
            f = settings / f"{plugin}.jupyterlab-settings"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(values))
        config = home / "config"
        (config / "labconfig").mkdir(parents=True)
        (config / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {name: True for name in disable_extensions}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
        env.update(JUPYTER_CONFIG_DIR=str(config), JUPYTER_DATA_DIR=str(home / "data"),
                   JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
                   JUPYTER_PREFER_ENV_PATH="1", JUPYTER_PLATFORM_DIRS="0")
        env.pop("SCALE", None)
        if scale:
            env["SCALE"] = scale
        port, token = free_port(), secrets.token_hex(24)
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={home / 'ws'}",
            "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            # window.jupyterapp: the checker reads outputs and kernel state from the model
            "--LabApp.expose_app_in_browser=True",
            "--MappingKernelManager.default_kernel_name=python3",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # containers and CI run as root
        log = home / "lab.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    cwd=root, start_new_session=True)
        lab = Lab(f"http://127.0.0.1:{port}/", token, root, proc, log)
        try:
            end = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"JupyterLab exited ({proc.returncode}):\n"
                                       + lab.log_tail())
                try:
                    lab.api("api/status", timeout=2)
                    break
                except (OSError, urllib.error.URLError, ValueError):
                    if time.monotonic() > end:
                        raise RuntimeError(f"JupyterLab did not answer in {timeout:.0f} s:\n"
                                           + lab.log_tail()) from None
                    time.sleep(0.5)
            yield lab
        finally:
            stop_lab(lab)


