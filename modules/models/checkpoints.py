"""The checkpoints on disk, with A1111's names, titles, hashes and aliases.

A1111 naming (kept so settings, infotexts and API clients carry over):
- name: path relative to the checkpoint folder, with extension ("sub/model.safetensors")
- model_name: name without extension, "/" replaced by "_" ("sub_model"): infotext "Model:"
- name_for_extra: file stem ("model"); title: "name [shorthash]" once the sha256 is known, else name
- aliases: legacy hash, model_name, title, name, name_for_extra, "name [legacy]", and once hashed:
  short hash, full sha256, "name [short]", "name_for_extra [short]".
Listing: *.safetensors and *.ckpt under the folder (recursive), minus *.vae.*; plus diffusers
folders (holding model_index.json) and the --ckpt file.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modules.core.naming import natural_key
from modules.models.errors import ModelNotFound
from modules.models.families import ModelFamily
from modules.models.hashes import HashCache, legacy_model_hash
from modules.models.identify import Identification, identify_file

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
VAE_INFIXES = (".vae.safetensors", ".vae.ckpt", ".vae.pt")
_STRIP_HASH = re.compile(r"\s*\[[^]]+]\s*$")


@dataclass(eq=False)
class CheckpointInfo:
    """One checkpoint file or diffusers folder. sha256 is filled lazily (at first load)."""

    filename: Path
    name: str
    is_diffusers_folder: bool = False
    sha256: str | None = None
    _legacy: str | None = field(default=None, repr=False)
    _identification: Identification | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_path(cls, path: Path, root: Path | None, hash_cache: HashCache | None = None) -> CheckpointInfo:
        # absolute but not resolved: a symlinked model keeps its name in the folder (as in A1111)
        path = Path(os.path.abspath(path))
        try:
            name = path.relative_to(os.path.abspath(root)).as_posix() if root is not None else path.name
        except ValueError:
            name = path.name
        info = cls(filename=path, name=name, is_diffusers_folder=path.is_dir())
        if hash_cache is not None and not info.is_diffusers_folder:
            info.sha256 = hash_cache.lookup(info.hash_key, path)
        return info

    @property
    def hash_key(self) -> str:
        return f"checkpoint/{self.name}"

    @property
    def name_for_extra(self) -> str:
        return Path(self.name).stem if not self.is_diffusers_folder else Path(self.name).name

    @property
    def model_name(self) -> str:
        flat = self.name.replace("/", "_").replace("\\", "_")
        return flat if self.is_diffusers_folder else str(Path(flat).with_suffix(""))

    @property
    def legacy_hash(self) -> str | None:
        """A1111's old 8-hex hash (None for diffusers folders)."""
        if self.is_diffusers_folder:
            return None
        if self._legacy is None:
            self._legacy = legacy_model_hash(self.filename)
        return self._legacy

    @property
    def shorthash(self) -> str | None:
        return self.sha256[:10] if self.sha256 else None

    @property
    def title(self) -> str:
        return f"{self.name} [{self.shorthash}]" if self.shorthash else self.name

    @property
    def short_title(self) -> str:
        return f"{self.name_for_extra} [{self.shorthash}]" if self.shorthash else self.name_for_extra

    @property
    def family(self) -> ModelFamily | None:
        return self.identify().family

    def identify(self) -> Identification:
        """What the file is (header only for .safetensors); cached."""
        with self._lock:
            if self._identification is None:
                self._identification = identify_file(self.filename)
            return self._identification

    def calculate_shorthash(self, hash_cache: HashCache | None) -> str | None:
        """Compute (or read from the cache) the full sha256; None with hashing disabled or for folders."""
        if hash_cache is None or self.is_diffusers_folder:
            return self.shorthash
        if self.sha256 is None:
            self.sha256 = hash_cache.sha256(self.hash_key, self.filename)
        return self.shorthash

    @property
    def aliases(self) -> list[str]:
        ids = [self.model_name, self.title, self.name, self.name_for_extra]
        if self.legacy_hash:
            ids += [self.legacy_hash, f"{self.name} [{self.legacy_hash}]"]
        if self.sha256:
            ids += [
                self.sha256[:10],
                self.sha256,
                f"{self.name} [{self.shorthash}]",
                f"{self.name_for_extra} [{self.shorthash}]",
            ]
        return ids


