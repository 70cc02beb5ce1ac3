"""Files extensions give the page: javascript/*.js and *.mjs, style.css, localizations/*.json.

A1111 order: scripts after the core script.js and javascript/ (extensions in load order, files
sorted by name; .mjs as `type="module"`), extension style.css after the core CSS, the data dir's
user.css last. Files are served by `modules.extension_host.api` under ASSET_ROUTE, addressed by
extension name and relative path, so nothing outside an active extension can be fetched.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from modules.extension_host.discovery import Extension

log = logging.getLogger("extensions")

ASSET_ROUTE = "/extensions-assets"
SERVED_SUFFIXES = {".js", ".mjs", ".css", ".json", ".png", ".jpg", ".jpeg", ".webp", ".svg", ".gif", ".html"}


@dataclass(frozen=True)
class Asset:
    extension: str
    path: Path
    relative: str  # path inside the extension, with "/"
    mtime: int

    @property
    def url(self) -> str:
        return f"{ASSET_ROUTE}/{quote(self.extension)}/{quote(self.relative)}?{self.mtime}"

    @property
    def is_module(self) -> bool:
        return self.path.suffix.lower() == ".mjs"


def _asset(ext: Extension, path: Path) -> Asset:
    return Asset(ext.name, path, path.relative_to(ext.path).as_posix(), int(path.stat().st_mtime))


def collect_js(extensions: Sequence[Extension]) -> list[Asset]:
    return [_asset(e, p) for e in extensions for p in e.files("javascript", {".js", ".mjs"})]


def collect_css(extensions: Sequence[Extension]) -> list[Asset]:
    return [_asset(e, p) for e in extensions if (p := e.file("style.css")) is not None]


def collect_localizations(extensions: Sequence[Extension]) -> dict[str, list[Path]]:
    """Localization name (file stem, e.g. "de_DE") -> files from every extension providing it."""
    found: dict[str, list[Path]] = {}
    for ext in extensions:
        for path in ext.files("localizations", {".json"}):
            found.setdefault(path.stem, []).append(path)
    return found


def head_html(js: Sequence[Asset], css: Sequence[Asset]) -> str:
    """<script>/<link> tags in A1111's order, for the page head (the UI adds user.css after them)."""
    lines = []
    for asset in js:
        kind = ' type="module"' if asset.is_module else ""
        lines.append(f'<script{kind} src="{html.escape(asset.url)}"></script>')
    for asset in css:
        lines.append(f'<link rel="stylesheet" property="stylesheet" href="{html.escape(asset.url)}">')
    return "\n".join(lines)


def resolve_asset(extensions: Sequence[Extension], name: str, relative: str) -> Path | None:
    """The file `relative` inside active extension `name`, or None (unknown, outside, wrong type)."""
    ext = next((e for e in extensions if e.name == name), None)
    if ext is None or not relative or relative.startswith(("/", "\\")):
        return None
    root = ext.path.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file() or target.suffix.lower() not in SERVED_SUFFIXES:
        return None
    if any(part.startswith(".") for part in target.relative_to(root).parts):
        return None  # never .git/ or dotfiles
    return target
