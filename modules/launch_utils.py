"""A1111's `modules.launch_utils` (and, through launch.py, `launch`) for extensions' install.py:
is_installed, run_pip, run, python, args, git_tag, commit_hash.

install.py runs in a subprocess with the web UI root on PYTHONPATH
(modules/extension_host/installer.py), so `import launch` works. pip calls made here honour
PIP_CONSTRAINT, which the installer sets to pin the web UI's core packages. Importing this
module has no side effects (git and argument parsing run when the names are used).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import shlex
import subprocess
import sys
from typing import Any

python = sys.executable
git = os.environ.get("GIT", "git")
index_url = os.environ.get("INDEX_URL", "")
dir_repos = "repositories"
default_command_live = os.environ.get("WEBUI_LAUNCH_LIVE_OUTPUT") == "1"
skip_install = False

__all__ = [
    "commit_hash",
    "default_command_live",
    "dir_repos",
    "git",
    "git_tag",
    "index_url",
    "is_installed",
    "python",
    "repo_dir",
    "requirements_met",
    "run",
    "run_pip",
    "run_python",
    "skip_install",
]

script_path = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def __getattr__(name: str) -> Any:
    if name == "args":
        return _args()
    raise AttributeError(f"module 'modules.launch_utils' has no attribute {name!r}")


def _args() -> argparse.Namespace:
    """The running app's flags; outside the app (install.py) the flags of this process's argv."""
    from modules.extension_host.facade import current, is_bound

    if is_bound():
        return current().services.args
    from modules.core.cmd_args import ArgumentError, build_parser

    parser = build_parser()
    try:
        known, _ = parser.parse_known_args(sys.argv[1:])
    except ArgumentError:  # another program's argv (a test runner, a tool): the defaults
        known, _ = parser.parse_known_args([])
    return known


def _git(*command: str) -> str:
    try:
        result = subprocess.run(
            [git, "-C", script_path, *command], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "<none>"
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "<none>"


def commit_hash() -> str:
    """The web UI's checked-out commit, or "<none>" (A1111)."""
    return _git("rev-parse", "HEAD")


def git_tag() -> str:
    """`git describe --tags` of the web UI, else its short commit, else "<none>" (A1111)."""
    tag = _git("describe", "--tags")
    return tag if tag != "<none>" else _git("rev-parse", "--short", "HEAD")


def requirements_met(requirements_file: str) -> bool:
    """Whether every `name==version` / `name>=version` line of the file is installed (A1111)."""
    from packaging.requirements import InvalidRequirement, Requirement

    with open(requirements_file, encoding="utf8") as file:
        for line in file:
            text = line.split("#", 1)[0].strip()
            if not text or text.startswith("-"):
                continue
            try:
                req = Requirement(text)
                version = importlib.metadata.version(req.name)
            except (InvalidRequirement, importlib.metadata.PackageNotFoundError):
                return False
            if req.specifier and not req.specifier.contains(version, prereleases=True):
                return False
    return True


def is_installed(package: str) -> bool:
    """True if a distribution or importable module of that name exists."""
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        return importlib.util.find_spec(package) is not None
    except (ModuleNotFoundError, ValueError):
        return False


def repo_dir(name: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), dir_repos, name)


def run(
    command: str | list[str],
    desc: str | None = None,
    errdesc: str | None = None,
    custom_env: dict[str, str] | None = None,
    live: bool = default_command_live,
) -> str:
    """Run a command (a string goes through the shell, as in A1111); raise RuntimeError on failure."""
    if desc:
        print(desc, flush=True)
    shell = isinstance(command, str)
    env = os.environ if custom_env is None else custom_env
    if live:
        code = subprocess.run(command, shell=shell, env=env).returncode
        if code != 0:
            raise RuntimeError(f"{errdesc or 'Error running command'}.\nCommand: {command}\nError code: {code}")
        return ""
    result = subprocess.run(command, shell=shell, env=env, capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        message = [
            f"{errdesc or 'Error running command'}.",
            f"Command: {command}",
            f"Error code: {result.returncode}",
            f"stdout: {result.stdout or '<empty>'}",
            f"stderr: {result.stderr or '<empty>'}",
        ]
        raise RuntimeError("\n".join(message))
    return result.stdout or ""


def run_pip(command: str, desc: str | None = None, live: bool = default_command_live) -> str:
    """`python -m pip <command> --prefer-binary` (INDEX_URL honoured). `install` goes through the
    web UI's pip policy (modules/core/pip_policy.py): requirements that would change a core
    package or downgrade an installed one are left out and reported, the rest is installed."""
    if skip_install:
        return ""
    args = [*shlex.split(command), "--prefer-binary"]
    if index_url:
        args += ["--index-url", index_url]
    if args[0] != "install":
        return run([python, "-m", "pip", *args], desc=desc, errdesc=f"Couldn't run pip {args[0]}", live=live)
    from modules.core.pip_policy import install

    if desc:
        print(f"Installing {desc}", flush=True)
    result = install(args[1:], python=python)
    if live:
        sys.stdout.write(result.stdout + result.stderr)
    if result.returncode != 0:
        message = [
            f"Couldn't install {desc or command}.",
            f"Command: pip {command}",
            f"Error code: {result.returncode}",
            f"stdout: {result.stdout or '<empty>'}",
            f"stderr: {result.stderr or '<empty>'}",
        ]
        raise RuntimeError("\n".join(message))
    return result.stdout


def run_python(code: str, desc: str | None = None, errdesc: str | None = None) -> str:
    return run([python, "-c", code], desc, errdesc)
