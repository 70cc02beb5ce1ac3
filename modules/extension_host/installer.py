"""Runs an extension's install.py (and requirements.txt) in this venv, with a timeout.

A1111 runs every enabled install.py at every launch, which makes starts slow and lets
extensions replace core packages (shared/reference/users-pain.md §3). Here:
- install.py runs with this interpreter, cwd = the extension, PYTHONPATH = the web UI root (so
  `import launch` works), after install/update, and at launch only when install.py,
  requirements.txt or the checked-out commit changed since its last successful run;
- every pip call made inside it (launch.run_pip or its own subprocess) gets PIP_CONSTRAINT
  pinning the core packages to the installed versions, so an extension cannot swap torch,
  diffusers, gradio... under the app;
- an extension with requirements.txt and no install.py gets `pip install -r requirements.txt`;
- output is captured (last 64 KiB) and returned; a run past the timeout is killed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from modules.core.options import atomic_write_text
from modules.core.paths import REPO_ROOT

log = logging.getLogger("extensions")

# Packages an extension must never up- or downgrade under the running app.
PINNED_PACKAGES = (
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "safetensors",
    "accelerate",
    "peft",
    "gradio",
    "fastapi",
    "pydantic",
    "numpy",
    "pillow",
)
OUTPUT_LIMIT = 64 * 1024


@dataclass(frozen=True)
class InstallRun:
    extension: str
    ran: bool  # False: nothing to run (no install.py / requirements.txt)
    ok: bool
    returncode: int | None
    timed_out: bool
    seconds: float
    output: str

    @property
    def summary(self) -> str:
        if not self.ran:
            return f"{self.extension}: nothing to install"
        if self.timed_out:
            return f"{self.extension}: installer stopped after {self.seconds:.0f} s (timeout)"
        state = "ok" if self.ok else f"failed (exit code {self.returncode})"
        return f"{self.extension}: installer {state} in {self.seconds:.1f} s"


def write_constraints(path: Path, packages: Iterable[str] = PINNED_PACKAGES) -> Path:
    """A pip constraints file pinning the installed versions of `packages`."""
    lines = []
    for name in packages:
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class Installer:
    """How to run installers: interpreter, web UI root, constraints file, time limit."""

    python: str = sys.executable
    webui_root: Path = REPO_ROOT
    constraints: Path | None = None
    timeout: float = 600.0

    def command_for(self, folder: Path) -> list[str] | None:
        if (folder / "install.py").is_file():
            return [self.python, str(folder / "install.py")]
        if (folder / "requirements.txt").is_file():
            return [self.python, "-m", "pip", "install", "--prefer-binary", "-r", str(folder / "requirements.txt")]
        return None

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.webui_root), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        if self.constraints is not None:
            env["PIP_CONSTRAINT"] = str(self.constraints)
        return env

    def run(self, folder: Path) -> InstallRun:
        """Run the installer of the extension in `folder`; never raises for installer failures."""
        name = folder.name
        command = self.command_for(folder)
        if command is None:
            return InstallRun(name, False, True, None, False, 0.0, "")
        started = time.monotonic()
        proc = subprocess.Popen(
            command,
            cwd=folder,
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # so a timeout kills its children (pip) too
        )
        timed_out = False
        try:
            raw, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            raw, _ = proc.communicate()
        seconds = time.monotonic() - started
        output = raw.decode("utf-8", errors="replace")[-OUTPUT_LIMIT:]
        ok = not timed_out and proc.returncode == 0
        result = InstallRun(name, True, ok, proc.returncode, timed_out, seconds, output)
        (log.info if ok else log.error)("%s", result.summary)
        return result


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def fingerprint(folder: Path, commit: str = "") -> str:
    """Changes when install.py, requirements.txt or the checked-out commit change."""
    digest = hashlib.sha256(commit.encode())
    for name in ("install.py", "requirements.txt"):
        path = folder / name
        digest.update(name.encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


class InstallStamps:
    """Remembers the fingerprint of each extension's last successful install run."""

    def __init__(self, path: Path):
        self.path = path

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def is_current(self, name: str, stamp: str) -> bool:
        return self._load().get(name) == stamp

    def record(self, name: str, stamp: str) -> None:
        data = self._load()
        data[name] = stamp
        atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True))
