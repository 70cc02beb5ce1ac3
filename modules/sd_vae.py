"""A1111's `modules.sd_vae` for extensions: the VAE files (vae_dict) and the one in use."""

from __future__ import annotations

import os
from typing import Any

from modules.extension_host.facade import current

__all__ = ["refresh_vae_list", "reload_vae_weights"]

unspecified = object()


def __getattr__(name: str) -> Any:
    if name not in ("vae_dict", "loaded_vae_file", "base_vae"):
        raise AttributeError(f"module 'modules.sd_vae' has no attribute {name!r}")
    models = current().services.models
    if name == "vae_dict":
        return {v.name: str(v.filename) for v in models.list_vaes()}
    if name in ("loaded_vae_file", "base_vae"):
        active = models.active
        vae = active.vae_info if active is not None else None
        if name == "loaded_vae_file":
            return str(vae.filename) if vae is not None else None
    return None  # base_vae: the checkpoint's own VAE is not kept as a file


def refresh_vae_list() -> None:
    current().services.models.refresh()


def reload_vae_weights(sd_model: Any = None, vae_file: Any = unspecified) -> Any:
    """Apply the sd_vae setting (or `vae_file`) to the loaded model."""
    host = current()
    models = host.services.models
    if models.active is None:
        return None
    if vae_file is unspecified:
        name = str(host.services.options.get("sd_vae"))
    else:  # A1111 passes a path, or None for the checkpoint's own VAE
        name = os.path.basename(str(vae_file)) if vae_file else "None"
    models.set_vae(models.active, name)
    return host.sd_model()
