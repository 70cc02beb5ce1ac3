"""txt2img for one batch: first pass, then the optional hires-fix second pass."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from PIL import Image

from modules.core.jobs import JobControl
from modules.generation.hires_size import HiresSize, checked_hires_size
from modules.generation.latents import (
    LATENT_UPSCALE_MODES,
    encode,
    pil_to_tensor,
    tensor_to_pil,
    upscale_latent,
)
from modules.generation.passes import PassSpec, run_pass
from modules.generation.processing import Processing
from modules.generation.speed import SpeedSettings, speed_patches
from modules.generation.vae_checked import decode_checked
from modules.models.manager import LoadedModel, ModelManager

# "None" is A1111's no-model upscaler: the image is only resized (Lanczos) to the target size
BUILTIN_IMAGE_UPSCALERS = {
    "None": Image.Resampling.LANCZOS,
    "Lanczos": Image.Resampling.LANCZOS,
    "Nearest": Image.Resampling.NEAREST,
}
USE_SAME = ("", "Use same sampler", "Use same scheduler", "Use same checkpoint")


def check_hires_target(p: Processing) -> HiresSize:
    """The job's hires sizes (the same function the request limits check), refusing too small ones."""
    return checked_hires_size(p.width, p.height, p.hr_scale, p.hr_resize_x, p.hr_resize_y)


def record_hires_params(p: Processing) -> None:
    """Infotext keys for hires fix, in A1111's order (extra_generation_params)."""
    if p.hr_resize_x == 0 and p.hr_resize_y == 0:
        p.extra_generation_params["Hires upscale"] = p.hr_scale
    else:
        p.extra_generation_params["Hires resize"] = f"{p.hr_resize_x}x{p.hr_resize_y}"
    if p.hr_second_pass_steps:
        p.extra_generation_params["Hires steps"] = p.hr_second_pass_steps
    if p.hr_upscaler is not None:
        p.extra_generation_params["Hires upscaler"] = p.hr_upscaler
    if p.hr_prompt and p.hr_prompt != p.prompt:
        p.extra_generation_params["Hires prompt"] = p.hr_prompt
    if p.hr_negative_prompt and p.hr_negative_prompt != p.negative_prompt:
        p.extra_generation_params["Hires negative prompt"] = p.hr_negative_prompt
    if p.hr_sampler_name not in (None, *USE_SAME) and p.hr_sampler_name != p.sampler_name:
        p.extra_generation_params["Hires sampler"] = p.hr_sampler_name
    if p.hr_scheduler not in (None, *USE_SAME) and p.hr_scheduler != p.scheduler:
        p.extra_generation_params["Hires schedule type"] = p.hr_scheduler
    if p.hr_checkpoint_name not in (None, *USE_SAME):
        p.extra_generation_params["Hires checkpoint"] = p.hr_checkpoint_name


def refiner_of(p: Processing) -> tuple[str, float] | None:
    """(checkpoint, switch_at) when the request asks for a refiner that switches before the end."""
    name = p.refiner_checkpoint
    if not name or name in ("None", *USE_SAME) or p.refiner_switch_at is None or p.refiner_switch_at >= 1.0:
        return None
    return name, float(p.refiner_switch_at)


