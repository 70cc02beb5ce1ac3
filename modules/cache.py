"""A1111's `modules.cache` for extensions: a JSON cache in the data dir (cache/cache.json),
one subsection per use; `cached_data_for_file` recomputes when the file changed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modules.extension_host.facade import current

__all__ = ["cache", "cached_data_for_file", "dump_cache"]


def cache(subsection: str) -> dict[str, Any]:
    """The dict of `subsection`; changes are written by dump_cache()."""
    return current().cache.subsection(subsection)


def dump_cache() -> None:
    current().cache.dump()


def cached_data_for_file(subsection: str, title: str, filename: str, func: Callable[[], Any]) -> Any:
    return current().cache.cached_data_for_file(subsection, title, filename, func)
