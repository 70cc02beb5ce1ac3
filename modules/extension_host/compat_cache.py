"""A1111's small helpers that keep state: modules.cache (cache.json) and shared.mem_mon.

Both belong to one ExtensionHost (one app), never to module globals.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from modules.core.options import atomic_write_text


class JsonCache:
    """A1111's `modules.cache`: subsections of one JSON file; `cached_data_for_file` recomputes an
    entry when the file's mtime is newer than the one stored."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._data = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._data = {}
        return self._data

    def subsection(self, name: str) -> dict[str, Any]:
        with self._lock:
            data = self._load()
            section = data.get(name)
            if not isinstance(section, dict):
                section = data[name] = {}
            return section

    def dump(self) -> None:
        with self._lock:
            atomic_write_text(self.path, json.dumps(self._load(), indent=1))

    def cached_data_for_file(self, subsection: str, title: str, filename: str, func: Callable[[], Any]) -> Any:
        section = self.subsection(subsection)
        try:
            mtime = os.path.getmtime(filename)
        except OSError:
            return None
        entry = section.get(title)
        if isinstance(entry, dict) and entry.get("mtime", 0) >= mtime and "value" in entry:
            return entry["value"]
        value = func()
        if value is None:
            return None
        section[title] = {"mtime": mtime, "value": value}
        self.dump()
        return value


class MemUsageMonitor:
    """`shared.mem_mon` (A1111's modules.memmon.MemUsageMonitor) read on demand: A1111 polls in a
    thread; here `read()` asks torch when called, which gives the same numbers without a thread."""

    def __init__(self, device: torch.device):
        self.device = device
        self.disabled = device.type != "cuda"
        self.data: dict[str, int] = {}

    def cuda_mem_get_info(self) -> tuple[int, int]:
        if self.disabled:
            return 0, 0
        free, total = torch.cuda.mem_get_info(self.device)
        return int(free), int(total)

    def read(self) -> dict[str, int]:
        if not self.disabled:
            free, total = self.cuda_mem_get_info()
            stats = torch.cuda.memory_stats(self.device)
            self.data.update(
                free=free,
                total=total,
                active=int(stats.get("active_bytes.all.current", 0)),
                active_peak=int(stats.get("active_bytes.all.peak", 0)),
                reserved=int(stats.get("reserved_bytes.all.current", 0)),
                reserved_peak=int(stats.get("reserved_bytes.all.peak", 0)),
                system_peak=total - free,
            )
        return self.data

    def stop(self) -> dict[str, int]:
        return self.read()

    def monitor(self) -> None:
        if not self.disabled:
            torch.cuda.reset_peak_memory_stats(self.device)
        self.data.clear()

    def dump_debug(self) -> None:
        pass