def txt2img_batch(
    p: Processing,
    model: LoadedModel,
    control: JobControl,
    n: int,
    preview_every: int,
    models: ModelManager,
    networks: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """`networks`: the batch's extra-network data (A1111 hires activates them again)."""
    first = PassSpec(
        steps=p.steps,
        width=p.width,
        height=p.height,
        prompts=p.prompts,
        negative_prompts=p.negative_prompts,
        sampler_name=p.sampler_name,
        scheduler=p.scheduler,
        image_cond=_txt2img_image_cond(model, len(p.seeds), p.width, p.height),
        refiner=refiner_of(p),
    )
    latents = run_pass(model, p, first, control, preview_every=preview_every, models=models)
    if not p.enable_hr or control.interrupted.is_set() or control.skipped.is_set():
        return latents  # stopped during the first pass: A1111 returns it without the hires pass
    if n == 0:
        record_hires_params(p)
    return _hires_pass(p, model, latents, control, n, preview_every, models, networks)


def _hires_pass(
    p: Processing,
    model: LoadedModel,
    latents: torch.Tensor,
    control: JobControl,
    n: int,
    preview_every: int,
    models: ModelManager,
    networks: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    size = check_hires_target(p)
    hr_latent = _upscaled_latent(p, models, model, latents, size)
    denoising = float(p.denoising_strength if p.denoising_strength is not None else 0.7)
    p.is_hr_pass = True
    _before_hires_sampling(p, n, networks)
    try:
        if denoising <= 0:
            # A1111 samples zero steps without noise here (its CI sends this shape): the upscale is the result
            return hr_latent
        # another hires checkpoint is pinned for this job only; the active model stays for other jobs
        hr_model_ctx: AbstractContextManager[LoadedModel] = (
            models.use(str(p.hr_checkpoint_name)) if _other_checkpoint(p) else nullcontext(model)
        )
        with hr_model_ctx as hr_model:
            second = _second_pass_spec(p, hr_model, hr_latent, size, n, denoising)
            with speed_patches(hr_model, SpeedSettings.for_job(p, hires=True)):  # token merging ratio hr
                return run_pass(hr_model, p, second, control, preview_every=preview_every)
    finally:
        p.is_hr_pass = False


def _other_checkpoint(p: Processing) -> bool:
    return p.hr_checkpoint_name not in (None, *USE_SAME)


def _upscaled_latent(
    p: Processing, models: ModelManager, model: LoadedModel, latents: torch.Tensor, size: HiresSize
) -> torch.Tensor:
    """The first pass upscaled to the hires size (latent or image upscaler), cropped to the box."""
    upscaler = p.hr_upscaler or "Latent"
    if upscaler in LATENT_UPSCALE_MODES:
        hr_latent = upscale_latent(latents, upscaler, size.upscale_h, size.upscale_w)
    else:
        images = tensor_to_pil(decode_checked(p, models, model, latents))  # NaN check + fp32 fallback
        images = [_upscale_image(img, upscaler, size.upscale_w, size.upscale_h) for img in images]
        hr_latent = encode(model.vae, pil_to_tensor(images))
    if size.crops:
        top, left = (size.upscale_h - size.final_h) // 16, (size.upscale_w - size.final_w) // 16
        hr_latent = hr_latent[:, :, top : top + size.final_h // 8, left : left + size.final_w // 8]
    return hr_latent


def _second_pass_spec(
    p: Processing, hr_model: LoadedModel, hr_latent: torch.Tensor, size: HiresSize, n: int, denoising: float
) -> PassSpec:
    start, end = n * p.batch_size, (n + 1) * p.batch_size
    hr_steps = p.hr_second_pass_steps or p.steps
    return PassSpec(
        steps=hr_steps,
        hires_steps=hr_steps,
        requested_steps=hr_steps,
        width=size.final_w,
        height=size.final_h,
        prompts=p.all_hr_prompts[start:end] or p.prompts,
        negative_prompts=p.all_hr_negative_prompts[start:end] or p.negative_prompts,
        sampler_name=p.sampler_name if p.hr_sampler_name in (None, *USE_SAME) else str(p.hr_sampler_name),
        scheduler=p.scheduler if p.hr_scheduler in (None, *USE_SAME) else str(p.hr_scheduler),
        init_latent=hr_latent,
        denoising_strength=denoising,
        image_cond=_txt2img_image_cond(hr_model, len(p.seeds), size.final_w, size.final_h),
    )


def _before_hires_sampling(p: Processing, n: int, networks: Mapping[str, Any] | None) -> None:
    """A1111 sample_hr_pass: extra networks activate again (after_extra_networks_activate), then before_hr."""
    hooks = p.scripts
    if hooks is None:
        return
    if not p.disable_extra_networks:
        hooks.after_extra_networks_activate(
            p,
            batch_number=n,
            prompts=p.prompts,
            seeds=p.seeds,
            subseeds=p.subseeds,
            extra_network_data=dict(networks or {}),
        )
    hooks.before_hr(p)


def _upscale_image(image: Image.Image, name: str, width: int, height: int) -> Image.Image:
    if name in BUILTIN_IMAGE_UPSCALERS:
        return image.resize((width, height), BUILTIN_IMAGE_UPSCALERS[name])
    valid = list(LATENT_UPSCALE_MODES) + list(BUILTIN_IMAGE_UPSCALERS)
    raise ValueError(f"unknown hires upscaler {name!r}; valid: {valid}")


def _txt2img_image_cond(model: LoadedModel, batch: int, width: int, height: int) -> torch.Tensor | None:
    """Inpainting UNets in txt2img: mask all ones + the latent of a mid-grey image (A1111)."""
    if not model.is_inpaint:
        return None
    grey = torch.zeros(1, 3, height, width)  # 0 in [-1, 1] pixel space = mid grey
    latent = encode(model.vae, grey)
    mask = torch.ones(1, 1, height // 8, width // 8)
    return torch.cat([mask, latent], dim=1).repeat(batch, 1, 1, 1)
