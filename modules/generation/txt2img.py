"""txt2img for one batch: first pass, then the optional hires-fix second pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from PIL import Image

from modules.core.jobs import JobControl
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


def hires_target(p: Processing) -> tuple[int, int, int, int]:
    """(upscale_w, upscale_h, final_w, final_h) with A1111's resize-to rules, multiples of 8."""
    if p.hr_resize_x == 0 and p.hr_resize_y == 0:
        w, h = int(p.width * p.hr_scale), int(p.height * p.hr_scale)
        w, h = w - w % 8, h - h % 8
        return w, h, w, h
    if p.hr_resize_y == 0:
        w, h = p.hr_resize_x, p.hr_resize_x * p.height // p.width
    elif p.hr_resize_x == 0:
        w, h = p.hr_resize_y * p.width // p.height, p.hr_resize_y
    else:
        # cover the requested box keeping the aspect ratio, then crop to it
        if p.width / p.height < p.hr_resize_x / p.hr_resize_y:
            w, h = p.hr_resize_x, p.hr_resize_x * p.height // p.width
        else:
            w, h = p.hr_resize_y * p.width // p.height, p.hr_resize_y
        final_w, final_h = p.hr_resize_x - p.hr_resize_x % 8, p.hr_resize_y - p.hr_resize_y % 8
        return w - w % 8, h - h % 8, final_w, final_h
    w, h = w - w % 8, h - h % 8
    return w, h, w, h


def check_hires_target(p: Processing) -> tuple[int, int, int, int]:
    """hires_target, refusing sizes the latent grid cannot hold (clear error before any work)."""
    up_w, up_h, final_w, final_h = hires_target(p)
    if min(up_w, up_h, final_w, final_h) < 64:
        raise ValueError(
            f"hires fix target {final_w}x{final_h} is too small (at least 64x64): raise hr_scale or the resize size"
        )
    return up_w, up_h, final_w, final_h


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
    up_w, up_h, final_w, final_h = check_hires_target(p)
    upscaler = p.hr_upscaler or "Latent"
    if upscaler in LATENT_UPSCALE_MODES:
        hr_latent = upscale_latent(latents, upscaler, up_h, up_w)
    else:
        images = tensor_to_pil(decode_checked(p, models, model, latents))  # NaN check + fp32 fallback
        images = [_upscale_image(img, upscaler, up_w, up_h) for img in images]
        hr_latent = encode(model.vae, pil_to_tensor(images))
    if (final_w, final_h) != (up_w, up_h):
        top, left = (up_h - final_h) // 16, (up_w - final_w) // 16
        hr_latent = hr_latent[:, :, top : top + final_h // 8, left : left + final_w // 8]
    hr_model = model
    if p.hr_checkpoint_name not in (None, *USE_SAME):
        hr_model = models.load(str(p.hr_checkpoint_name))
    start, end = n * p.batch_size, (n + 1) * p.batch_size
    hr_steps = p.hr_second_pass_steps or p.steps
    second = PassSpec(
        steps=hr_steps,
        hires_steps=hr_steps,
        requested_steps=hr_steps,
        width=final_w,
        height=final_h,
        prompts=p.all_hr_prompts[start:end] or p.prompts,
        negative_prompts=p.all_hr_negative_prompts[start:end] or p.negative_prompts,
        sampler_name=p.sampler_name if p.hr_sampler_name in (None, *USE_SAME) else str(p.hr_sampler_name),
        scheduler=p.scheduler if p.hr_scheduler in (None, *USE_SAME) else str(p.hr_scheduler),
        init_latent=hr_latent,
        denoising_strength=float(p.denoising_strength if p.denoising_strength is not None else 0.7),
        image_cond=_txt2img_image_cond(hr_model, len(p.seeds), final_w, final_h),
    )
    p.is_hr_pass = True
    _before_hires_sampling(p, n, networks)
    try:
        with speed_patches(hr_model, SpeedSettings.for_job(p, hires=True)):  # token merging ratio hr
            return run_pass(hr_model, p, second, control, preview_every=preview_every)
    finally:
        p.is_hr_pass = False


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
