"""A1111's `modules.sd_vae_approx` for extensions: the "Approx cheap" latent -> RGB estimate."""

from __future__ import annotations

import torch

from modules.extension_host.facade import current
from modules.generation.latents import cheap_rgb

__all__ = ["cheap_approximation"]


def cheap_approximation(sample: torch.Tensor) -> torch.Tensor:
    """Latent [4, h, w] -> RGB [3, h, w] with the loaded model's factors (SDXL's or SD's)."""
    model = current().sd_model()
    return cheap_rgb(sample, bool(model is not None and model.is_sdxl))
