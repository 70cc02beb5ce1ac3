"""img2img and inpainting: init images, masks, init latents and the final overlay (A1111 rules).

Prepared once per job (`prepare_img2img`), then every batch samples from the same init latents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from modules.core.jobs import JobControl
from modules.generation.hooks import MaskBlendArgs, PostProcessMaskOverlayArgs, ScriptHooks
from modules.generation.latents import encode, pil_to_tensor
from modules.generation.masking import (
    CropRegion,
    MaskError,
    blur_mask,
    check_mask,
    crop_region,
    expand_to_ratio,
    fill_masked,
    mask_to_l,
    overlay_original,
    resize_image,
)
from modules.generation.passes import PassSpec, run_pass
from modules.generation.processing import Processing
from modules.generation.rng import ImageRNG
from modules.generation.txt2img import refiner_of
from modules.models.manager import LoadedModel, ModelManager

MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")
INPAINT_AREA = ("Whole picture", "Only masked")
MASK_MODE = ("Inpaint masked", "Inpaint not masked")


@dataclass
class Img2ImgPlan:
    init_latent: torch.Tensor  # [B, 4, h, w]
    originals: list[Image.Image]  # full-size source images (for the overlay)
    mask_for_overlay: Image.Image | None = None
    region: CropRegion | None = None
    latent_mask: torch.Tensor | None = None  # 1 = keep init (A1111 p.mask)
    image_cond: torch.Tensor | None = None

    def composite(self, p: Processing, hooks: ScriptHooks, image: Image.Image, i: int) -> Image.Image:
        """A1111's postprocess_maskoverlay, then the paste of the result into the source image.

        Scripts may replace the overlay mask or the source image (None: no paste-back)."""
        original = self.originals[i % len(self.originals)] if self.mask_for_overlay is not None else None
        ppmo = PostProcessMaskOverlayArgs(i, self.mask_for_overlay, original)
        hooks.postprocess_maskoverlay(p, ppmo)
        if ppmo.mask_for_overlay is None or ppmo.overlay_image is None:
            return image
        return overlay_original(image, ppmo.overlay_image, ppmo.mask_for_overlay, self.region)


def _flatten(image: Image.Image, background: str) -> Image.Image:
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, background)
        base.alpha_composite(rgba)
        return base.convert("RGB")
    return image.convert("RGB")


def _prepare_mask(
    p: Processing, image: Image.Image
) -> tuple[Image.Image | None, Image.Image | None, CropRegion | None]:
    """-> (mask at generation size, mask for overlay at full size, crop region)."""
    if p.image_mask is None:
        return None, None, None
    mask = mask_to_l(p.image_mask)
    check_mask(image, mask)
    if p.mask_round:
        mask = mask.point(lambda v: 255 if v > 127 else 0)
    if p.inpainting_mask_invert:
        mask = ImageOps.invert(mask)
    mask = blur_mask(mask, p.mask_blur_x, p.mask_blur_y)
    if p.inpaint_full_res:
        region = crop_region(mask, p.inpaint_full_res_padding)
        if region is None:
            raise MaskError("the mask is empty: nothing to inpaint")
        region = expand_to_ratio(region, p.width, p.height, mask.width, mask.height)
        small = resize_image(2, mask.crop(region.box()), p.width, p.height)
        return small, mask, region
    small = resize_image(p.resize_mode, mask, p.width, p.height)
    # "Whole picture": A1111 overlays at the output's size (W/H), not the source's
    overlay = Image.fromarray(np.clip(np.asarray(small, dtype=np.float32) * 2, 0, 255).astype(np.uint8), "L")
    return small, overlay, None


def prepare_img2img(p: Processing, model: LoadedModel) -> Img2ImgPlan:
    background = str(p.opts["img2img_background_color"])
    originals = [_flatten(img, background) for img in p.init_images]
    if len(originals) > 1 and len(originals) > p.batch_size:
        raise ValueError(f"too many init images ({len(originals)}) for batch size {p.batch_size}")
    if len(originals) > 1:
        p.batch_size = len(originals)
    small_mask, overlay_mask, region = _prepare_mask(p, originals[0])
    if overlay_mask is not None and region is None and p.resize_mode != 3:
        originals = [resize_image(p.resize_mode, o, p.width, p.height) for o in originals]  # as the mask was
    if overlay_mask is not None:
        # an overlay needs the source at the overlay mask's size
        originals = [o if o.size == overlay_mask.size else o.resize(overlay_mask.size) for o in originals]
    prepared = []
    for image in originals:
        if region is not None:
            work = resize_image(2, image.crop(region.box()), p.width, p.height)
        elif p.resize_mode != 3:
            work = resize_image(p.resize_mode, image, p.width, p.height)
        else:
            work = image
        if small_mask is not None and p.inpainting_fill == 0:
            work = fill_masked(work, small_mask)
        prepared.append(work)
    if len(prepared) == 1:
        prepared = prepared * p.batch_size
    pixels = pil_to_tensor(prepared)
    init_latent = encode(model.vae, pixels)
    if p.resize_mode == 3 and region is None:
        init_latent = F.interpolate(init_latent, size=(p.height // 8, p.width // 8), mode="bilinear")
    plan = Img2ImgPlan(init_latent=init_latent, originals=originals, mask_for_overlay=overlay_mask, region=region)
    if small_mask is not None:
        sampling_mask = small_mask if p.latent_mask is None else mask_to_l(p.latent_mask)
        plan.latent_mask = _latent_keep_mask(sampling_mask, p)
        plan.init_latent = _apply_masked_content(p, plan.init_latent, plan.latent_mask)
    if model.is_inpaint:
        plan.image_cond = _inpaint_conditioning(model, pixels, small_mask, p)
    p.extra_generation_params.update(_inpaint_infotext(p) if small_mask is not None else {})
    return plan


def _latent_keep_mask(mask: Image.Image, p: Processing) -> torch.Tensor:
    small = np.asarray(mask.convert("L").resize((p.width // 8, p.height // 8)), dtype=np.float32) / 255.0
    if p.mask_round:
        small = np.around(small)
    generate = torch.from_numpy(small)[None, None].repeat(1, 4, 1, 1)
    return 1.0 - generate


def _apply_masked_content(p: Processing, latent: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    if p.inpainting_fill == 2:  # latent noise, from the images' seeds
        rng = ImageRNG(tuple(latent.shape[1:]), p.all_seeds[: latent.shape[0]], source=str(p.opts["randn_source"]))
        return latent * keep + rng.first() * (1.0 - keep)
    if p.inpainting_fill == 3:  # latent nothing
        return latent * keep
    return latent


def _inpaint_conditioning(
    model: LoadedModel, pixels: torch.Tensor, mask: Image.Image | None, p: Processing
) -> torch.Tensor:
    """[mask, latent of the masked source] for 9-channel UNets (A1111 inpainting conditioning)."""
    batch, _, height, width = pixels.shape
    if mask is None:
        cond_mask = torch.ones(1, 1, height, width)
    else:
        cond_mask = torch.from_numpy(np.asarray(mask.convert("L"), dtype=np.float32) / 255.0)[None, None]
        if p.mask_round:
            cond_mask = torch.round(cond_mask)
    weight = float(p.opts["inpainting_mask_weight"])
    masked = torch.lerp(pixels, pixels * (1.0 - cond_mask), weight)
    latent = encode(model.vae, masked)
    small = F.interpolate(cond_mask, size=latent.shape[-2:])
    return torch.cat([small.expand(batch, -1, -1, -1), latent], dim=1)


def _inpaint_infotext(p: Processing) -> dict[str, object]:
    params: dict[str, object] = (
        {"Mask blur": p.mask_blur_x}
        if p.mask_blur_x == p.mask_blur_y
        else {"Mask blur x": p.mask_blur_x, "Mask blur y": p.mask_blur_y}
    )
    params["Masked content"] = MASKED_CONTENT[p.inpainting_fill]
    params["Inpaint area"] = INPAINT_AREA[int(p.inpaint_full_res)]
    if p.inpaint_full_res:
        params["Masked area padding"] = p.inpaint_full_res_padding
    if p.inpainting_mask_invert:
        params["Mask mode"] = MASK_MODE[1]
    return params


def img2img_batch(
    p: Processing,
    model: LoadedModel,
    plan: Img2ImgPlan,
    control: JobControl,
    n: int,
    preview_every: int,
    models: ModelManager | None = None,
) -> torch.Tensor:
    count = len(p.seeds)
    spec = PassSpec(
        steps=p.steps,
        width=plan.init_latent.shape[-1] * 8,
        height=plan.init_latent.shape[-2] * 8,
        prompts=p.prompts,
        negative_prompts=p.negative_prompts,
        sampler_name=p.sampler_name,
        scheduler=p.scheduler,
        init_latent=plan.init_latent[:count],
        denoising_strength=float(p.denoising_strength if p.denoising_strength is not None else 0.75),
        image_cond=None if plan.image_cond is None else plan.image_cond[:count],
        mask=None if plan.latent_mask is None else plan.latent_mask.expand(count, -1, -1, -1),
        noise_multiplier=p.initial_noise_multiplier,
        refiner=refiner_of(p),
    )
    samples = run_pass(model, p, spec, control, preview_every=preview_every, models=models)
    if spec.mask is None or spec.init_latent is None:
        return samples
    return final_blend(p, samples, spec.init_latent, spec.mask)


def final_blend(p: Processing, samples: torch.Tensor, init_latent: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A1111 img2img: after sampling, masked-out areas get the init latent back; scripts'
    on_mask_blend (is_final_blend) may change the blend."""
    nmask = 1.0 - keep
    blended = samples * nmask + init_latent * keep
    if p.scripts is not None:
        mba = MaskBlendArgs(samples, nmask, init_latent, keep, blended)
        p.scripts.on_mask_blend(p, mba)
        blended = mba.blended_latent
    return blended
