"""A1111's `modules.shared_items` for extensions: the choice lists of settings (VAEs, checkpoints,
samplers...) read from the app at call time."""

from __future__ import annotations

from typing import Any

from modules.extension_host.facade import current

__all__ = [
    "list_checkpoint_tiles",
    "list_samplers",
    "postprocessing_scripts",
    "refresh_checkpoints",
    "refresh_vae_list",
    "reload_hypernetworks",
    "sd_unet_items",
    "sd_vae_items",
    "ui_reorder_categories",
]


def sd_vae_items() -> list[str]:
    """ "Automatic", "None", then the VAE files (A1111's sd_vae choices)."""
    return ["Automatic", "None", *(v.name for v in current().services.models.list_vaes())]


def refresh_vae_list() -> None:
    current().services.models.refresh()


def list_checkpoint_tiles(use_short: bool = False) -> list[str]:
    from modules.sd_models import checkpoint_tiles

    return checkpoint_tiles(use_short)


def refresh_checkpoints() -> None:
    current().services.models.refresh()


def list_samplers() -> list[Any]:
    from modules.sd_samplers import all_samplers

    return list(all_samplers)


def sd_unet_items() -> list[str]:
    return ["Automatic", "None"]


def reload_hypernetworks() -> None:
    current().services.networks.refresh()


def postprocessing_scripts() -> list[Any]:
    return [entry.script for entry in current().postprocessing._entries]


def ui_reorder_categories() -> list[str]:
    return [
        "prompt",
        "image",
        "inpaint",
        "sampler",
        "accordions",
        "checkboxes",
        "dimensions",
        "cfg",
        "denoising",
        "seed",
        "batch",
        "override_settings",
        "scripts",
    ]
