"""A1111's `modules.paths` for extensions: where things live (see modules.paths_internal).

`models_path`, `data_path` & co. work in preload() too (before the app is bound): they are then
computed from the command line as the app will.
"""

from __future__ import annotations

from typing import Any

from modules import paths_internal
from modules.core.paths import REPO_ROOT
from modules.paths_internal import extensions_builtin_dir, modules_path, script_path

__all__ = ["extensions_builtin_dir", "modules_path", "script_path"]

sd_path = str(REPO_ROOT)
paths = {"Stable Diffusion": str(REPO_ROOT)}


def __getattr__(name: str) -> Any:
    try:
        return getattr(paths_internal, name)
    except AttributeError:
        raise AttributeError(f"module 'modules.paths' has no attribute {name!r}") from None
