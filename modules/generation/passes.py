"""One sampling pass over one batch: the numbered steps shared by txt2img, hires fix and img2img.

1. text conditioning for the pass (prompt schedules x the sampler's calls per step)
2. per-image noise from the image seeds (A1111 ImageRNG)
3. sigma schedule (full for txt2img; truncated by denoising strength for img2img/hires)
4. the CFG denoiser around the UNet (SDXL size ids, inpainting conditioning, masks)
5. the sampler loop, reporting progress and honouring interrupt/skip between steps

Extension points on the way (A1111's): on_extra_noise when img2img/hires adds extra noise,
Script.process_before_every_sampling before the sampler starts, and the per-step CFG callbacks
(see denoiser.DenoiserEvents), made only when an extension listens.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

import torch

from modules.core.jobs import JobControl, JobInterrupted, JobSkipped
from modules.generation import samplers
from modules.generation.conditioning import PromptConditioning, TextConditioner, build_prompt_conditioning
from modules.generation.denoiser import CFGDenoiser, DenoiserEvents, StepConds, UNetInputs
from modules.generation.hooks import CFGWrap, ExtraNoiseParams, ScriptHooks
from modules.generation.latents import cheap_preview
from modules.generation.processing import Processing
from modules.generation.refiner import RefinerSwitch
from modules.generation.rng import ImageRNG
from modules.generation.samplers.plan import ExtraNoiseHook
from modules.models.families import ModelFamily
from modules.models.manager import LoadedModel, ModelManager

REFINER_AESTHETIC = (6.0, 2.5)  # A1111 sdxl_refiner_high/low_aesthetic_score


@dataclass
class PassSpec:
    """What differs between the first pass, the hires pass and an img2img pass."""

    steps: int
    width: int
    height: int
    prompts: list[str]
    negative_prompts: list[str]
    sampler_name: str
    scheduler: str
    init_latent: torch.Tensor | None = None  # img2img / hires: start from this latent
    denoising_strength: float = 1.0
    image_cond: torch.Tensor | None = None
    mask: torch.Tensor | None = None  # 1 = keep init latent (latent resolution)
    hires_steps: int | None = None  # set for the hires pass: prompt editing uses its own range
    noise_multiplier: float = 1.0
    requested_steps: int | None = None  # hires pass: run exactly this many steps (A1111)
    refiner: tuple[str, float] | None = None  # (checkpoint, switch at fraction)


def conditioner_for(model: LoadedModel, p: Processing, *, embeddings: bool = True) -> TextConditioner:
    """`embeddings`: the job's textual-inversion lookup (made for the job's main model)."""
    return TextConditioner(
        model.tokenizers,
        model.text_encoders,
        family_is_sdxl=model.is_sdxl,
        is_refiner=model.is_refiner,
        family_is_sd2=model.family in (ModelFamily.SD2, ModelFamily.SD2_V, ModelFamily.SD2_INPAINT),
        clip_skip=p.clip_skip,
        emphasis=str(p.opts["emphasis"]),
        comma_padding_backtrack=int(p.opts["comma_padding_backtrack"]),
        embeddings=p.embedding_lookup if embeddings else None,
    )


def step_conds(conditioning: PromptConditioning, step: int) -> StepConds:
    """Flatten the conditioner's per-step output into rows for the CFG denoiser."""
    at = conditioning.at_step(step)
    owners: list[int] = []
    weights: list[float] = []
    for image, parts in enumerate(at.cond_weights):
        for _row, weight in parts:  # rows are numbered in this same order
            owners.append(image)
            weights.append(weight)
    return StepConds(at.cond.context, at.cond.pooled, owners, weights, at.uncond.context, at.uncond.pooled)


