"""Where each component lives in a single-file checkpoint of each family."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modules.models.families import ModelFamily, is_sd2, is_sdxl

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PAD = "<|endoftext|>"  # OpenAI CLIP-L pads with the end token
OPENCLIP_PAD = "!"  # OpenCLIP pads with token id 0, which is "!"


@dataclass(frozen=True)
class TextSlot:
    """One text encoder of a family: its single-file prefix and layout, diffusers subfolder, tokenizer pad."""

    ldm_prefix: str
    layout: Literal["hf", "openclip"]
    subfolder: str
    with_projection: bool
    pad_token: str
    # SD2 files hold 24 OpenCLIP layers; diffusers (like A1111) uses the first 23
    drop_last_layer: bool = False


_SD1_TEXT = TextSlot("cond_stage_model.transformer.", "hf", "text_encoder", False, CLIP_PAD)
_SD2_TEXT = TextSlot("cond_stage_model.model.", "openclip", "text_encoder", False, OPENCLIP_PAD, drop_last_layer=True)
_XL_TEXT_L = TextSlot("conditioner.embedders.0.transformer.", "hf", "text_encoder", False, CLIP_PAD)
_XL_TEXT_G = TextSlot("conditioner.embedders.1.model.", "openclip", "text_encoder_2", True, OPENCLIP_PAD)
_REFINER_TEXT_G = TextSlot("conditioner.embedders.0.model.", "openclip", "text_encoder_2", True, OPENCLIP_PAD)


def text_slots(family: ModelFamily) -> tuple[TextSlot, ...]:
    if family == ModelFamily.SDXL_REFINER:
        return (_REFINER_TEXT_G,)
    if is_sdxl(family):
        return (_XL_TEXT_L, _XL_TEXT_G)
    if is_sd2(family):
        return (_SD2_TEXT,)
    return (_SD1_TEXT,)


# Keys real checkpoints carry that no diffusers component needs (training state, schedules, EMA copies).
IGNORED_PREFIXES = (
    "model_ema.",
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_",
    "log_one_minus_alphas_cumprod",
    "posterior_",
    "logvar",
    "lvlb_weights",
    "denoiser.",
    "first_stage_model.loss.",
    "cond_stage_model.transformer.text_model.embeddings.position_ids",
    "conditioner.embedders.0.transformer.text_model.embeddings.position_ids",
)
