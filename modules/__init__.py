"""The web UI's packages, and A1111's module paths for extensions (modules.shared, ...).

A1111 imported nearly all of its modules at start, so extension code can write `import modules`
and then use `modules.shared_items.sd_vae_items()` without importing `modules.shared_items`
itself. Here a submodule is imported the first time it is read as an attribute of this package
(nothing is imported at start).
"""

from __future__ import annotations

import importlib
from types import ModuleType


def __getattr__(name: str) -> ModuleType:
    if name.startswith("_"):
        raise AttributeError(name)
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module 'modules' has no attribute {name!r}") from None