def _time_ids(model: LoadedModel, batch: int, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    if not model.is_sdxl:
        return None
    if model.is_refiner:
        pos = torch.tensor([height, width, 0, 0, REFINER_AESTHETIC[0]], dtype=torch.float32)
        neg = torch.tensor([height, width, 0, 0, REFINER_AESTHETIC[1]], dtype=torch.float32)
    else:
        pos = neg = torch.tensor([height, width, 0, 0, height, width], dtype=torch.float32)
    return pos.repeat(batch, 1), neg.repeat(batch, 1)


def run_pass(
    model: LoadedModel,
    p: Processing,
    spec: PassSpec,
    control: JobControl,
    *,
    preview_every: int = 0,
    models: ModelManager | None = None,
) -> torch.Tensor:
    """Sample one batch; returns the final latent [B, 4, h, w]."""
    wrap = p.scripts.cfg_wrap(p, spec.sampler_name) if p.scripts is not None else None
    sampler, schedule = samplers.resolve_sampler(wrap.sampler_name if wrap else spec.sampler_name, spec.scheduler)
    rng = p.rng if _unused(p.rng, p, spec) else batch_rng(p, spec.width, spec.height)
    p.rng = rng  # A1111's p.rng: the sampler draws from it (extensions may read or replace draws)
    model_sigmas = samplers.model_sigmas_for(model.alphas_cumprod, sampler)
    params = samplers.sampler_params_from_settings(
        sampler, p.opts, eta=p.eta, s_churn=p.s_churn, s_tmin=p.s_tmin, s_tmax=p.s_tmax, s_noise=p.s_noise
    )
    schedule_options = samplers.ScheduleOptions.from_settings(p.opts, model.is_sdxl)
    noise = rng.first()
    brownian: torch.Tensor | None = None
    sigma_range: tuple[float, float] | None = None
    if spec.init_latent is None:
        planned = samplers.build_sigmas(sampler, schedule, spec.steps, model_sigmas, schedule_options, params)
        sigmas = planned.sigmas
        x = samplers.txt2img_latent(sampler, noise, sigmas, sgm_noise_multiplier=bool(p.opts["sgm_noise_multiplier"]))
        sigma_range = (model_sigmas.sigma_min, model_sigmas.sigma_max)
        extra = dict(planned.extra_generation_params)
    else:
        steps_plan = samplers.img2img_steps(spec.steps, spec.denoising_strength, requested_steps=spec.requested_steps)
        if p.find_noise is not None:  # a script supplies the start noise (img2img alternative test)
            full = samplers.build_sigmas(sampler, schedule, steps_plan.steps, model_sigmas, schedule_options, params)
            noise = p.find_noise(model, p, spec, control, noise, float(full.sigmas[0]))
        start = samplers.img2img_start(
            sampler,
            schedule,
            plan=steps_plan,
            model_sigmas=model_sigmas,
            init_latent=spec.init_latent,
            noise=noise,
            options=schedule_options,
            params=params,
            initial_noise_multiplier=spec.noise_multiplier,
            extra_noise=float(p.opts.get("img2img_extra_noise", 0.0) or 0.0),
            extra_noise_hook=_extra_noise_hook(p.scripts, p),
        )
        x, sigmas, brownian = start.latent, start.sigmas, start.full_sigmas
        extra = dict(start.extra_generation_params)
    if not p.is_hr_pass:
        p.extra_generation_params.update(extra)
        p.extra_generation_params.update(sampler.infotext_params(params))
    total = len(sigmas) - 1
    events = DenoiserEvents.for_job(p.scripts, p)
    if events is not None:
        events.total_steps = total
    if wrap is not None:
        wrap.total_steps = total
    denoiser = denoiser_for(model, p, spec, sampler, control, events, wrap)
    denoiser.pass_sigmas = sigmas  # ControlNet guidance start/end are fractions of this pass
    refiner_switch: RefinerSwitch | None = None
    if spec.refiner is not None and models is not None:
        refiner_switch = _refiner_switch(models, spec, p, sampler, control, denoiser, model_sigmas, events, wrap)

    last: list[torch.Tensor | None] = [None]  # what an interrupt keeps: the latest denoised prediction

    def on_step(info: samplers.StepInfo) -> None:
        last[0] = info.denoised
        if events is not None:
            events.sampling_step = info.index  # A1111 state.sampling_step, set by the sampler callback
        control.set_step(min(info.index + 1, total), total)
        if preview_every > 0 and (info.index + 1) % preview_every == 0:
            latent = info.denoised[0]
            image = p.preview_decoder(latent) if p.preview_decoder else cheap_preview(latent.float(), model.is_sdxl)
            control.set_preview(image, size=(spec.width, spec.height))
        control.check()

    control.set_step(0, total)
    if p.scripts is not None:
        first = denoiser.conds_at(0)
        p.scripts.process_before_every_sampling(p, x=x, noise=noise, c=first.cond, uc=first.uncond)
    try:
        return samplers.sample(
            sampler,
            refiner_switch or denoiser,
            x,
            sigmas,
            noise=lambda: p.rng.next(),
            seeds=p.seeds,
            callback=on_step,
            params=params,
            brownian_sigmas=brownian,
            sigma_range=sigma_range,
        )
    except (JobInterrupted, JobSkipped):
        # A1111 keeps the work: what was made so far is decoded, saved and returned like a result
        # (stopped before a first step, nothing was made: no image of pure noise)
        kept = last[0]
        if kept is None:
            raise
        return kept
    finally:
        if refiner_switch is not None:
            refiner_switch.close()


def batch_rng(p: Processing, width: int, height: int) -> ImageRNG:
    """The per-image noise of this batch's images at a size (A1111's p.rng)."""
    return ImageRNG(
        (4, height // 8, width // 8),
        p.seeds,
        subseeds=p.subseeds,
        subseed_strength=p.subseed_strength,
        seed_resize_from_h=p.seed_resize_from_h,
        seed_resize_from_w=p.seed_resize_from_w,
        source=str(p.opts["randn_source"]),
        device="cpu",
        eta_noise_seed_delta=int(p.opts["eta_noise_seed_delta"]),
    )


def _unused(rng: object, p: Processing, spec: PassSpec) -> bool:
    """The batch's p.rng (made before before_process_batch, as A1111) is this pass's when it fits
    and nothing drew from it yet; hires and later passes make their own."""
    if not isinstance(rng, ImageRNG) or not rng.is_first or rng.seeds != [int(s) for s in p.seeds]:
        return False
    return rng.shape == (4, spec.height // 8, spec.width // 8)


def denoiser_for(
    model: LoadedModel,
    p: Processing,
    spec: PassSpec,
    sampler: samplers.SamplerSpec,
    control: JobControl,
    events: DenoiserEvents | None = None,
    wrap: CFGWrap | None = None,
) -> CFGDenoiser:
    """Text conditioning + CFG denoiser of one model for this pass."""
    conditioner = conditioner_for(model, p, embeddings=not model.is_refiner)
    p.embeddings_used.update(conditioner.embeddings_used([*spec.prompts, *spec.negative_prompts]))
    conditioning = build_prompt_conditioning(
        conditioner,
        spec.prompts,
        spec.negative_prompts,
        steps=sampler.total_steps(p.steps if spec.hires_steps is not None else spec.steps),
        hires_steps=None if spec.hires_steps is None else sampler.total_steps(spec.hires_steps),
        use_old_scheduling=bool(p.opts["use_old_scheduling"]),
    )
    model_sigmas = samplers.model_sigmas_for(model.alphas_cumprod, sampler)
    time_ids = _time_ids(model, len(p.seeds), spec.width, spec.height)
    return CFGDenoiser(
        unet=model.unet,
        prediction_type=model.prediction_type,
        sigma_to_t=model_sigmas.sigma_to_t,
        conds_at=lambda step: step_conds(conditioning, step),
        cfg_scale=p.cfg_scale * sampler.cfg_scale_multiplier,
        extra=UNetInputs(
            time_ids_cond=time_ids[0] if time_ids else None,
            time_ids_uncond=time_ids[1] if time_ids else None,
            image_cond=spec.image_cond if model.is_inpaint else None,
        ),
        control=control,
        s_min_uncond=p.s_min_uncond,
        batch_cond_uncond=bool(p.opts.get("batch_cond_uncond", True)),
        init_latent=spec.init_latent if spec.mask is not None else None,
        mask=spec.mask,
        nmask=None if spec.mask is None else 1.0 - spec.mask,
        finish=model_sigmas.finish_denoised,
        events=events,
        p=p,
        nan_check=p.nan_check,
        wrap=wrap,
        conditioning=conditioning,
        residuals=p.unet_residuals,
    )


def _refiner_switch(
    models: ModelManager,
    spec: PassSpec,
    p: Processing,
    sampler: samplers.SamplerSpec,
    control: JobControl,
    base: CFGDenoiser,
    model_sigmas: samplers.ModelSigmas,
    events: DenoiserEvents | None = None,
    wrap: CFGWrap | None = None,
) -> RefinerSwitch | None:
    assert spec.refiner is not None
    name, switch_at = spec.refiner
    info = models.find_checkpoint(name)  # unknown name -> ModelNotFound before sampling starts
    p.extra_generation_params["Refiner"] = info.short_title
    p.extra_generation_params["Refiner switch at"] = switch_at

    def make(stack: ExitStack) -> CFGDenoiser:
        refiner_model = stack.enter_context(models.use(info))
        return denoiser_for(refiner_model, p, spec, sampler, control, events, wrap)

    return RefinerSwitch(base, switch_at, model_sigmas.sigmas, make)


def _extra_noise_hook(hooks: ScriptHooks | None, p: Processing) -> ExtraNoiseHook | None:
    """on_extra_noise: callbacks see (noise, init latent, noised latent) and may replace the noise."""
    if hooks is None or not hooks.wants("extra_noise"):
        return None

    def hook(noise: torch.Tensor, x: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        params = ExtraNoiseParams(noise, x, xi)
        hooks.extra_noise(params, p)
        return params.noise

    return hook
