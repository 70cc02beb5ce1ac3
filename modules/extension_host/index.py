"""The "Available" list: A1111's extension index JSON, filtered by tag, installed ones hidden.

Format (AUTOMATIC1111/stable-diffusion-webui-extensions index.json):
    {"tags": {"script": "description", ...},
     "extensions": [{"name", "url", "description", "tags": [...], "added", "created_at", "stars"}]}
The index URL comes from the caller (UI field), else env WEBUI_EXTENSIONS_INDEX, else A1111's
default. A caller's URL must be http(s)://; a local file (file:// or a path, for offline use)
only when it is the configured WEBUI_EXTENSIONS_INDEX. Bodies are read in chunks up to 32 MiB.
"""

from __future__ import annotations

import json
import os
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_INDEX_URL = (
    "https://raw.githubusercontent.com/AUTOMATIC1111/stable-diffusion-webui-extensions/master/index.json"
)
MAX_INDEX_BYTES = 32 * 1024 * 1024
_CHUNK = 64 * 1024


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
    return (requested or "").strip() or configured_index(environ) or DEFAULT_INDEX_URL


def configured_index(environ: Mapping[str, str] = os.environ) -> str:
    """The index the server's owner configured (env WEBUI_EXTENSIONS_INDEX); may be a local file."""
    return environ.get("WEBUI_EXTENSIONS_INDEX", "").strip()


def is_custom_index(requested: str | None, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a client asks for another index than the configured / default one."""
    wanted = (requested or "").strip()
    return bool(wanted) and wanted not in (configured_index(environ), DEFAULT_INDEX_URL)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (urllib would also follow one to ftp://)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise ExtensionIndexError(f"The extension index redirected to a non-http(s) URL: {newurl[:200]!r}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _read_capped(stream: BinaryIO, url: str, deadline: float) -> bytes:
    """Read in chunks, stopping at MAX_INDEX_BYTES (never the whole body first) or the deadline."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_INDEX_BYTES:
            raise ExtensionIndexError(f"The extension index at {url} is larger than {MAX_INDEX_BYTES} bytes.")
        if time.monotonic() > deadline:
            raise ExtensionIndexError(f"Reading the extension index from {url} took too long.")
        chunks.append(chunk)


def _read_local(path: Path, url: str, deadline: float) -> bytes:
    with path.expanduser().open("rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # /dev/zero, a pipe: would never end
            raise ExtensionIndexError(f"The extension index {url} is not a regular file.")
        return _read_capped(handle, url, deadline)


def _read(url: str, timeout: float, allow_local: bool) -> bytes:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    deadline = time.monotonic() + timeout
    if scheme in ("http", "https"):
        opener = urllib.request.build_opener(_HttpOnlyRedirects)
        request = urllib.request.Request(url, headers={"User-Agent": "sd-webui extension index"})
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "")
            if length.isdecimal() and int(length) > MAX_INDEX_BYTES:
                raise ExtensionIndexError(f"The extension index at {url} is larger than {MAX_INDEX_BYTES} bytes.")
            return _read_capped(response, url, deadline)
    local = scheme == "file" or scheme == "" or len(scheme) == 1  # a Windows drive letter parses as a scheme
    if local and not allow_local:
        raise ExtensionIndexError(
            "Only http(s):// index URLs may be loaded; a local index file must be configured on the server "
            "(environment variable WEBUI_EXTENSIONS_INDEX)."
        )
    if scheme == "file":
        return _read_local(Path(unquote(parts.path)), url, deadline)
    if local:
        return _read_local(Path(url), url, deadline)
    raise ExtensionIndexError(f"Unsupported index URL {url[:200]!r}: use http(s)://.")


def load_index(url: str, *, timeout: float = 20.0, allow_local: bool = False) -> ExtensionIndex:
    """Read and parse an index. `allow_local`: the URL is the server's configured index, which
    may be a local file; a URL a client sent may only be http(s)."""
    try:
        raw = _read(url, timeout, allow_local)
    except OSError as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc.strerror or exc
        raise ExtensionIndexError(f"Cannot read the extension index from {url}: {reason}") from None
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