class CheckpointRegistry:
    """Checkpoints found under a folder (plus explicit extra files); lookup by any A1111 alias."""

    def __init__(
        self,
        ckpt_dir: Path,
        extra_files: Iterable[Path] = (),
        hash_cache: HashCache | None = None,
        builtin_files: Iterable[Path] = (),
    ) -> None:
        """`builtin_files` (the shipped demo model) are always listed, after the user's checkpoints,
        so they are the default only when no other checkpoint exists."""
        self.ckpt_dir = Path(ckpt_dir)
        self.extra_files = tuple(Path(p) for p in extra_files)
        self.builtin_files = tuple(Path(p) for p in builtin_files)
        self.hash_cache = hash_cache
        self._lock = threading.Lock()
        self._items: list[CheckpointInfo] = []
        self._remote: Callable[[], Sequence[tuple[str, str | None]]] | None = None

    def refresh(self) -> list[CheckpointInfo]:
        found: dict[Path, CheckpointInfo] = {}
        for path in self.extra_files:
            if path.exists():
                found[_abs(path)] = CheckpointInfo.from_path(path, self.ckpt_dir, self.hash_cache)
        for path in _scan(self.ckpt_dir):
            found.setdefault(_abs(path), CheckpointInfo.from_path(path, self.ckpt_dir, self.hash_cache))
        extras = [i for p, i in found.items() if p in {_abs(e) for e in self.extra_files}]
        listed = sorted((i for i in found.values() if i not in extras), key=lambda i: natural_key(i.name))
        for path in self.builtin_files:
            if path.is_file() and _abs(path) not in found:
                listed.append(CheckpointInfo.from_path(path, None, self.hash_cache))
        with self._lock:
            # keep already-known objects (their hashes / identification) when a file did not change
            known = {i.filename: i for i in self._items}
            self._items = [known.get(i.filename, i) for i in extras + listed]
            return list(self._items)

    def use_remote(self, source: Callable[[], Sequence[tuple[str, str | None]]]) -> None:
        """On a scale-out front end: list the (name, short hash) pairs that `source` gives (the
        live workers' checkpoints) instead of this machine's files, which only lend their file
        object where name and hash agree. Without live workers the files here are listed."""
        self._remote = source

    def checkpoints(self) -> list[CheckpointInfo]:
        with self._lock:
            local = list(self._items)
        remote = self._remote() if self._remote is not None else ()
        if not remote:
            return local
        by_name = {i.name: i for i in local}
        return [_local_or_remote(by_name.get(name), name, shorthash) for name, shorthash in remote]

    def titles(self) -> list[str]:
        return [i.title for i in self.checkpoints()]

    def find(self, alias: str) -> CheckpointInfo:
        """A1111's closest match: exact alias, then title containing it, then without the [hash] part.

        Only listed checkpoints are found: a path to any other file (absolute, relative, an
        upload's temp file) is "not found", with the same message whether the file exists or not.
        """
        items = self.checkpoints()
        text = str(alias).strip()
        if text:
            for info in items:
                if text in info.aliases:
                    return info
            for needle in (text, _STRIP_HASH.sub("", text)):
                hits = sorted((i for i in items if needle and needle in i.title), key=lambda i: len(i.title))
                if hits:
                    return hits[0]
        available = ", ".join(i.title for i in items) or f"none: put .safetensors files into {self.ckpt_dir}"
        if self._remote is not None and self._remote():  # the list is the workers' (local or not)
            raise ModelNotFound(f"no live worker has the checkpoint {alias!r}; workers have: {available}")
        raise ModelNotFound(f"checkpoint {alias!r} not found. Available: {available}")


class RemoteCheckpointInfo(CheckpointInfo):
    """A checkpoint a scale-out worker has and this machine does not: its name and short hash as
    the worker announced them; no file here to hash or read."""

    @property
    def legacy_hash(self) -> str | None:
        return None

    def identify(self) -> Identification:
        raise FileNotFoundError(f"{self.name} is on a worker, not on this machine")


def _local_or_remote(local: CheckpointInfo | None, name: str, shorthash: str | None) -> CheckpointInfo:
    if local is not None and (shorthash is None or local.shorthash in (None, shorthash)):
        return local
    return RemoteCheckpointInfo(filename=Path(name), name=name, sha256=shorthash)


def _abs(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _scan(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    results: list[Path] = []
    for path in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if (
            path.is_dir()
            and (path / "model_index.json").is_file()
            or (
                path.is_file()
                and path.name.lower().endswith(CHECKPOINT_SUFFIXES)
                and not path.name.lower().endswith(VAE_INFIXES)
                and not _inside_diffusers_folder(path, root)
            )
        ):
            results.append(path)
    return results


def _inside_diffusers_folder(path: Path, root: Path) -> bool:
    return any(
        (parent / "model_index.json").is_file() for parent in path.parents if parent != root and root in parent.parents
    )
