"""Seamless tiling as a reversible per-job patch: circular padding on every Conv2d."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


@contextmanager
def tiling_patch(model: Any, enabled: bool) -> Iterator[None]:
    """Switch the UNet's and VAE's convolutions to circular padding for one job, then restore."""
    if not enabled:
        yield
        return
    changed: list[tuple[torch.nn.Conv2d, Any]] = []
    for module in (model.unet, model.vae):
        for layer in module.modules():
            if isinstance(layer, torch.nn.Conv2d):
                changed.append((layer, layer.padding_mode))
                layer.padding_mode = "circular"  # type: ignore[assignment]
    try:
        yield
    finally:
        for layer, mode in changed:
            layer.padding_mode = mode  # type: ignore[assignment]
