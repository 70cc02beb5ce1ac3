"""What extra networks are on disk, with everything the UI cards and the API show about them.

- LoRA / LyCORIS: *.safetensors, *.pt, *.ckpt under Paths.lora_dir and Paths.lyco_dir (recursive).
  name = file stem; alias = safetensors metadata `ss_output_name` (else the name); a tag may use
  either. Hash: metadata `sshs_model_hash`, else kohya's addnet hash (safetensors) or the file's
  sha256 (others), cached under "lora/<name>" (A1111 network.py).
- Embeddings: files under Paths.embeddings_dir (see embeddings.py), sha256 cached under
  "textual_inversion/<name>". Read once and kept while the file's size and mtime stay the same.
- Hypernetworks: *.pt under Paths.hypernetwork_dir (recursive), name = stem ("None" excluded).
Cards (A1111 ui_extra_networks.py): preview `<base>.<ext>` or `<base>.preview.<ext>` for png, jpg,
jpeg, webp, gif; description `<base>.txt` or `<base>.description.txt`; user metadata `<base>.json`
(its "description" wins over the file's).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modules.core.naming import natural_key
from modules.core.paths import Paths
from modules.models.errors import ModelError
from modules.models.hashes import HashCache
from modules.models.identify import header_shapes
from modules.models.safetensors_header import read_safetensors_header
from modules.networks.embeddings import EMBEDDING_SUFFIXES, EmbeddingFile, is_preview_image, read_embedding
from modules.networks.infotext import rewrite_tags_by_hash

log = logging.getLogger(__name__)

PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif")
LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt")
METADATA_ORDER = {
    "ss_sd_model_name": 1,
    "ss_resolution": 2,
    "ss_clip_skip": 3,
    "ss_num_train_images": 10,
    "ss_tag_frequency": 20,
}
FORBIDDEN_ALIASES = frozenset({"none", "addams"})
PREFERRED_NAME_FILENAME = "Filename"


def walk_files(folder: Path, suffixes: Sequence[str]) -> Iterator[Path]:
    """Files with the given suffixes under `folder` (recursive, following links), in A1111's natural order."""
    if not folder.is_dir():
        return
    for root, _dirs, files in sorted(os.walk(folder, followlinks=True), key=lambda entry: natural_key(entry[0])):
        for name in sorted(files, key=natural_key):
            if name.lower().endswith(tuple(suffixes)):
                yield Path(root) / name


# --------------------------------------------------------------------------------------------
# cards


@dataclass(frozen=True)
class Card:
    """What a UI card shows besides the name: preview image, description, user metadata."""

    preview: Path | None = None
    description: str = ""
    user_metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_file(cls, path: Path) -> Card:
        base = path.with_suffix("")
        user = read_user_metadata(path)
        description = str(user["description"]) if user.get("description") else read_description(base)
        return cls(find_preview(base), description, user)


def find_preview(base: Path) -> Path | None:
    for ext in PREVIEW_EXTENSIONS:
        for candidate in (Path(f"{base}.{ext}"), Path(f"{base}.preview.{ext}")):
            if candidate.is_file():
                return candidate
    return None


def read_description(base: Path) -> str:
    for candidate in (Path(f"{base}.txt"), Path(f"{base}.description.txt")):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8", errors="replace")
    return ""


def read_user_metadata(path: Path) -> dict[str, Any]:
    """`<base>.json` (A1111's user metadata: description, notes, activation text, preferred weight, ...)."""
    file = path.with_suffix(".json")
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("user metadata %s unreadable: %s", file, exc)
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------------------------
# LoRA


def read_lora_metadata(path: Path) -> dict[str, Any]:
    """Safetensors training metadata (ss_* keys...), JSON-looking values decoded, A1111's key order."""
    if path.suffix.lower() != ".safetensors":
        return {}
    raw = read_safetensors_header(path).get("__metadata__") or {}
    metadata: dict[str, Any] = {}
    for key, value in raw.items():
        metadata[key] = value
        if isinstance(value, str) and value.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                metadata[key] = json.loads(value)
    return dict(sorted(metadata.items(), key=lambda item: METADATA_ORDER.get(item[0], 999)))


