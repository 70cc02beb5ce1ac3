"""The ldm/sgm-shaped views of a loaded diffusers model (A1111's module tree, shared weights).

One view per diffusers module, kept on that module itself (not in a global): the UNet's view is
what generation calls and what `shared.sd_model.model.diffusion_model` returns, so an extension's
replaced forward or patched submodule takes effect in generation. The views own no parameters.
"""

from __future__ import annotations

from typing import Any

import torch

from ldm.models.autoencoder import AutoencoderKL
from ldm.modules.diffusionmodules.openaimodel import UNetModel
from sgm.modules.diffusionmodules.openaimodel import UNetModel as SdxlUNetModel

_UNET_VIEW = "_ldm_diffusion_model"
_VAE_VIEW = "_ldm_first_stage_model"
_SD_MODEL = "_ldm_sd_model"  # the A1111 model object (LatentDiffusion) built over this UNet


def diffusion_model_of(unet: torch.nn.Module) -> UNetModel:
    """ldm's UNetModel (sgm's for SDXL) over `unet`; the same object on every call."""
    view = unet.__dict__.get(_UNET_VIEW)
    if view is None:
        sdxl = getattr(unet, "add_embedding", None) is not None
        view = (SdxlUNetModel if sdxl else UNetModel)(unet)
        view.register_forward_pre_hook(_model_offload_hook(unet), with_kwargs=True)
        unet.__dict__[_UNET_VIEW] = view  # outside the module tree: no parameter is listed twice
    return view


def first_stage_of(vae: torch.nn.Module) -> AutoencoderKL:
    """ldm's AutoencoderKL over the diffusers VAE `vae`; the same object on every call."""
    view = vae.__dict__.get(_VAE_VIEW)
    if view is None:
        view = AutoencoderKL(vae)
        for part in (view.encoder, view.decoder):
            part.register_forward_pre_hook(_model_offload_hook(vae), with_kwargs=True)
        vae.__dict__[_VAE_VIEW] = view
    return view


def _model_offload_hook(module: torch.nn.Module) -> Any:
    """Under diffusers' model CPU offload (--medvram) the accelerate hook sits on the diffusers
    module's forward, which the view does not call: run its pre-forward (move onto the GPU,
    offload the previous component) before the view computes."""

    def hook(_view: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        offload = module.__dict__.get("_hf_hook")
        if offload is None:
            return None
        return offload.pre_forward(module, *args, **kwargs)  # also moves the inputs to the GPU

    return hook


def is_diffusers_unet(module: Any) -> bool:
    """A diffusers UNet2DConditionModel (which has an ldm-shaped view), by its parts."""
    return hasattr(module, "down_blocks") and hasattr(module, "time_embedding") and hasattr(module, "mid_block")


def called_unet(unet: torch.nn.Module) -> torch.nn.Module:
    """The module generation calls for `unet`: its ldm-shaped view (anything else: itself)."""
    return diffusion_model_of(unet) if is_diffusers_unet(unet) else unet


def attached_sd_model(unet: torch.nn.Module) -> Any:
    """The A1111 model object kept on `unet` (None until something asked for shared.sd_model)."""
    return unet.__dict__.get(_SD_MODEL)


def attach_sd_model(unet: torch.nn.Module, sd_model: Any) -> None:
    unet.__dict__[_SD_MODEL] = sd_model


def call_unet(
    unet: torch.nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    context: torch.Tensor,
    *,
    pooled: torch.Tensor | None = None,
    time_ids: torch.Tensor | None = None,
    image_cond: torch.Tensor | None = None,
    control: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """One UNet call as A1111 makes it: through `sd_model.apply_model` when an extension replaced
    it on the model object (Tiled Diffusion's Mixture of Diffusers does), else straight into
    `model.diffusion_model` (the ldm-shaped view: whatever is patched there takes effect).
    `control`: ControlNet residuals (ldm's ControlledUnetModel list), added to the skips."""
    view = diffusion_model_of(unet)
    y = None if pooled is None or time_ids is None else view.size_vector(pooled, time_ids)
    sd_model = attached_sd_model(unet)
    replaced = None if sd_model is None else vars(sd_model).get("apply_model")
    if replaced is not None:
        cond: dict[str, Any] = {"c_crossattn": [context]} if y is None else {"crossattn": context, "vector": y}
        if image_cond is not None:
            cond["c_concat"] = [image_cond]
        elif y is None:  # A1111's txt2img placeholder (Tiled Diffusion reads it); ldm skips it
            cond["c_concat"] = [x.new_zeros(x.shape[0], 5, 1, 1)]
        return replaced(x, t, cond=cond)
    if image_cond is not None:
        x = torch.cat([x, image_cond], dim=1)
    if control is not None:
        return view(x, t, context, y=y, control=control)
    return view(x, t, context, y=y)
