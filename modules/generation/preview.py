"""Live previews while sampling, by the "Live preview method" setting (show_progress_type):
Full (the model's own VAE), Approx cheap (a linear latent -> RGB map, no weights) or TAESD (the
tiny decoder from models/VAE-approx; without its file the cheap preview is used and logged once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from modules.generation.latents import cheap_preview, decode, tensor_to_pil
from modules.generation.speed.taesd import TaesdDecoders
from modules.models.manager import LoadedModel

log = logging.getLogger(__name__)

PreviewDecoder = Callable[[torch.Tensor], Image.Image]  # one denoised latent [C, h, w] -> image


def preview_decoder(method: str, model: LoadedModel, taesd: TaesdDecoders, vae_approx_dir: Path) -> PreviewDecoder:
    if method == "Full":
        return lambda latent: _full_preview(model, latent)
    if method == "TAESD":
        device = next(model.vae.parameters()).device
        found = taesd.previewer(vae_approx_dir, model.is_sdxl, device)
        if found is not None:
            return lambda latent: _no_grad(found, latent)
        if not taesd.missing_logged:
            taesd.missing_logged = True
            log.warning("TAESD live preview: no decoder file in %s; using Approx cheap", vae_approx_dir)
    return lambda latent: cheap_preview(latent.float(), model.is_sdxl)


def _no_grad(decoder: PreviewDecoder, latent: torch.Tensor) -> Image.Image:
    with torch.inference_mode():
        return decoder(latent)


def _full_preview(model: LoadedModel, latent: torch.Tensor) -> Image.Image:
    with torch.inference_mode():
        return tensor_to_pil(decode(model.vae, latent.unsqueeze(0)))[0]
