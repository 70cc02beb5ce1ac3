"""Install, update, check and remove extensions with git (GitPython), safely.

Safety rules (issue 7, A1111's gate plus more):
- with --listen/--share/--server-name/--ngrok every change is refused unless
  --enable-insecure-extension-access is given (`ExtensionAccess`);
- URLs must be https://, ssh://, git:// or scp-like `user@host:path`; anything starting with
  "-" (git option injection such as "--upload-pack=...") or holding spaces/control characters
  is refused before git runs; git itself may only use those transports (GIT_ALLOW_PROTOCOL),
  never prompts (GIT_TERMINAL_PROMPT=0, ssh BatchMode);
- folder names are reduced to [A-Za-z0-9._-], and names that would leave extensions/
  ("..", "/", "\\") are refused;
- user:password@ parts of URLs never reach logs or messages (`redact_url`).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modules.core.cmd_args import is_non_local

log = logging.getLogger("extensions")

ALLOWED_SCHEMES = ("https", "ssh", "git")
_SCP_LIKE = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^\s]+)$")
_FOLDER_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


class ExtensionError(Exception):
    """Base for errors shown to the user; the message says what to do."""


class ExtensionAccessDenied(ExtensionError, PermissionError):
    pass


class InvalidExtensionUrl(ExtensionError, ValueError):
    pass


class InvalidFolderName(ExtensionError, ValueError):
    pass


class ExtensionExists(ExtensionError, FileExistsError):
    pass


class ExtensionNotFound(ExtensionError, LookupError):
    pass


class GitOperationFailed(ExtensionError, RuntimeError):
    pass


@dataclass(frozen=True)
class ExtensionAccess:
    """Whether this server may change installed extensions (A1111's disable_extension_access)."""

    allowed: bool
    reason: str = ""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ExtensionAccess:
        if is_non_local(args) and not getattr(args, "enable_insecure_extension_access", False):
            return cls(
                False,
                "Installing, updating and removing extensions is disabled because the server is reachable "
                "from other machines (--listen, --share, --server-name or --ngrok). Restart with "
                "--enable-insecure-extension-access to allow it, only if you trust everyone who can reach it.",
            )
        return cls(True)

    def require(self) -> None:
        if not self.allowed:
            raise ExtensionAccessDenied(self.reason)


def redact_url(text: str) -> str:
    """Hide credentials in URLs (https://user:token@host -> https://***@host), anywhere in `text`."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)


def validate_url(url: str) -> str:
    """Return the stripped URL or raise InvalidExtensionUrl (never lets a git option through)."""
    url = (url or "").strip()
    if not url:
        raise InvalidExtensionUrl("Enter the git URL of the extension.")
    shown = redact_url(url)
    if url.startswith("-"):
        raise InvalidExtensionUrl(f"Refused URL {shown!r}: it starts with '-' (looks like a git option).")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise InvalidExtensionUrl(f"Refused URL {shown!r}: it contains spaces or control characters.")
    scp = _SCP_LIKE.match(url)
    if scp and "://" not in url:
        if scp.group("host").startswith("-") or scp.group("path").startswith("-"):
            raise InvalidExtensionUrl(f"Refused URL {shown!r}: host or path starts with '-'.")
        return url
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise InvalidExtensionUrl(f"Refused URL {shown!r}: use an https://, ssh://, git:// or user@host:path URL.")
    host = parts.hostname or ""
    if not host or host.startswith("-"):
        raise InvalidExtensionUrl(f"Refused URL {shown!r}: no valid host name.")
    if not parts.path.strip("/"):
        raise InvalidExtensionUrl(f"Refused URL {shown!r}: no repository path.")
    return url


def folder_name_from_url(url: str) -> str:
    """'https://github.com/a/sd-webui-foo.git' -> 'sd-webui-foo'."""
    scp = _SCP_LIKE.match(url)
    path = scp.group("path") if scp and "://" not in url else urlsplit(url).path
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if last.endswith(".git"):
        last = last[: -len(".git")]
    return sanitize_folder_name(last)


def sanitize_folder_name(name: str) -> str:
    """A safe folder name under extensions/, or InvalidFolderName for names that try to leave it."""
    raw = (name or "").strip()
    if not raw:
        raise InvalidFolderName("The folder name is empty.")
    if "/" in raw or "\\" in raw or ".." in raw or "\x00" in raw:
        raise InvalidFolderName(f"Refused folder name {raw!r}: it must be a plain name, not a path.")
    clean = _FOLDER_CHARS.sub("_", raw).strip("._-")
    if not clean:
        raise InvalidFolderName(f"Refused folder name {raw!r}: nothing usable is left after cleaning.")
    return clean


def git_environment() -> dict[str, str]:
    """Environment for every git call: no prompts, only the allowed transports."""
    return {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": ":".join(ALLOWED_SCHEMES),
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
    }


@dataclass(frozen=True)
class GitInfo:
    remote: str | None = None  # redacted
    branch: str | None = None
    commit_hash: str = ""
    commit_date: int | None = None  # unix time
    version: str = ""  # commit_hash[:8]

    @classmethod
    def read(cls, folder: Path) -> GitInfo:
        """What git says about an extension folder; empty for folders that are not clones."""
        import git

        if not (folder / ".git").exists():
            return cls()
        try:
            repo = git.Repo(folder)
            remote = next(iter(repo.remote().urls), None) if repo.remotes else None
            commit = repo.head.commit
            branch = None if repo.head.is_detached else repo.active_branch.name
            return cls(
                remote=redact_url(remote) if remote else None,
                branch=branch,
                commit_hash=commit.hexsha,
                commit_date=int(commit.committed_date),
                version=commit.hexsha[:8],
            )
        except (git.GitError, ValueError, OSError) as exc:
            log.warning("cannot read git info of %s: %s", folder, redact_url(str(exc)))
            return cls()


@dataclass
class InstallOutcome:
    name: str
    path: Path
    info: GitInfo
    output: str = ""  # install.py output (redacted)
    installer_ok: bool = True
    messages: list[str] = field(default_factory=list)


InstallerHook = Callable[[Path], tuple[bool, str]]  # folder -> (ok, output)


class GitExtensions:
    """git operations on the user extensions folder, behind the access gate."""

    def __init__(self, extensions_dir: Path, access: ExtensionAccess, *, installer: InstallerHook | None = None):
        self.extensions_dir = extensions_dir
        self.access = access
        self.installer = installer

    # --- helpers ---------------------------------------------------------------------------
    def folder(self, name: str) -> Path:
        """The folder of installed extension `name`; refuses names that leave extensions/."""
        safe = sanitize_folder_name(name)
        if safe != name:
            raise ExtensionNotFound(f"No installed extension named {name!r}.")
        path = self.extensions_dir / safe
        if not path.is_dir():
            raise ExtensionNotFound(f"No installed extension named {name!r}.")
        return path

    def _git(self, action: str, fn: Callable[[], Any]) -> Any:
        import git

        try:
            return fn()
        except git.GitError as exc:
            raise GitOperationFailed(f"git {action} failed: {redact_url(str(exc)).strip()}") from None

    # --- operations ------------------------------------------------------------------------
    def install(self, url: str, *, branch: str | None = None, folder: str | None = None) -> InstallOutcome:
        """Clone `url` into extensions/<folder>, then run its installer (install.py)."""
        self.access.require()
        url = validate_url(url)
        name = sanitize_folder_name(folder) if folder and folder.strip() else folder_name_from_url(url)
        if branch is not None:
            branch = branch.strip() or None
            if branch is not None and (branch.startswith("-") or any(c.isspace() for c in branch)):
                raise InvalidExtensionUrl(f"Refused branch name {branch!r}.")
        target = self.extensions_dir / name
        if target.exists():
            raise ExtensionExists(
                f"An extension folder named {name!r} already exists; remove it first or pick another name."
            )
        self.extensions_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.extensions_dir / ".tmp" / f"{name}-{uuid.uuid4().hex[:8]}"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        log.info("installing extension %s from %s", name, redact_url(url))
        try:
            self._clone(url, tmp, branch)
            if target.exists():  # someone else installed it meanwhile
                raise ExtensionExists(f"An extension folder named {name!r} already exists.")
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                remove_tree(tmp)
        outcome = InstallOutcome(name, target, GitInfo.read(target))
        if self.installer is not None:
            ok, output = self.installer(target)
            outcome.installer_ok, outcome.output = ok, redact_url(output)
        return outcome

    def _clone(self, url: str, tmp: Path, branch: str | None) -> None:
        import git

        options = ["--filter=blob:none"] + ([f"--branch={branch}"] if branch else [])
        repo = self._git(
            "clone", lambda: git.Repo.clone_from(url, str(tmp), multi_options=options, env=git_environment())
        )
        with repo.git.custom_environment(**git_environment()):
            self._git("submodule update", lambda: repo.git.submodule("update", "--init", "--recursive"))

    def check_update(self, name: str) -> str:
        """A1111's statuses: "new commits", "latest", or "unknown (remote error)"."""
        import git

        path = self.folder(name)
        try:
            repo = git.Repo(path)
            if repo.head.is_detached:
                return "unknown (detached HEAD)"
            branch = repo.active_branch.name
            with repo.git.custom_environment(**git_environment()):
                repo.remote().fetch()
            upstream = repo.rev_parse(f"{repo.remote().name}/{branch}")
            return "new commits" if upstream.hexsha != repo.head.commit.hexsha else "latest"
        except (git.GitError, ValueError, OSError) as exc:
            log.warning("update check of %s failed: %s", name, redact_url(str(exc)))
            return "unknown (remote error)"

    def update(self, name: str) -> GitInfo:
        """fetch + reset --hard to the remote branch (A1111), then run the installer again."""
        import git

        self.access.require()
        path = self.folder(name)
        repo = self._git("open", lambda: git.Repo(path))
        if repo.head.is_detached:
            raise GitOperationFailed(f"{name}: HEAD is detached (not on a branch); cannot update.")
        target = f"{repo.remote().name}/{repo.active_branch.name}"
        with repo.git.custom_environment(**git_environment()):
            self._git("fetch", lambda: repo.git.fetch("--all"))
            self._git("reset", lambda: repo.git.reset("--hard", target))
            self._git("submodule update", lambda: repo.git.submodule("update", "--init", "--recursive"))
        if self.installer is not None:
            self.installer(path)
        return GitInfo.read(path)

    def remove(self, name: str) -> None:
        self.access.require()
        path = self.folder(name)
        if path.resolve().parent != self.extensions_dir.resolve():
            raise InvalidFolderName(f"Refused to remove {name!r}: not directly inside {self.extensions_dir}.")
        log.info("removing extension %s", name)
        remove_tree(path)


def remove_tree(path: Path) -> None:
    """rmtree that also deletes read-only files (git object files are read-only on some systems)."""

    def make_writable(func: Callable[..., Any], target: str, _exc: Any) -> None:
        os.chmod(target, stat.S_IWRITE | stat.S_IREAD)
        func(target)

    for _ in range(3):
        try:
            shutil.rmtree(path, onerror=make_writable)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    shutil.rmtree(path, onerror=make_writable)
