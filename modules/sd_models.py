"""A1111's `modules.sd_models` for extensions: checkpoint list, lookup, the loaded model."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from modules.extension_host.compat_runtime import CheckpointInfoView, SdModelView
from modules.extension_host.facade import current
from modules.models.hashes import legacy_model_hash
from modules.models.safe_load import load_state_dict
from modules.models.safetensors_header import read_safetensors_header

__all__ = [
    "CheckpointInfo",
    "checkpoint_tiles",
    "read_metadata_from_safetensors",
    "read_state_dict",
    "get_closet_checkpoint_match",
    "list_models",
    "load_model",
    "model_hash",
    "reload_model_weights",
    "select_checkpoint",
    "unload_model_weights",
]

CheckpointInfo = CheckpointInfoView


def __getattr__(name: str) -> Any:
    if name == "checkpoints_list":
        return {c.title: CheckpointInfoView(c) for c in current().services.models.list_checkpoints()}
    if name == "checkpoint_aliases":
        return {a: CheckpointInfoView(c) for c in current().services.models.list_checkpoints() for a in c.aliases}
    if name == "model_data":
        return _ModelData()
    if name == "model_path":
        return str(current().services.paths.ckpt_dir)
    if name == "checkpoints_loaded":
        active = current().services.models.active
        return {CheckpointInfoView(active.checkpoint): None} if active is not None else {}
    raise AttributeError(f"module 'modules.sd_models' has no attribute {name!r}")


class _ModelData:
    @property
    def sd_model(self) -> SdModelView | None:
        return current().sd_model()

    def get_sd_model(self) -> SdModelView | None:
        return current().sd_model()


def list_models() -> None:
    current().services.models.refresh()


def get_closet_checkpoint_match(search_string: str) -> CheckpointInfoView | None:
    """The checkpoint for a title/name/hash, else the first whose title contains the text (A1111)."""
    models = current().services.models
    try:
        return CheckpointInfoView(models.find_checkpoint(search_string))
    except LookupError:
        pass
    matches = sorted((c for c in models.list_checkpoints() if search_string in c.title), key=lambda c: len(c.title))
    return CheckpointInfoView(matches[0]) if matches else None


def select_checkpoint() -> CheckpointInfoView | None:
    models = current().services.models
    if models.active is not None:
        return CheckpointInfoView(models.active.checkpoint)
    found = models.list_checkpoints()
    return CheckpointInfoView(found[0]) if found else None


def _name(info: Any) -> str | None:
    if info is None:
        return None
    return str(getattr(info, "title", info))


def load_model(checkpoint_info: Any = None, already_loaded_state_dict: Any = None) -> SdModelView | None:
    models = current().services.models
    target = _name(checkpoint_info) or _name(select_checkpoint())
    if target is None:
        return None
    return SdModelView(models.load(target), current().services.options.as_dict)


def reload_model_weights(sd_model: Any = None, info: Any = None, forced_reload: bool = False) -> SdModelView | None:
    models = current().services.models
    if info is not None:
        return SdModelView(models.load(_name(info) or ""), current().services.options.as_dict)
    loaded = models.reload()
    return SdModelView(loaded, current().services.options.as_dict) if loaded is not None else None


def unload_model_weights(sd_model: Any = None, info: Any = None) -> None:
    current().services.models.unload()


def model_hash(filename: str) -> str:
    return legacy_model_hash(Path(filename))


def checkpoint_tiles(use_short: bool = False) -> list[str]:
    """Checkpoint titles in natural order (`use_short`: name without folder and extension + hash)."""
    from modules.shared import natural_sort_key

    models = current().services.models.list_checkpoints()
    titles = [c.short_title if use_short else c.title for c in models]
    return sorted(titles, key=natural_sort_key)


def read_metadata_from_safetensors(filename: str) -> dict[str, Any]:
    """The `__metadata__` of a .safetensors file; JSON-looking values are decoded (A1111)."""
    raw = read_safetensors_header(Path(filename)).get("__metadata__") or {}
    result: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str) and value[:1] == "{":
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        result[key] = value
    return result


def read_state_dict(
    checkpoint_file: str, print_global_state: bool = False, map_location: str | None = None
) -> dict[str, Any]:
    """Tensors of a checkpoint (.safetensors, or a pickle through the safe loader unless
    --disable-safe-unpickle), unwrapped from `state_dict` as A1111 does."""
    safe = not getattr(current().services.args, "disable_safe_unpickle", False)
    return load_state_dict(Path(checkpoint_file), safe=safe, device=map_location or "cpu")
