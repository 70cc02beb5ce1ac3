"""A1111's `launch` module for extensions' install.py: is_installed, run_pip, run, python.

install.py runs in a subprocess with this folder on PYTHONPATH (modules/extension_host/installer.py),
so `import launch` finds this file. pip calls made here honour PIP_CONSTRAINT, which the
installer sets to pin the web UI's core packages. Importing this module has no side effects;
`python launch.py [flags]` starts the web UI like webui.py (A1111 habit).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shlex
import subprocess
import sys

python = sys.executable
git = os.environ.get("GIT", "git")
index_url = os.environ.get("INDEX_URL", "")
dir_repos = "repositories"
default_command_live = os.environ.get("WEBUI_LAUNCH_LIVE_OUTPUT") == "1"
skip_install = False

__all__ = ["is_installed", "python", "repo_dir", "run", "run_pip", "run_python"]


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
    """`python -m pip <command> --prefer-binary` (respects PIP_CONSTRAINT / INDEX_URL)."""
    if skip_install:
        return ""
    extra = f" --index-url {shlex.quote(index_url)}" if index_url else ""
    return run(
        f"{shlex.quote(python)} -m pip {command} --prefer-binary{extra}",
        desc=f"Installing {desc}" if desc else None,
        errdesc=f"Couldn't install {desc}" if desc else "Couldn't run pip",
        live=live,
    )


def run_python(code: str, desc: str | None = None, errdesc: str | None = None) -> str:
    return run([python, "-c", code], desc, errdesc)


if __name__ == "__main__":
    import webui

    sys.exit(webui.main(sys.argv[1:]))
