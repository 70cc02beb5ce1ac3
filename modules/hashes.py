"""A1111's `modules.hashes` for extensions: cached sha256 / addnet hashes (cache/hashes.json)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from modules.extension_host.facade import current
from modules.models.hashes import HashCache, sha256_file
from modules.models.hashes import addnet_hash_safetensors as _addnet_hash_file

__all__ = ["addnet_hash_safetensors", "calculate_sha256", "sha256", "sha256_from_cache"]


def _cache() -> HashCache | None:
    models = current().services.models
    return models.hash_cache


def calculate_sha256(filename: str) -> str:
    return sha256_file(Path(filename))


def sha256_from_cache(filename: str, title: str, use_addnet_hash: bool = False) -> str | None:
    cache = _cache()
    if cache is None:
        return None
    section = "hashes-addnet" if use_addnet_hash else "hashes"
    return cache.lookup(title, Path(filename), section)


def sha256(filename: str, title: str, use_addnet_hash: bool = False) -> str | None:
    """Cached hash of `filename` under `title` (e.g. "checkpoint/x.safetensors"); None with --no-hashing."""
    cache = _cache()
    if cache is None:
        return None
    if use_addnet_hash:
        return cache.addnet_hash(title, Path(filename))
    return cache.sha256(title, Path(filename))


def addnet_hash_safetensors(file: Any) -> str:
    """kohya's addnet hash of a .safetensors file (a path or, as in A1111, an open binary file)."""
    if hasattr(file, "read"):
        file.seek(0)
        length = int.from_bytes(file.read(8), "little")
        file.seek(8 + length)
        digest = hashlib.sha256()
        for chunk in iter(lambda: file.read(1024 * 1024), b""):
            digest.update(chunk)
        return digest.hexdigest()
    return _addnet_hash_file(Path(file))
