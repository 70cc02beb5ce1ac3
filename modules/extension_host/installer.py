"""Runs an extension's install.py (and requirements.txt) in this venv, with a timeout.

A1111 runs every enabled install.py at every launch, which makes starts slow and lets
extensions replace core packages (shared/reference/users-pain.md §3). Here:
- install.py runs with this interpreter, cwd = the extension, PYTHONPATH = the web UI root (so
  `import launch` works), after install/update, and at launch only when install.py,
  requirements.txt or the checked-out commit changed since its last successful run;
- pip installs follow modules/core/pip_policy.py: core packages (torch, transformers, pydantic,
  gradio...) keep their version and installed packages are never downgraded. launch.run_pip and
  requirements.txt leave out the requirements that would break that (reported per extension in
  the Extensions tab, with the reason) and install the rest; any other pip call made inside
  install.py gets PIP_CONSTRAINT with the same rules, so it fails rather than break the app;
- an extension with requirements.txt and no install.py gets its requirements installed that way;
- output is captured (last 64 KiB) and returned; a run past the timeout is killed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from modules.core.options import atomic_write_text
from modules.core.paths import REPO_ROOT
from modules.core.pip_policy import (
    CORE_PACKAGES,
    Skipped,
    canonical,
    constraints,
    installed_versions,
    read_report,
    rescue_plan,
)

log = logging.getLogger("extensions")

PINNED_PACKAGES = CORE_PACKAGES
OUTPUT_LIMIT = 64 * 1024
PIP_CONFLICT_MARKS = ("ResolutionImpossible", "conflicting dependencies", "Cannot install")


@dataclass(frozen=True)
class InstallRun:
    extension: str
    ran: bool  # False: nothing to run (no install.py / requirements.txt)
    ok: bool
    returncode: int | None
    timed_out: bool
    seconds: float
    output: str
    skipped: tuple[Skipped, ...] = ()  # requirements left out by the pip policy, with the reason

    @property
    def summary(self) -> str:
        if not self.ran:
            return f"{self.extension}: nothing to install"
        if self.timed_out:
            return f"{self.extension}: installer stopped after {self.seconds:.0f} s (timeout)"
        state = "ok" if self.ok else f"failed (exit code {self.returncode})"
        text = f"{self.extension}: installer {state} in {self.seconds:.1f} s"
        if not self.ok and any(mark in self.output for mark in PIP_CONFLICT_MARKS):
            text += (
                " - pip refused a requirement that conflicts with the web UI's packages (core packages keep "
                "their version, installed packages are not downgraded); see the installer output"
            )
        return text


def write_constraints(path: Path, packages: Iterable[str] = PINNED_PACKAGES) -> Path:
    """A pip constraints file: `packages` stay at their installed version, every other installed
    package may not go below its version (see modules/core/pip_policy.py)."""
    core = {canonical(n) for n in packages}
    atomic_write_text(path, "\n".join(constraints(installed_versions(), core)) + "\n")
    return path


@dataclass(frozen=True)
class Installer:
    """How to run installers: interpreter, web UI root, constraints file, time limit."""

    python: str = sys.executable
    webui_root: Path = REPO_ROOT
    constraints: Path | None = None
    timeout: float = 600.0
    core: tuple[str, ...] = PINNED_PACKAGES

    def command_for(self, folder: Path) -> list[str] | None:
        if (folder / "install.py").is_file():
            return [self.python, str(folder / "install.py")]
        if (folder / "requirements.txt").is_file():
            requirements = str(folder / "requirements.txt")
            return [self.python, "-m", "modules.core.pip_policy", "install", "--prefer-binary", "-r", requirements]
        return None

    def environment(self, report: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["PIP_POLICY_CORE"] = ",".join(self.core)
        if report is not None:
            env["PIP_POLICY_REPORT"] = str(report)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.webui_root), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        if self.constraints is not None:
            env["PIP_CONSTRAINT"] = str(self.constraints)
        return env

    def run(self, folder: Path) -> InstallRun:
        """Run the installer of the extension in `folder`; never raises for installer failures.

        When pip refused a requirement because one of its optional extras conflicts with the web
        UI's packages, the requirement is installed without that extra (reported) and the
        installer runs once more - A1111 would have replaced the core package instead."""
        name = folder.name
        command = self.command_for(folder)
        if command is None:
            return InstallRun(name, False, True, None, False, 0.0, "")
        started = time.monotonic()
        report = Path(tempfile.mkdtemp(prefix="pip-policy-")) / "report.jsonl"
        code, timed_out, output = self._execute(command, folder, report)
        if code != 0 and not timed_out:
            plan, dropped = rescue_plan(output)
            if plan:
                rescue = [self.python, "-m", "modules.core.pip_policy", "install", *plan]
                code, timed_out, more = self._execute(rescue, folder, report)
                if code == 0:
                    _append_report(report, dropped)
                    code, timed_out, again = self._execute(command, folder, report)
                    more += again
                output = (output + "\n--- without the conflicting extras ---\n" + more)[-OUTPUT_LIMIT:]
        seconds = time.monotonic() - started
        ok = not timed_out and code == 0
        skipped = tuple(read_report(report))
        shutil.rmtree(report.parent, ignore_errors=True)
        result = InstallRun(name, True, ok, code, timed_out, seconds, output, skipped)
        (log.info if ok else log.error)("%s", result.summary)
        return result

    def _execute(self, command: list[str], folder: Path, report: Path) -> tuple[int | None, bool, str]:
        """(exit code, timed out, last OUTPUT_LIMIT characters of output) of one command."""
        proc = subprocess.Popen(
            command,
            cwd=folder,
            env=self.environment(report),
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
        return proc.returncode, timed_out, raw.decode("utf-8", errors="replace")[-OUTPUT_LIMIT:]


def _append_report(report: Path, skipped: Iterable[Skipped]) -> None:
    with report.open("a", encoding="utf-8") as handle:
        for item in skipped:
            handle.write(json.dumps(asdict(item)) + "\n")


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
    """Remembers, per extension, the fingerprint of its last successful install run and the
    requirements that run left out (shown again at every start until the installer changes)."""

    def __init__(self, path: Path):
        self.path = path

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): v if isinstance(v, dict) else {"stamp": str(v)} for k, v in data.items()}

    def is_current(self, name: str, stamp: str) -> bool:
        return self._load().get(name, {}).get("stamp") == stamp

    def skipped(self, name: str) -> list[Skipped]:
        items = self._load().get(name, {}).get("skipped")
        if not isinstance(items, list):
            return []
        return [Skipped(str(i.get("requirement")), str(i.get("reason"))) for i in items if isinstance(i, dict)]

    def record(self, name: str, stamp: str, skipped: Iterable[Skipped] = ()) -> None:
        data = self._load()
        data[name] = {"stamp": stamp, "skipped": [asdict(s) for s in skipped]}
        atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True))