def sd_version_from_metadata(metadata: Mapping[str, Any]) -> str:
    """A1111's NetworkOnDisk.detect_version: "SDXL" | "SD2" | "SD1" | "Unknown"."""
    if str(metadata.get("ss_base_model_version", "")).startswith("sdxl_"):
        return "SDXL"
    if str(metadata.get("ss_v2", "")) == "True":
        return "SD2"
    return "SD1" if metadata else "Unknown"


_WIDTH_FAMILY = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


def family_from_shapes(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """sd1 / sd2 / sdxl from a LoRA's key names and shapes, None when they do not tell."""
    keys = list(shapes)
    if any(k.startswith(("lora_te1_", "lora_te2_")) or k.startswith("text_encoder_2.") for k in keys):
        return "sdxl"
    for key in keys:
        is_down = key.endswith(("lora_down.weight", "lora_A.weight"))
        if is_down and "attn2" in key and "to_k" in key and len(shapes[key]) >= 2:
            return _WIDTH_FAMILY.get(int(shapes[key][1]))
    for key in keys:
        if key.endswith(("lora_down.weight", "lora_A.weight")) and "q_proj" in key and len(shapes[key]) >= 2:
            return _WIDTH_FAMILY.get(int(shapes[key][1]))
    return None


@dataclass(frozen=True, eq=False)
class LoraInfo:
    name: str
    path: Path
    alias: str
    metadata: dict[str, Any]
    family: str | None  # sd1 / sd2 / sdxl from shapes (or metadata); None unknown
    sd_version: str  # A1111's label from metadata; the user metadata's "sd version" overrides it
    card: Card = field(default_factory=Card)

    @property
    def is_safetensors(self) -> bool:
        return self.path.suffix.lower() == ".safetensors"

    @property
    def hash_key(self) -> str:
        return f"lora/{self.name}"

    @property
    def activation_text(self) -> str:
        return str(self.card.user_metadata.get("activation text", ""))

    @property
    def preferred_weight(self) -> float:
        try:
            return float(self.card.user_metadata.get("preferred weight", 0.0) or 0.0)
        except (TypeError, ValueError):
            return 0.0

    @property
    def negative_text(self) -> str:
        return str(self.card.user_metadata.get("negative text", ""))

    @property
    def notes(self) -> str:
        return str(self.card.user_metadata.get("notes", ""))

    def api_json(self) -> dict[str, Any]:
        """An entry of /sdapi/v1/loras."""
        return {"name": self.name, "alias": self.alias, "path": str(self.path), "metadata": self.metadata}


def _lora_info(path: Path) -> LoraInfo:
    metadata = read_lora_metadata(path)
    family = None
    if path.suffix.lower() == ".safetensors":
        family = family_from_shapes(header_shapes(read_safetensors_header(path)))
    sd_version = sd_version_from_metadata(metadata)
    if family is None and sd_version != "Unknown":
        family = sd_version.lower()
    return LoraInfo(
        name=path.stem,
        path=path,
        alias=str(metadata.get("ss_output_name") or path.stem),
        metadata=metadata,
        family=family,
        sd_version=sd_version,
        card=Card.for_file(path),
    )


# --------------------------------------------------------------------------------------------
# hypernetworks, embeddings


@dataclass(frozen=True)
class HypernetworkInfo:
    name: str
    path: Path
    card: Card = field(default_factory=Card)

    def api_json(self) -> dict[str, str]:
        return {"name": self.name, "path": str(self.path)}


@dataclass
class EmbeddingScan:
    """The embeddings folder as last read: usable files and files that failed to load."""

    files: list[EmbeddingFile] = field(default_factory=list)
    errors: dict[Path, str] = field(default_factory=dict)

    def cards(self) -> dict[str, Card]:
        """UI cards of the usable files, by embedding name (read from disk on each call)."""
        return {file.name: Card.for_file(file.path) for file in self.files}

    @property
    def signature(self) -> tuple[tuple[str, float, int], ...]:
        return tuple((str(f.path), *_stamp(f.path)) for f in self.files)


def _stamp(path: Path) -> tuple[float, int]:
    stat = path.stat()
    return stat.st_mtime, stat.st_size


# --------------------------------------------------------------------------------------------


class NetworkCatalogue:
    """Lists LoRAs, embeddings and hypernetworks; resolves names, aliases and hashes. Thread-safe."""

    def __init__(self, paths: Paths, hash_cache: HashCache | None, *, safe_unpickle: bool = True) -> None:
        self.paths = paths
        self.hash_cache = hash_cache
        self.safe_unpickle = safe_unpickle
        self._lock = threading.RLock()
        self._loras: dict[str, LoraInfo] | None = None
        self._lora_lookup: dict[str, LoraInfo] = {}
        self._forbidden_aliases: set[str] = set(FORBIDDEN_ALIASES)
        self._hypernetworks: dict[str, HypernetworkInfo] | None = None
        self._embedding_cache: dict[Path, tuple[tuple[float, int], EmbeddingFile | None, str | None]] = {}

    def refresh(self) -> None:
        """Forget listings; the next call reads the folders again (embedding files only if changed)."""
        with self._lock:
            self._loras = None
            self._hypernetworks = None

    # --- LoRA ----------------------------------------------------------------------------------

    @property
    def lora_dirs(self) -> list[Path]:
        return list(dict.fromkeys([self.paths.lora_dir, self.paths.lyco_dir]))

    def _scan_loras(self) -> dict[str, LoraInfo]:
        with self._lock:
            if self._loras is not None:
                return self._loras
            loras: dict[str, LoraInfo] = {}
            lookup: dict[str, LoraInfo] = {}
            forbidden = set(FORBIDDEN_ALIASES)
            for folder in self.lora_dirs:
                for path in walk_files(folder, LORA_SUFFIXES):
                    try:
                        info = _lora_info(path)
                    except (ModelError, OSError) as exc:
                        log.warning("skipping LoRA %s: %s", path, exc)
                        continue
                    loras[info.name] = info
                    if info.alias in lookup:
                        forbidden.add(info.alias.lower())
                    lookup[info.name] = info
                    lookup[info.alias] = info
            self._loras, self._lora_lookup, self._forbidden_aliases = loras, lookup, forbidden
            return loras

    def loras(self) -> list[LoraInfo]:
        return list(self._scan_loras().values())

    def find_lora(self, name: str) -> LoraInfo | None:
        """By file name or alias (as a `<lora:NAME:...>` tag gives it); an unknown name rescans the
        folders once, so files added since the last listing are found (as A1111 does)."""
        self._scan_loras()
        with self._lock:
            found = self._lora_lookup.get(name)
        if found is None:
            self.refresh()
            self._scan_loras()
            with self._lock:
                found = self._lora_lookup.get(name)
        return found

    def display_name(self, info: LoraInfo, preferred_name: str = "Alias from file") -> str:
        """A1111 get_alias: the alias, unless the setting asks for file names or the alias is ambiguous."""
        self._scan_loras()
        if preferred_name == PREFERRED_NAME_FILENAME or info.alias.lower() in self._forbidden_aliases:
            return info.name
        return info.alias

    def lora_hash(self, info: LoraInfo, *, compute: bool = True) -> str | None:
        """Full hash for "Lora hashes": sshs_model_hash metadata, else addnet (safetensors) / sha256."""
        given = info.metadata.get("sshs_model_hash")
        if isinstance(given, str) and given:
            return given
        if self.hash_cache is None:
            return None
        section = "hashes-addnet" if info.is_safetensors else "hashes"
        cached = self.hash_cache.lookup(info.hash_key, info.path, section)
        if cached is not None or not compute:
            return cached
        if info.is_safetensors:
            return self.hash_cache.addnet_hash(info.hash_key, info.path)
        return self.hash_cache.sha256(info.hash_key, info.path)

    def lora_shorthash(self, info: LoraInfo, *, compute: bool = True) -> str | None:
        full = self.lora_hash(info, compute=compute)
        return full[:12] if full else None

    def lora_by_shorthash(self, shorthash: str, *, compute_missing: bool = False) -> LoraInfo | None:
        """The LoRA whose 12-character hash this is (A1111 only knows already-hashed files)."""
        wanted = shorthash.strip().lower()
        for info in self.loras():
            found = self.lora_shorthash(info, compute=compute_missing)
            if found and found.lower() == wanted:
                return info
        return None

    def rewrite_tags_by_hash(
        self,
        prompt: str,
        lora_hashes: str,
        *,
        preferred_name: str = "Alias from file",
        compute_missing: bool = False,
    ) -> str:
        """A pasted prompt with each `<lora:NAME:` pointed at the local file that has NAME's hash."""

        def local_name(shorthash: str) -> str | None:
            info = self.lora_by_shorthash(shorthash, compute_missing=compute_missing)
            return None if info is None else self.display_name(info, preferred_name)

        return rewrite_tags_by_hash(prompt, lora_hashes, local_name)

    # --- hypernetworks ------------------------------------------------------------------------

    def _scan_hypernetworks(self) -> dict[str, HypernetworkInfo]:
        with self._lock:
            if self._hypernetworks is None:
                found: dict[str, HypernetworkInfo] = {}
                for path in walk_files(self.paths.hypernetwork_dir, (".pt",)):
                    if path.stem != "None":
                        found[path.stem] = HypernetworkInfo(path.stem, path, Card.for_file(path))
                self._hypernetworks = found
            return self._hypernetworks

    def hypernetworks(self) -> list[HypernetworkInfo]:
        """Listings read the folder again (a few files; new ones show without a refresh)."""
        with self._lock:
            self._hypernetworks = None
        return list(self._scan_hypernetworks().values())

    def find_hypernetwork(self, name: str) -> HypernetworkInfo | None:
        found = self._scan_hypernetworks().get(name)
        if found is None:
            with self._lock:
                self._hypernetworks = None
            found = self._scan_hypernetworks().get(name)
        return found

    # --- embeddings ---------------------------------------------------------------------------

    def embeddings(self) -> EmbeddingScan:
        """Every embedding file (re-read only when its size or mtime changed); failures in `errors`."""
        scan = EmbeddingScan()
        seen: set[Path] = set()
        for path in walk_files(self.paths.embeddings_dir, EMBEDDING_SUFFIXES):
            if is_preview_image(path):
                continue
            try:
                stamp = _stamp(path)
            except OSError as exc:
                scan.errors[path] = str(exc)
                continue
            if stamp[1] == 0:
                continue
            seen.add(path)
            file, error = self._embedding(path, stamp)
            if error is not None:
                scan.errors[path] = error
            elif file is not None:
                scan.files.append(file)
        with self._lock:
            for stale in set(self._embedding_cache) - seen:
                del self._embedding_cache[stale]
        return scan

    def _embedding(self, path: Path, stamp: tuple[float, int]) -> tuple[EmbeddingFile | None, str | None]:
        with self._lock:
            cached = self._embedding_cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        file: EmbeddingFile | None = None
        error: str | None = None
        try:
            file = read_embedding(path, safe=self.safe_unpickle)
            if file is not None and self.hash_cache is not None:
                file = replace(file, sha256=self.hash_cache.sha256(f"textual_inversion/{file.name}", path))
        except (ModelError, OSError) as exc:
            error = str(exc)
            log.warning("embedding %s not loaded: %s", path, error)
        with self._lock:
            self._embedding_cache[path] = (stamp, file, error)
        return file, error
