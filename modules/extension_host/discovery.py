"""Which extensions exist, which are enabled, and their metadata (A1111's extensions.list_extensions).

An extension is a folder under `extensions/` (user) or `extensions-builtin/` (shipped). Its id
is the lower-cased folder name. Folders starting with "." are ignored (clones in progress).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from modules.extension_host.metadata import ExtensionMetadata
from modules.extension_host.problems import ProblemLog


class DisableMode(StrEnum):
    """A1111's `disable_all_extensions` setting."""

    NONE = "none"
    EXTRA = "extra"  # only built-in extensions run
    ALL = "all"


@dataclass
class Extension:
    name: str  # folder name (what `disabled_extensions` lists)
    path: Path
    enabled: bool
    is_builtin: bool
    metadata: ExtensionMetadata

    @property
    def canonical_name(self) -> str:
        return self.metadata.canonical_name

    def files(self, subdir: str, suffixes: Collection[str]) -> list[Path]:
        """Files directly in `subdir` with one of `suffixes` (lower-case, with dot), sorted by name."""
        folder = self.path / subdir
        if not folder.is_dir():
            return []
        return [p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in suffixes]

    def file(self, name: str) -> Path | None:
        path = self.path / name
        return path if path.is_file() else None


# Extensions whose feature this web UI has built in: loading both would apply it twice.
BUILT_IN_FEATURES = {
    "sd-webui-controlnet": "ControlNet is built into this web UI (ControlNet accordion, /controlnet API); "
    "the sd-webui-controlnet extension is not loaded. Remove or disable it to silence this note.",
}


def discover(folders: Sequence[tuple[Path, bool]], disabled: Collection[str], problems: ProblemLog) -> list[Extension]:
    """Scan (folder, is_builtin) pairs in order; built-ins first so a user copy cannot shadow one."""
    found: list[Extension] = []
    seen: dict[str, Extension] = {}
    for root, is_builtin in folders:
        if not root.is_dir():
            continue
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            path = Path(entry.path)
            metadata = ExtensionMetadata.read(path, entry.name)
            if metadata.read_error:
                problems.note(entry.name, "metadata.ini", metadata.read_error)
            built_in = BUILT_IN_FEATURES.get(entry.name.lower()) or BUILT_IN_FEATURES.get(metadata.canonical_name)
            if built_in is not None:
                problems.note(entry.name, "discovery", built_in)
                continue
            other = seen.get(metadata.canonical_name)
            if other is not None:
                problems.note(entry.name, "discovery", f"same name as {other.path}; this copy is ignored")
                continue
            ext = Extension(entry.name, path, entry.name not in disabled, is_builtin, metadata)
            found.append(ext)
            seen[metadata.canonical_name] = ext
    return found


def active(extensions: Iterable[Extension], mode: DisableMode) -> list[Extension]:
    """The extensions that load: enabled ones, limited by the disable-all setting/flags."""
    if mode == DisableMode.ALL:
        return []
    if mode == DisableMode.EXTRA:
        return [e for e in extensions if e.enabled and e.is_builtin]
    return [e for e in extensions if e.enabled]


def check_requirements(extensions: Sequence[Extension], problems: ProblemLog) -> None:
    """Report enabled extensions whose metadata `Requires=` names a missing or disabled one."""
    by_name = {e.canonical_name: e for e in extensions}
    for ext in extensions:
        if not ext.enabled:
            continue
        for req in ext.metadata.requirements("Requires", "Extension", loaded=by_name):
            other = by_name.get(req)
            if other is None:
                problems.note(ext.name, "requirements", f"requires extension {req!r}, which is not installed")
            elif not other.enabled:
                problems.note(ext.name, "requirements", f"requires extension {other.name!r}, which is disabled")


def find_extension(extensions: Iterable[Extension], filename: str | Path) -> Extension | None:
    """The extension whose folder contains `filename`."""
    target = os.path.realpath(filename)
    for ext in extensions:
        root = os.path.realpath(ext.path)
        if target == root or target.startswith(root + os.sep):
            return ext
    return None
