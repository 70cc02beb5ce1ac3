"""A1111's `modules.memmon` for extensions: MemUsageMonitor (`shared.mem_mon` is the app's)."""

from __future__ import annotations

from modules.extension_host.compat_cache import MemUsageMonitor

__all__ = ["MemUsageMonitor"]
