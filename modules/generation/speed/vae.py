"""VAE memory savers for one job: tiled and sliced encode/decode (diffusers AutoencoderKL switches).

Tiling splits a large image (or latent) into overlapping tiles of `tile_size` pixels and blends
them: peak memory no longer grows with the image, at the cost of ~1.3x the compute (overlaps)
and faint seams, since each tile's normalisation sees only its own area. Images no larger than
one tile are not tiled, so the setting changes nothing at the model's native size. Slicing
encodes/decodes a batch one image at a time (decode already runs per image here, see
modules/generation/latents.py; slicing matters for img2img / hires encodes of batches).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

_SWITCHES = ("use_tiling", "use_slicing", "tile_sample_min_size", "tile_latent_min_size")


@dataclass(frozen=True)
class VaeMode:
    tiling: bool = False
    slicing: bool = False
    tile_size: int = 0  # pixels per tile side; 0 = the VAE's own sample size (512 SD1/2, 1024 SDXL)

    def __post_init__(self) -> None:
        if self.tile_size != 0 and (self.tile_size < 64 or self.tile_size % 64):
            raise ValueError(f"VAE tile size must be 0 (model default) or a multiple of 64 >= 64, got {self.tile_size}")


def _downscale(vae: Any) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


@contextmanager
def vae_mode(vae: Any, mode: VaeMode) -> Iterator[bool]:
    """Apply tiling/slicing to an AutoencoderKL while inside; yields whether anything changed."""
    if not (mode.tiling or mode.slicing):
        yield False
        return
    missing = [name for name in _SWITCHES if not hasattr(vae, name)]
    if missing:
        raise TypeError(f"{type(vae).__name__} has no tiling/slicing switches ({', '.join(missing)})")
    saved = {name: getattr(vae, name) for name in _SWITCHES}
    try:
        vae.use_tiling = saved["use_tiling"] or mode.tiling
        vae.use_slicing = saved["use_slicing"] or mode.slicing
        if mode.tiling and mode.tile_size:
            vae.tile_sample_min_size = mode.tile_size
            vae.tile_latent_min_size = mode.tile_size // _downscale(vae)
        yield True
    finally:
        for name, value in saved.items():
            setattr(vae, name, value)
