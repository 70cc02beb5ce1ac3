"""Model hashes exactly as A1111 computes them, and a JSON cache of them keyed by size + mtime.

- sha256 of the whole file; checkpoints show its first 10 hex digits ("short hash").
- legacy hash: sha256 of the 64 KiB at offset 1 MiB, first 8 hex digits ("NOFILE" if missing).
- addnet hash (kohya, used for LoRA "Lora hashes"): sha256 of a .safetensors file from the end
  of its header (offset 8 + header length) to the end of the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_BLOCK = 1024 * 1024
_LEGACY_OFFSET = 0x100000
_LEGACY_LENGTH = 0x10000


def _sha256_from(handle: Any) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(_BLOCK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Full sha256 (64 hex) of a file, read in 1 MiB blocks."""
    with Path(path).open("rb") as handle:
        return _sha256_from(handle)


def legacy_model_hash(path: Path) -> str:
    """A1111's old 8-hex checkpoint hash: collision-prone, kept because old infotexts use it."""
    try:
        with Path(path).open("rb") as handle:
            handle.seek(_LEGACY_OFFSET)
            return hashlib.sha256(handle.read(_LEGACY_LENGTH)).hexdigest()[:8]
    except FileNotFoundError:
        return "NOFILE"


def addnet_hash_safetensors(path: Path) -> str:
    """kohya's addnet hash: sha256 of the tensor data after the safetensors header (64 hex)."""
    with Path(path).open("rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        handle.seek(8 + length)
        return _sha256_from(handle)


class HashCache:
    """Hashes remembered across runs in one JSON file.

    Layout (compatible in spirit with A1111's cache.json): {section: {key: {"mtime", "size", "sha256"}}},
    sections "hashes" (full sha256) and "hashes-addnet"; keys like "checkpoint/<name>", "vae/<name>",
    "lora/<name>". An entry is valid while the file's size and mtime are unchanged. Thread-safe;
    each change is written with temp file + rename so a crash never leaves half a file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._data: dict[str, dict[str, dict[str, Any]]] | None = None

    def _load(self) -> dict[str, dict[str, dict[str, Any]]]:
        if self._data is None:
            self._data = {}
            if self.path.is_file():
                try:
                    loaded = json.loads(self.path.read_text(encoding="utf-8"))
                    if isinstance(loaded, dict):
                        self._data = {k: v for k, v in loaded.items() if isinstance(v, dict)}
                except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                    log.warning("hash cache %s unreadable (%s); starting empty", self.path, exc)
        return self._data

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self._load(), handle, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _stamp(path: Path) -> tuple[float, int]:
        stat = Path(path).stat()
        return stat.st_mtime, stat.st_size

    def lookup(self, key: str, path: Path, section: str = "hashes") -> str | None:
        """The cached hash for `key` if the file still has the size and mtime it had when hashed."""
        with self._lock:
            entry = self._load().get(section, {}).get(key)
            if not entry:
                return None
            try:
                mtime, size = self._stamp(path)
            except OSError:
                return None
            if entry.get("mtime") != mtime or entry.get("size") != size:
                return None
            value = entry.get("sha256")
            return value if isinstance(value, str) else None

    def store(self, key: str, path: Path, value: str, section: str = "hashes") -> None:
        mtime, size = self._stamp(path)
        with self._lock:
            self._load().setdefault(section, {})[key] = {"mtime": mtime, "size": size, "sha256": value}
            self._save()

    def get_or_compute(self, key: str, path: Path, compute: Callable[[Path], str], section: str = "hashes") -> str:
        cached = self.lookup(key, path, section)
        if cached is not None:
            return cached
        value = compute(path)  # outside the lock: hashing a 7 GB file takes a while
        self.store(key, path, value, section)
        return value

    def sha256(self, key: str, path: Path) -> str:
        """Full sha256 of `path`, from the cache when valid (key e.g. "checkpoint/model.safetensors")."""
        return self.get_or_compute(key, path, sha256_file)

    def addnet_hash(self, key: str, path: Path) -> str:
        """kohya addnet hash of a .safetensors file (key e.g. "lora/name"), cached in "hashes-addnet"."""
        return self.get_or_compute(key, path, addnet_hash_safetensors, section="hashes-addnet")
