"""A1111's `modules.sd_models` for extensions: checkpoint list, lookup, the loaded model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modules.extension_host.compat_runtime import CheckpointInfoView, SdModelView
from modules.extension_host.facade import current
from modules.models.hashes import legacy_model_hash

__all__ = [
    "CheckpointInfo",
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
    return SdModelView(models.load(target))


def reload_model_weights(sd_model: Any = None, info: Any = None, forced_reload: bool = False) -> SdModelView | None:
    models = current().services.models
    if info is not None:
        return SdModelView(models.load(_name(info) or ""))
    loaded = models.reload()
    return SdModelView(loaded) if loaded is not None else None


def unload_model_weights(sd_model: Any = None, info: Any = None) -> None:
    current().services.models.unload()


def model_hash(filename: str) -> str:
    return legacy_model_hash(Path(filename))
