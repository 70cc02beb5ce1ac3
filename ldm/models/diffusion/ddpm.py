"""ldm.models.diffusion.ddpm: LatentDiffusion (what A1111's shared.sd_model is for SD1/SD2).

Ours is a view: `model.diffusion_model` is the ldm-shaped UNet over the loaded diffusers UNet,
`first_stage_model` the ldm-shaped VAE, `cond_stage_model` the text encoder interface the host
gives it. It owns no weights of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ldm.modules.distributions.distributions import DiagonalGaussianDistribution


class DiffusionWrapper(nn.Module):
    def __init__(self, diffusion_model: nn.Module, conditioning_key: str = "crossattn") -> None:
        super().__init__()
        self.diffusion_model = diffusion_model
        self.conditioning_key = conditioning_key

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        c_concat: list[torch.Tensor] | None = None,
        c_crossattn: list[torch.Tensor] | None = None,
        c_adm: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        concat = [c for c in c_concat or () if c.shape[-2:] != (1, 1)]  # 1x1: A1111's "no image cond"
        if concat:
            x = torch.cat([x, *concat], dim=1)
        context = torch.cat(c_crossattn, 1) if c_crossattn else None
        return self.diffusion_model(x, t, context=context, y=c_adm, **kwargs)


def cond_parts(cond: Any) -> dict[str, Any]:
    """A cond in any of the forms A1111 code passes (tensor, ldm dict, sgm dict) -> wrapper kwargs."""
    if isinstance(cond, dict):
        concat = cond.get("c_concat", cond.get("concat"))
        cross = cond.get("c_crossattn", cond.get("crossattn"))
        return {
            "c_concat": concat if isinstance(concat, list) or concat is None else [concat],
            "c_crossattn": cross if isinstance(cross, list) or cross is None else [cross],
            "c_adm": cond.get("c_adm", cond.get("vector")),
        }
    return {"c_crossattn": cond if isinstance(cond, list) else [cond]}


class LatentDiffusion(nn.Module):
    """The loaded model as ldm's LatentDiffusion: apply_model, first stage, conditioning."""

    # A1111's model type flags (set by whoever builds the view)
    is_sdxl: bool = False
    is_sd1: bool = False
    is_sd2: bool = False
    is_sd3: bool = False
    is_ssd: bool = False

    def __init__(
        self,
        diffusion_model: nn.Module,
        first_stage: Callable[[], nn.Module],
        *,
        parameterization: str,
        alphas_cumprod: torch.Tensor,
        scale_factor: float,
        conditioning_key: str = "crossattn",
        cond_stage_model: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.model = DiffusionWrapper(diffusion_model, conditioning_key)
        self._first_stage = first_stage  # follows VAE swaps: the view of the VAE in use now
        self.cond_stage_model = cond_stage_model
        self.parameterization = parameterization
        self.scale_factor = scale_factor
        self.register_buffer("alphas_cumprod", alphas_cumprod.clone(), persistent=False)
        self.num_timesteps = int(alphas_cumprod.shape[0])
        self.conditioning_key = conditioning_key
        self.cond_stage_key = "txt"

    @property
    def first_stage_model(self) -> Any:
        return self._first_stage()

    def apply_model(self, x_noisy: torch.Tensor, t: torch.Tensor, cond: Any, return_ids: bool = False) -> Any:
        return self.model(x_noisy, t, **cond_parts(cond))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        return self.apply_model(x, t, cond)

    def get_learned_conditioning(self, c: Any) -> Any:
        if self.cond_stage_model is None:
            raise RuntimeError("this model has no text encoder interface")
        return self.cond_stage_model(c)

    @torch.no_grad()
    def decode_first_stage(self, z: torch.Tensor, predict_cids: bool = False, force_not_quantize: bool = False) -> Any:
        return self.first_stage_model.decode(z / self.scale_factor)

    @torch.no_grad()
    def encode_first_stage(self, x: torch.Tensor) -> Any:
        return self.first_stage_model.encode(x)

    def get_first_stage_encoding(self, encoder_posterior: Any) -> torch.Tensor:
        if isinstance(encoder_posterior, DiagonalGaussianDistribution):
            z = encoder_posterior.sample()
        elif isinstance(encoder_posterior, torch.Tensor):
            z = encoder_posterior
        else:
            raise NotImplementedError(f"encoder_posterior of type {type(encoder_posterior).__name__!r} not supported")
        return self.scale_factor * z
