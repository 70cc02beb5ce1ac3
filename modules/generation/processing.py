"""The job object extensions know as `p`, and the result object (`Processed`).

`Processing` carries the request values plus everything A1111 scripts read or write during a
job (all_prompts, all_seeds, extra_generation_params, per-batch prompts/seeds, ...). It is built
per job by the generation engine and never shared between jobs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from modules.core.devices import NanCheck
from modules.core.options import OptionsView
from modules.generation.hooks import ScriptHooks

VERSION = "v1.10.1"  # the A1111 version whose behaviour we follow, written to infotext "Version"


@dataclass
class Processing:
    kind: str  # "txt2img" | "img2img"
    opts: OptionsView
    prompt: str
    negative_prompt: str
    styles: list[str]
    seed: int
    subseed: int
    subseed_strength: float
    seed_resize_from_h: int
    seed_resize_from_w: int
    sampler_name: str
    scheduler: str
    batch_size: int
    n_iter: int
    steps: int
    cfg_scale: float
    width: int
    height: int
    tiling: bool
    eta: float | None
    denoising_strength: float | None
    s_min_uncond: float
    s_churn: float
    s_tmin: float
    s_tmax: float
    s_noise: float
    override_settings: dict[str, Any]
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    user: str | None = None
    is_api: bool = False
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    restore_faces: bool = False  # request field, else the face_restoration setting
    face_restoration_model: str | None = None  # the restorer used (set when the job starts)
    # txt2img
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    # img2img
    init_images: list[Image.Image] = field(default_factory=list)
    resize_mode: int = 0
    image_mask: Image.Image | None = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float = 1.0
    image_cfg_scale: float | None = None
    latent_mask: Image.Image | None = None  # A1111: the mask sampling uses, when it differs from image_mask
    # "img2img alternative test": (model, p, pass spec, control, seed noise, first sigma) -> start noise
    find_noise: Any = None
    # filled during the job
    all_prompts: list[str] = field(default_factory=list)
    all_negative_prompts: list[str] = field(default_factory=list)
    all_hr_prompts: list[str] = field(default_factory=list)
    all_hr_negative_prompts: list[str] = field(default_factory=list)
    all_seeds: list[int] = field(default_factory=list)
    all_subseeds: list[int] = field(default_factory=list)
    main_prompt: str = ""
    main_negative_prompt: str = ""
    extra_generation_params: dict[str, Any] = field(default_factory=dict)
    iteration: int = 0
    batch_index: int = 0
    prompts: list[str] = field(default_factory=list)
    negative_prompts: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    subseeds: list[int] = field(default_factory=list)
    sd_model_name: str = ""
    sd_model_hash: str | None = None
    sd_vae_name: str | None = None
    sd_vae_hash: str | None = None
    is_hr_pass: bool = False
    job_timestamp: str = ""
    comments: dict[str, Any] = field(default_factory=dict)
    scripts: ScriptHooks | None = None  # the job's hooks (A1111's p.scripts); None: the service's default
    preview_decoder: Any = None  # live preview (modules.generation.preview); set by the engine per job
    script_args: list[Any] = field(default_factory=list)
    embedding_lookup: Any = None  # textual-inversion lookup for the job's model (networks)
    embeddings_used: set[str] = field(default_factory=set)  # names, for "TI hashes"
    nan_check: NanCheck = field(default_factory=NanCheck)  # the device policy's, set by the engine per job
    unet_residuals: Any = None  # a generation.unet_residuals.UNetResiduals (ControlNet), set by its script
    rng: Any = None  # A1111's p.rng: the ImageRNG of the sampling pass (set by passes.run_pass)

    @property
    def clip_skip(self) -> int:
        return int(self.opts["CLIP_stop_at_last_layers"])

    @property
    def mask_blur(self) -> int:
        """A1111's p.mask_blur: both directions (scripts set it, e.g. the outpainting ones)."""
        return self.mask_blur_x

    @mask_blur.setter
    def mask_blur(self, value: int) -> None:
        self.mask_blur_x = self.mask_blur_y = int(value)

    def close(self) -> None:
        """A1111's p.close() (scripts call it after a nested job, e.g. adetailer): A1111 frees its
        cached conditionings and sampler there; the pipeline keeps none on `p`, so nothing to free."""


@dataclass
class GenerationResult:
    """A1111's `Processed`: images (grid first when one was made), one infotext per image."""

    images: list[Image.Image]
    infotexts: list[str]
    p: Processing
    index_of_first_image: int = 0
    saved_paths: list[str] = field(default_factory=list)
    interrupted: bool = False
    comments: str = ""

    @property
    def info(self) -> str:
        return self.infotexts[self.index_of_first_image] if self.infotexts else ""

    def js(self) -> dict[str, Any]:
        """The `info` JSON the A1111 API returns (Processed.js())."""
        p = self.p
        first_seed = p.all_seeds[0] if p.all_seeds else p.seed
        first_subseed = p.all_subseeds[0] if p.all_subseeds else p.subseed
        return {
            "prompt": p.all_prompts[0] if p.all_prompts else p.prompt,
            "all_prompts": p.all_prompts,
            "negative_prompt": p.all_negative_prompts[0] if p.all_negative_prompts else p.negative_prompt,
            "all_negative_prompts": p.all_negative_prompts,
            "seed": first_seed,
            "all_seeds": p.all_seeds,
            "subseed": first_subseed,
            "all_subseeds": p.all_subseeds,
            "subseed_strength": p.subseed_strength,
            "width": p.width,
            "height": p.height,
            "sampler_name": p.sampler_name,
            "cfg_scale": p.cfg_scale,
            "steps": p.steps,
            "batch_size": p.batch_size,
            "restore_faces": p.restore_faces,
            "face_restoration_model": p.face_restoration_model,
            "sd_model_name": p.sd_model_name,
            "sd_model_hash": p.sd_model_hash,
            "sd_vae_name": p.sd_vae_name,
            "sd_vae_hash": p.sd_vae_hash,
            "seed_resize_from_w": p.seed_resize_from_w,
            "seed_resize_from_h": p.seed_resize_from_h,
            "denoising_strength": p.denoising_strength,
            "extra_generation_params": {k: v for k, v in p.extra_generation_params.items() if not callable(v)},
            "index_of_first_image": self.index_of_first_image,
            "infotexts": self.infotexts,
            "styles": p.styles,
            "job_timestamp": p.job_timestamp,
            "clip_skip": p.clip_skip,
            "is_using_inpainting_conditioning": p.kind == "img2img" and bool(p.comments.get("inpaint_model")),
            "version": VERSION,
            # what the UI shows under the images (e.g. "saving failed"): API clients see it too
            "comments": "; ".join(str(v) for v in p.comments.values() if isinstance(v, str)),
        }

    def info_json(self) -> str:
        return json.dumps(self.js(), ensure_ascii=False)
