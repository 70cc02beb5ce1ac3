"""A1111's `modules.paths_internal` for extensions: where the web UI and its data live.

Usable before the app is bound too (preload.py, install.py): then the folders come from the
command line (--data-dir, --models-dir) the way the app will compute them - the one the
preload.py runs for, else this process's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from modules.core.paths import REPO_ROOT
from modules.extension_host.facade import current, is_bound
from modules.extension_host.preload import BUILTIN_DIR, PRELOAD_ARGV

__all__ = ["cwd", "extensions_builtin_dir", "modules_path", "script_path", "sd_configs_path"]

script_path = str(REPO_ROOT)
modules_path = str(REPO_ROOT / "modules")
extensions_builtin_dir = str(BUILTIN_DIR)
sd_configs_path = str(REPO_ROOT / "configs")
cwd = os.getcwd()


def _from_argv() -> dict[str, Path]:
    import argparse

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--data-dir", default=None)
    pre.add_argument("--models-dir", default=None)
    argv = PRELOAD_ARGV.get()
    known, _ = pre.parse_known_args(list(argv) if argv is not None else sys.argv[1:])
    data = Path(known.data_dir).resolve() if known.data_dir else REPO_ROOT
    models = Path(known.models_dir).resolve() if known.models_dir else data / "models"
    return {"data": data, "models": models, "extensions": data / "extensions", "outputs": data / "outputs"}


def folders() -> dict[str, Path]:
    if is_bound():
        paths = current().services.paths
        return {
            "data": paths.data_dir,
            "models": paths.models_dir,
            "extensions": paths.extensions_dir,
            "outputs": paths.outputs_dir,
        }
    return _from_argv()


def __getattr__(name: str) -> Any:
    where = folders()
    values = {
        "data_path": where["data"],
        "models_path": where["models"],
        "extensions_dir": where["extensions"],
        "default_output_dir": where["outputs"],
        "config_states_dir": where["data"] / "config_states",
        "sd_model_file": where["models"] / "model.ckpt",
        "default_sd_model_file": where["models"] / "model.ckpt",
        "sd_default_config": REPO_ROOT / "configs" / "v1-inference.yaml",
    }
    if name in values:
        return str(values[name])
    raise AttributeError(f"module 'modules.paths_internal' has no attribute {name!r}")
