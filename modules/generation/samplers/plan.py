"""Schedules per sampler and the starting latents of txt2img and img2img, as A1111 computes them."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from modules.generation.samplers import timesteps as ts
from modules.generation.samplers.common import SamplerParams
from modules.generation.samplers.registry import SamplerKind, SamplerSpec
from modules.generation.samplers.schedules import (
    AUTOMATIC,
    ModelSigmas,
    ScheduleOptions,
    SchedulerSpec,
    SigmaSchedule,
    find_scheduler,
    scheduler_sigmas,
)


def model_sigmas_for(alphas_cumprod: torch.Tensor, spec: SamplerSpec, quantize: bool = False) -> ModelSigmas:
    """The noise-level table `spec`'s denoiser uses (LCM: LcmSigmas); its sigma_to_t and
    finish_denoised are what the denoiser wrapper needs. quantize: A1111's enable_quantization."""
    return spec.model_sigmas(ModelSigmas.from_alphas_cumprod(alphas_cumprod, quantize=quantize))


_CHURN_DEFAULTS = {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": math.inf, "s_noise": 1.0}


def sampler_params_from_settings(
    spec: SamplerSpec,
    opts: Mapping[str, Any],
    *,
    eta: float | None = None,
    s_churn: float | None = None,
    s_tmin: float | None = None,
    s_tmax: float | None = None,
    s_noise: float | None = None,
) -> SamplerParams:
    """SamplerParams as A1111 1.10 combines request values and settings.

    eta: the request's, else setting eta_ddim (DDIM family) or eta_ancestral. s_churn/s_tmin/s_tmax/
    s_noise: a setting that differs from its default wins over the request (Sampler.initialize reads
    the settings last); otherwise the request value, else the setting. s_tmax 0 means infinity.
    UniPC settings: uni_pc_order, uni_pc_variant, uni_pc_skip_type, uni_pc_lower_order_final.
    """
    eta_key = "eta_ddim" if spec.eta_infotext_field == "Eta DDIM" else "eta_ancestral"
    requested = {"s_churn": s_churn, "s_tmin": s_tmin, "s_tmax": s_tmax, "s_noise": s_noise}
    churn: dict[str, float] = {}
    for key, default in _CHURN_DEFAULTS.items():
        setting = float(opts.get(key, default) or (math.inf if key == "s_tmax" else 0.0))
        request = requested[key]
        if setting != default or request is None:
            churn[key] = setting
        else:
            churn[key] = float(request) or (math.inf if key == "s_tmax" else 0.0)
    return SamplerParams(
        eta=float(eta) if eta is not None else float(opts.get(eta_key, spec.default_eta)),
        unipc_order=int(opts.get("uni_pc_order", 3)),
        unipc_variant=str(opts.get("uni_pc_variant", "bh1")),
        unipc_skip_type=str(opts.get("uni_pc_skip_type", "time_uniform")),
        unipc_lower_order_final=bool(opts.get("uni_pc_lower_order_final", True)),
        **churn,
    )


def build_sigmas(
    spec: SamplerSpec,
    scheduler: SchedulerSpec,
    steps: int,
    model_sigmas: ModelSigmas,
    options: ScheduleOptions | None = None,
    params: SamplerParams | None = None,
) -> SigmaSchedule:
    """The schedule A1111 runs `spec` on for `steps` steps: KDiffusionSampler.get_sigmas (Automatic ->
    the sampler's default type, discard penultimate sigma), CompVisSampler.get_timesteps for
    DDIM/PLMS/UniPC (schedule type ignored), the LCM denoiser's own table for LCM."""
    options = options or ScheduleOptions()
    params = params or SamplerParams()
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    discard = spec.discard_next_to_last_sigma or options.always_discard_next_to_last_sigma
    extra: dict[str, object] = {}
    if options.always_discard_next_to_last_sigma and not spec.discard_next_to_last_sigma:
        extra["Discard penultimate sigma"] = True
    total = steps + (1 if discard else 0)
    if spec.kind == SamplerKind.TIMESTEPS:
        # A1111 adds the step for "discard" but never drops a timestep here
        timesteps = ts.ddim_timesteps(total, len(model_sigmas.sigmas))
        if spec.algorithm == "unipc":
            sigmas = ts.unipc_sigmas(model_sigmas, len(timesteps), params.unipc_skip_type)
        else:
            sigmas = ts.timestep_sigmas(model_sigmas, timesteps)
        return SigmaSchedule(sigmas, scheduler, extra)
    resolved = scheduler
    if scheduler.name == AUTOMATIC.name and spec.default_scheduler is not None:
        resolved = find_scheduler(spec.default_scheduler)
    schedule = scheduler_sigmas(resolved, total, spec.model_sigmas(model_sigmas), options)
    sigmas = schedule.sigmas
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return SigmaSchedule(sigmas, resolved, {**schedule.extra_generation_params, **extra})


def txt2img_latent(
    spec: SamplerSpec, noise: torch.Tensor, sigmas: torch.Tensor, *, sgm_noise_multiplier: bool = False
) -> torch.Tensor:
    """Initial latent from unit noise: noise * sigma_0, or noise * sqrt(1 + sigma_0^2) with the SGM
    noise multiplier. DDIM/PLMS/UniPC start from A1111's pure-noise x_vp, which is the latter too."""
    sigma_max = torch.as_tensor(sigmas[0], dtype=noise.dtype, device=noise.device)
    if sgm_noise_multiplier or spec.kind == SamplerKind.TIMESTEPS:
        return noise * torch.sqrt(1.0 + sigma_max**2)
    return noise * sigma_max


@dataclass(frozen=True)
class Img2ImgSteps:
    """steps: length of the full schedule; t_enc: how many of its last steps img2img runs (+1)."""

    steps: int
    t_enc: int


def img2img_steps(
    steps: int, denoising_strength: float, *, fix_steps: bool = False, requested_steps: int | None = None
) -> Img2ImgSteps:
    """A1111 setup_img2img_steps: t_enc = int(min(strength, 0.999) * steps); with fix_steps (setting
    img2img_fix_steps) or explicit requested_steps (hires pass), the schedule is stretched so exactly
    `requested` steps run."""
    if not 0 <= denoising_strength <= 1:
        raise ValueError(f"denoising_strength must be in [0, 1], got {denoising_strength}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if fix_steps or requested_steps is not None:
        requested = requested_steps or steps
        full = int(requested / min(denoising_strength, 0.999)) if denoising_strength > 0 else 0
        return Img2ImgSteps(steps=full, t_enc=requested - 1)
    return Img2ImgSteps(steps=steps, t_enc=int(min(denoising_strength, 0.999) * steps))


@dataclass(frozen=True)
class Img2ImgStart:
    """latent: what `sample` starts from; sigmas: the schedule tail to pass to `sample`;
    full_sigmas: the whole schedule (pass as brownian_sigmas)."""

    latent: torch.Tensor
    sigmas: torch.Tensor
    full_sigmas: torch.Tensor
    steps: int
    t_enc: int
    extra_generation_params: dict[str, object] = field(default_factory=dict)


def img2img_start(
    spec: SamplerSpec,
    scheduler: SchedulerSpec,
    *,
    plan: Img2ImgSteps,
    model_sigmas: ModelSigmas,
    init_latent: torch.Tensor,
    noise: torch.Tensor,
    options: ScheduleOptions | None = None,
    params: SamplerParams | None = None,
    initial_noise_multiplier: float = 1.0,
    extra_noise: float = 0.0,
    extra_noise_hook: ExtraNoiseHook | None = None,
) -> Img2ImgStart:
    """A1111 img2img start: noise *= initial_noise_multiplier; full schedule for plan.steps;
    sigmas = full[steps - t_enc - 1:]; latent = init + noise * sigmas[0] (+ noise * extra_noise,
    setting img2img_extra_noise). The SGM noise multiplier does not apply to img2img in A1111.
    DDIM/PLMS/UniPC use A1111's timesteps rule (see `_timesteps_start`)."""
    if init_latent.shape != noise.shape:
        raise ValueError(f"init_latent {tuple(init_latent.shape)} and noise {tuple(noise.shape)} differ in shape")
    if plan.steps < 1 or not 0 <= plan.t_enc < plan.steps:
        raise ValueError(f"img2img needs steps >= 1 and 0 <= t_enc < steps, got {plan}")
    extra: dict[str, object] = {}
    if initial_noise_multiplier != 1.0:
        noise = noise * initial_noise_multiplier
        extra["Noise multiplier"] = initial_noise_multiplier
    if extra_noise > 0:
        extra["Extra noise"] = extra_noise
    if spec.kind == SamplerKind.TIMESTEPS:
        return _timesteps_start(
            spec,
            plan,
            model_sigmas,
            init_latent,
            noise,
            params or SamplerParams(),
            extra_noise,
            extra,
            extra_noise_hook,
        )
    schedule = build_sigmas(spec, scheduler, plan.steps, model_sigmas, options, params)
    full = schedule.sigmas
    tail = full[plan.steps - plan.t_enc - 1 :]
    latent = init_latent + noise * tail[0].to(noise)
    if extra_noise > 0:
        latent = latent + _extra(noise, init_latent, latent, extra_noise_hook) * extra_noise
    return Img2ImgStart(latent, tail, full, plan.steps, plan.t_enc, {**schedule.extra_generation_params, **extra})


# on_extra_noise (A1111): (noise, init latent, noised start latent) -> the noise to add again
ExtraNoiseHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _extra(
    noise: torch.Tensor, init_latent: torch.Tensor, latent: torch.Tensor, hook: ExtraNoiseHook | None
) -> torch.Tensor:
    return noise if hook is None else hook(noise, init_latent, latent)


def _timesteps_start(
    spec: SamplerSpec,
    plan: Img2ImgSteps,
    model_sigmas: ModelSigmas,
    init_latent: torch.Tensor,
    noise: torch.Tensor,
    params: SamplerParams,
    extra_noise: float,
    extra: dict[str, object],
    extra_noise_hook: ExtraNoiseHook | None = None,
) -> Img2ImgStart:
    """A1111 noises to timestep[t_enc] but starts sampling at timestep[t_enc - 1] with the same x_vp.
    In sigma space that is: noise to sigma(t_enc), then rescale x_vp's frame to the start sigma."""
    timesteps = ts.ddim_timesteps(plan.steps, len(model_sigmas.sigmas))
    enc_sigma = model_sigmas.sigmas[timesteps[plan.t_enc]]
    if spec.algorithm == "unipc" and plan.t_enc > 0:
        start_index = int(timesteps[plan.t_enc - 1])
        sigmas = ts.unipc_sigmas(model_sigmas, plan.t_enc, params.unipc_skip_type, start_index=start_index)
    else:
        sigmas = ts.timestep_sigmas(model_sigmas, timesteps[: max(plan.t_enc, 1)])
        if spec.algorithm == "unipc":
            sigmas = enc_sigma.reshape(1).float()
    latent = init_latent + noise * enc_sigma.to(noise)
    if extra_noise > 0:
        latent = latent + _extra(noise, init_latent, latent, extra_noise_hook) * extra_noise
    frame = torch.sqrt((1 + sigmas[0].double() ** 2) / (1 + enc_sigma.double() ** 2)).to(noise)
    full = ts.timestep_sigmas(model_sigmas, timesteps)
    return Img2ImgStart(latent * frame, sigmas, full, plan.steps, plan.t_enc, extra)
