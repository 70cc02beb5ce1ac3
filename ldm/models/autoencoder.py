"""ldm.models.autoencoder: AutoencoderKL as a view on a diffusers AutoencoderKL (shared modules)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ldm.modules.diffusionmodules.model import Decoder, Encoder
from ldm.modules.distributions.distributions import DiagonalGaussianDistribution


class AutoencoderKL(nn.Module):
    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.encoder = Encoder(vae.encoder)
        self.decoder = Decoder(vae.decoder)
        self.quant_conv = vae.quant_conv if vae.quant_conv is not None else nn.Identity()
        self.post_quant_conv = vae.post_quant_conv if vae.post_quant_conv is not None else nn.Identity()
        self.embed_dim = int(vae.config.latent_channels)
        self.__dict__["diffusers_vae"] = vae  # outside the tree: parameters listed once

    def _diffusers_tiles(self) -> bool:
        """The VAE tiling/slicing setting is on: decode with diffusers' tiled/sliced decode."""
        vae = self.__dict__["diffusers_vae"]
        return bool(getattr(vae, "use_tiling", False) or getattr(vae, "use_slicing", False))

    def encode(self, x: torch.Tensor) -> DiagonalGaussianDistribution:
        if self._diffusers_tiles():
            dist = self.__dict__["diffusers_vae"].encode(x).latent_dist
            return DiagonalGaussianDistribution(dist.parameters)
        return DiagonalGaussianDistribution(self.quant_conv(self.encoder(x)))

    def decode(self, z: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if self._diffusers_tiles():
            return self.__dict__["diffusers_vae"].decode(z).sample
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x: torch.Tensor, sample_posterior: bool = True) -> tuple[torch.Tensor, Any]:
        posterior = self.encode(x)
        z = posterior.sample() if sample_posterior else posterior.mode()
        return self.decode(z), posterior
