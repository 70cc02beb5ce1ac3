"""A1111's `modules.paths` (and paths_internal) for extensions: where things live."""

from __future__ import annotations

from typing import Any

from modules.core.paths import REPO_ROOT
from modules.extension_host.facade import current
from modules.extension_host.preload import BUILTIN_DIR

__all__ = ["extensions_builtin_dir", "script_path"]

script_path = str(REPO_ROOT)
modules_path = str(REPO_ROOT / "modules")
extensions_builtin_dir = str(BUILTIN_DIR)
sd_path = str(REPO_ROOT)


def __getattr__(name: str) -> Any:
    paths = current().services.paths
    values = {
        "data_path": paths.data_dir,
        "models_path": paths.models_dir,
        "extensions_dir": paths.extensions_dir,
        "default_output_dir": paths.outputs_dir,
        "config_states_dir": paths.data_dir / "config_states",
        "paths": {"Stable Diffusion": REPO_ROOT},
    }
    if name in values:
        value = values[name]
        return value if isinstance(value, dict) else str(value)
    raise AttributeError(f"module 'modules.paths' has no attribute {name!r}")
