"""A1111's `modules.extensions` for extensions: the installed extensions and where they live.

`extensions` / `active()` are A1111 `Extension` views over the app's discovered extensions
(name, path, enabled, is_builtin, git remote/branch/commit/version, list_files()).
"""

from __future__ import annotations

import os
from typing import Any

from modules.extension_host.discovery import Extension as _Found
from modules.extension_host.facade import current
from modules.extension_host.gitops import GitInfo
from modules.extension_host.preload import BUILTIN_DIR

__all__ = ["Extension", "active", "extensions_builtin_dir"]

extensions_builtin_dir = str(BUILTIN_DIR)


class Extension:
    """One installed extension with A1111's attribute names (git info read when first asked)."""

    def __init__(self, found: _Found):
        self._found = found
        self.name = found.name
        self.canonical_name = found.canonical_name
        self.path = str(found.path)
        self.enabled = found.enabled
        self.is_builtin = found.is_builtin
        self.metadata = found.metadata
        self._git: GitInfo | None = None

    def _info(self) -> GitInfo:
        if self._git is None:
            self._git = GitInfo.read(self._found.path)
        return self._git

    @property
    def remote(self) -> str | None:
        return self._info().remote

    @property
    def branch(self) -> str | None:
        return self._info().branch

    @property
    def commit_hash(self) -> str:
        return self._info().commit_hash

    @property
    def commit_date(self) -> int | None:
        return self._info().commit_date

    @property
    def version(self) -> str:
        return self._info().version

    @property
    def status(self) -> str:
        return ""

    def read_info_from_repo(self) -> None:
        self._git = GitInfo.read(self._found.path)

    def list_files(self, subdir: str, extension: str) -> list[Any]:
        """A1111's ScriptFile(basedir, filename, path) for `subdir/*extension`."""
        from modules.scripts import ScriptFile

        folder = os.path.join(self.path, subdir)
        if not os.path.isdir(folder):
            return []
        names = sorted(n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() == extension.lower())
        return [ScriptFile(self.path, n, os.path.join(folder, n)) for n in names]

    def __repr__(self) -> str:
        return f"<Extension {self.name} enabled={self.enabled}>"


def active() -> list[Extension]:
    """The extensions that are loaded (enabled, and not switched off by --disable-*-extensions)."""
    return [Extension(e) for e in current().active()]


def __getattr__(name: str) -> Any:
    if name == "extensions":
        return [Extension(e) for e in current().extensions]
    if name == "extensions_dir":
        return str(current().services.paths.extensions_dir)
    raise AttributeError(f"module 'modules.extensions' has no attribute {name!r}")
