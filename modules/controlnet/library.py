"""The ControlNet models a user has: files in models/ControlNet (or --controlnet-dir), the shipped
demo ControlNet, loaded on demand and kept in a small LRU cache that shares the model manager's
RAM budget with the checkpoints.

Titles are the extension's: `name [legacy hash]` (e.g. `control_v11p_sd15_canny [d14c016b]`);
a request may name a model by title, by name, or by file name.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modules.controlnet.weights import CONTROLNET_SUFFIXES, identify_controlnet, load_controlnet
from modules.models.errors import ModelNotFound
from modules.models.hashes import legacy_model_hash

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
DEMO_CONTROLNET = BUILTIN_DIR / "demo-shapes-control.safetensors"


@dataclass(frozen=True)
class ControlNetInfo:
    path: Path
    name: str  # file stem (folder name for diffusers folders)
    hash: str | None

    @property
    def title(self) -> str:
        return f"{self.name} [{self.hash}]" if self.hash else self.name


def _module_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


class ControlNetLibrary:
    def __init__(
        self,
        folders: Sequence[Path],
        *,
        builtin: Sequence[Path] = (),
        cache_size: Callable[[], int] = lambda: 1,
        ram_left: Callable[[], int] = lambda: 0,
    ) -> None:
        """`cache_size`: how many ControlNets stay loaded (the extension's control_net_model_cache_size);
        `ram_left`: bytes of the model manager's RAM budget the checkpoints leave (0: no byte limit)."""
        self.folders = tuple(Path(f) for f in folders)
        self.builtin = tuple(Path(p) for p in builtin)
        self.cache_size = cache_size
        self.ram_left = ram_left
        self._lock = threading.RLock()
        self._cache: OrderedDict[tuple[Path, str, str], Any] = OrderedDict()
        self._listing: list[ControlNetInfo] | None = None
        self.disk_loads = 0

    # --- listing -----------------------------------------------------------------------------

    def refresh(self) -> list[ControlNetInfo]:
        found: list[ControlNetInfo] = []
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                if path.is_dir() and (path / "config.json").is_file():
                    found.append(ControlNetInfo(path, path.name, None))
                elif path.is_file() and path.suffix.lower() in CONTROLNET_SUFFIXES and path.parent.is_dir():
                    if (path.parent / "config.json").is_file():
                        continue  # the weights of a diffusers folder, listed as the folder
                    found.append(ControlNetInfo(path, path.stem, legacy_model_hash(path)))
        found += [ControlNetInfo(p, p.stem, legacy_model_hash(p)) for p in self.builtin if p.is_file()]
        with self._lock:
            self._listing = found
        return list(found)

    def listing(self) -> list[ControlNetInfo]:
        with self._lock:
            listing = self._listing
        return list(listing) if listing is not None else self.refresh()

    def find(self, name: str) -> ControlNetInfo:
        wanted = name.strip()
        bare = wanted.rsplit(" [", 1)[0] if wanted.endswith("]") else wanted
        for listing in (self.listing(), self.refresh()):
            for info in listing:
                if wanted in (info.title, info.name, info.path.name) or bare in (info.name, info.path.name):
                    return info
        raise ModelNotFound(f"ControlNet model {name!r} not found in {', '.join(str(f) for f in self.folders)}")

    # --- loading -----------------------------------------------------------------------------

    def load(
        self, name: str, *, dtype: torch.dtype, device: torch.device, base_unet: dict[str, Any] | None = None
    ) -> tuple[ControlNetInfo, Any]:
        info = self.find(name)
        key = (info.path, str(dtype), str(device))
        with self._lock:
            model = self._cache.get(key)
            if model is not None:
                self._cache.move_to_end(key)
                return info, model
            identify_controlnet(info.path)  # a clear WrongModelKind before reading all weights
            model = load_controlnet(info.path, dtype=dtype, base_unet=base_unet).to(device)
            self.disk_loads += 1
            self._cache[key] = model
            self._evict(keep=key)
            return info, model

    def _evict(self, keep: tuple[Path, str, str]) -> None:
        capacity = max(1, int(self.cache_size()))
        left = self.ram_left()
        for key in list(self._cache):
            held = sum(_module_bytes(m) for m in self._cache.values())
            if len(self._cache) <= capacity and (left <= 0 or held <= left):
                break
            if key != keep:
                del self._cache[key]

    def cached(self) -> list[Path]:
        with self._lock:
            return [k[0] for k in self._cache]

    def unload(self) -> None:
        with self._lock:
            self._cache.clear()
