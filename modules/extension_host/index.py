"""The "Available" list: A1111's extension index JSON, filtered by tag, installed ones hidden.

Format (AUTOMATIC1111/stable-diffusion-webui-extensions index.json):
    {"tags": {"script": "description", ...},
     "extensions": [{"name", "url", "description", "tags": [...], "added", "created_at", "stars"}]}
The index URL comes from the caller (UI field), else env WEBUI_EXTENSIONS_INDEX, else A1111's
default. http(s):// and file:// URLs and plain local paths work (file for offline use).
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_INDEX_URL = (
    "https://raw.githubusercontent.com/AUTOMATIC1111/stable-diffusion-webui-extensions/master/index.json"
)
MAX_INDEX_BYTES = 32 * 1024 * 1024


class ExtensionIndexError(ValueError):
    """The index could not be read or is not in A1111's format."""


class IndexEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    url: str
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    added: str | None = None
    created_at: str | None = None
    stars: int | None = None


class ExtensionIndex(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tags: dict[str, str] = Field(default_factory=dict)
    extensions: list[IndexEntry] = Field(default_factory=list)


def index_url(requested: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    return (requested or "").strip() or environ.get("WEBUI_EXTENSIONS_INDEX", "") or DEFAULT_INDEX_URL


def _read(url: str, timeout: float) -> bytes:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bytes(response.read(MAX_INDEX_BYTES + 1))
    if scheme == "file":
        return Path(unquote(parts.path)).read_bytes()
    if scheme == "" or len(scheme) == 1:  # plain path (a Windows drive letter parses as a scheme)
        return Path(url).expanduser().read_bytes()
    raise ExtensionIndexError(f"Unsupported index URL {url!r}: use http(s)://, file:// or a local path.")


def load_index(url: str, *, timeout: float = 20.0) -> ExtensionIndex:
    try:
        raw = _read(url, timeout)
    except OSError as exc:
        raise ExtensionIndexError(f"Cannot read the extension index from {url}: {exc}") from None
    if len(raw) > MAX_INDEX_BYTES:
        raise ExtensionIndexError(f"The extension index at {url} is larger than {MAX_INDEX_BYTES} bytes.")
    try:
        return ExtensionIndex.model_validate(json.loads(raw.decode("utf-8")))
    except (ValueError, ValidationError) as exc:
        raise ExtensionIndexError(f"The extension index at {url} is not in A1111's index format: {exc}") from None


def normalize_git_url(url: str | None) -> str:
    """Compare URLs loosely: no scheme/credentials, no trailing .git or /, lower-case."""
    if not url:
        return ""
    text = url.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
        text = text.split("@", 1)[1] if "@" in text.split("/", 1)[0] else text
    elif "@" in text and ":" in text:  # git@host:owner/repo
        text = text.split("@", 1)[1].replace(":", "/", 1)
    text = text.rstrip("/")
    return text[:-4] if text.endswith(".git") else text


def filter_index(
    index: ExtensionIndex,
    *,
    hide_tags: Iterable[str] = (),
    only_tags: Iterable[str] = (),
    installed_urls: Iterable[str] = (),
    hide_installed: bool = True,
    search: str = "",
) -> list[IndexEntry]:
    hidden, wanted = set(hide_tags), set(only_tags)
    installed = {normalize_git_url(u) for u in installed_urls}
    needle = search.strip().lower()
    result = []
    for entry in index.extensions:
        tags = set(entry.tags)
        if tags & hidden or (wanted and not tags & wanted):
            continue
        if hide_installed and normalize_git_url(entry.url) in installed:
            continue
        if needle and needle not in f"{entry.name} {entry.description} {entry.url}".lower():
            continue
        result.append(entry)
    return result


def entry_dict(entry: IndexEntry, installed: bool) -> dict[str, Any]:
    return {**entry.model_dump(), "installed": installed}
