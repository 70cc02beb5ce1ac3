"""Typed generation requests shared by the HTTP API and the UI.

Field names and defaults are A1111's API fields (shared/reference/http-api.md §4). Unknown
fields are ignored as in A1111. Bounds here are hard sanity limits; per-deployment limits
(max pixels, max steps) are checked by the job queue against settings.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_SIDE = 8192  # pixels per side; a deployment may set lower limits
MAX_STEPS = 1000


class ScriptArgs(BaseModel):
    model_config = ConfigDict(extra="allow")
    args: list[Any] = Field(default_factory=list)


class GenerationRequest(BaseModel):
    """Fields common to txt2img and img2img."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = Field(0.0, ge=0.0, le=1.0)
    seed_resize_from_h: int = Field(-1, ge=-1, le=MAX_SIDE)
    seed_resize_from_w: int = Field(-1, ge=-1, le=MAX_SIDE)
    sampler_name: str | None = None
    sampler_index: str = "Euler"  # API-only legacy field: used when sampler_name is null
    scheduler: str | None = None
    batch_size: int = Field(1, ge=1, le=64)
    n_iter: int = Field(1, ge=1, le=1000)
    steps: int = Field(50, ge=1, le=MAX_STEPS)
    cfg_scale: float = Field(7.0, ge=0.0, le=100.0)
    width: int = Field(512, ge=8, le=MAX_SIDE)
    height: int = Field(512, ge=8, le=MAX_SIDE)
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = Field(None, ge=0.0, le=10.0)
    denoising_strength: float | None = Field(None, ge=0.0, le=1.0)
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = Field(None, ge=0.0, le=1.0)
    disable_extra_networks: bool = False
    firstpass_image: str | None = None
    comments: dict[str, Any] | None = None
    # API-only fields
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, ScriptArgs] = Field(default_factory=dict)
    force_task_id: str | None = None
    infotext: str | None = None

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        # A1111 silently floors to a multiple of 8 (latent grid); do the same, but never below 8.
        return max(8, value - value % 8)

    @property
    def effective_sampler_name(self) -> str:
        return self.sampler_name or self.sampler_index or "Euler"


class Txt2ImgRequest(GenerationRequest):
    enable_hr: bool = False
    denoising_strength: float | None = Field(0.75, ge=0.0, le=1.0)
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = Field(2.0, ge=0.05, le=8.0)
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = Field(0, ge=0, le=MAX_STEPS)
    hr_resize_x: int = Field(0, ge=0, le=MAX_SIDE)
    hr_resize_y: int = Field(0, ge=0, le=MAX_SIDE)
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""


class Img2ImgRequest(GenerationRequest):
    init_images: list[Any] = Field(default_factory=list)
    resize_mode: int = Field(0, ge=0, le=3)
    denoising_strength: float | None = Field(0.75, ge=0.0, le=1.0)
    image_cfg_scale: float | None = None
    mask: Any = None
    mask_blur_x: int = Field(4, ge=0, le=256)
    mask_blur_y: int = Field(4, ge=0, le=256)
    mask_blur: int | None = Field(None, ge=0, le=256)
    mask_round: bool = True
    inpainting_fill: int = Field(0, ge=0, le=3)
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = Field(0, ge=0, le=1024)
    inpainting_mask_invert: int = Field(0, ge=0, le=1)
    initial_noise_multiplier: float | None = Field(None, ge=0.0, le=2.0)
    latent_mask: Any = None
    include_init_images: bool = False

    @model_validator(mode="after")
    def _mask_blur_sets_both(self) -> Img2ImgRequest:
        if self.mask_blur is not None:
            self.mask_blur_x = self.mask_blur
            self.mask_blur_y = self.mask_blur
        return self


INPAINTING_FILL_NAMES = ("fill", "original", "latent noise", "latent nothing")
RESIZE_MODE_NAMES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
