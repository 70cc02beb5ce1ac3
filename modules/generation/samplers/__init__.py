"""Samplers under A1111's names: registry, name resolution, schedules per sampler, and `sample`.

Pure torch/numpy/scipy/torchsde; the model is reached only through `denoiser(x, sigma_batch) -> x0`
(k-diffusion convention, x in sigma space). Typical txt2img use:

    spec, scheduler = resolve_sampler("DPM++ 2M", "Karras")
    schedule = build_sigmas(spec, scheduler, steps, model_sigmas)
    rng = ImageRNG(latent_shape, seeds, ...)
    x = txt2img_latent(spec, rng.first(), schedule.sigmas)
    result = sample(spec, denoiser, x, schedule.sigmas, noise=rng.next, seeds=seeds)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from modules.generation.rng import BrownianTreeNoise
from modules.generation.samplers import kdiffusion as kd
from modules.generation.samplers import timesteps as ts
from modules.generation.samplers.common import (
    Denoiser,
    NoiseFn,
    SamplerParams,
    SamplingRun,
    StepCallback,
    StepInfo,
)
from modules.generation.samplers.dpm_solver import sample_dpm_adaptive, sample_dpm_fast
from modules.generation.samplers.plan import (
    Img2ImgStart,
    Img2ImgSteps,
    build_sigmas,
    img2img_start,
    img2img_steps,
    model_sigmas_for,
    sampler_params_from_settings,
    txt2img_latent,
)
from modules.generation.samplers.registry import (
    SAMPLERS,
    SamplerKind,
    SamplerSpec,
    UnknownSamplerError,
    find_sampler,
    sampler_names,
)
from modules.generation.samplers.schedules import (
    AUTOMATIC,
    SCHEDULERS,
    DenoiserScalings,
    LcmSigmas,
    ModelSigmas,
    ScheduleOptions,
    SchedulerSpec,
    SigmaSchedule,
    UnknownSchedulerError,
    denoiser_scalings,
    find_scheduler,
    scaled_linear_alphas_cumprod,
    scheduler_names,
    scheduler_sigmas,
)

__all__ = [
    "AUTOMATIC",
    "SAMPLERS",
    "SCHEDULERS",
    "DenoiserScalings",
    "Img2ImgStart",
    "Img2ImgSteps",
    "LcmSigmas",
    "ModelSigmas",
    "ResolvedSampler",
    "SamplerKind",
    "SamplerParams",
    "SamplerSpec",
    "ScheduleOptions",
    "SchedulerSpec",
    "SigmaSchedule",
    "StepInfo",
    "UnknownSamplerError",
    "UnknownSchedulerError",
    "build_sigmas",
    "denoiser_scalings",
    "ensd_applies",
    "find_sampler",
    "find_scheduler",
    "img2img_start",
    "img2img_steps",
    "model_sigmas_for",
    "resolve_sampler",
    "sample",
    "sampler_names",
    "sampler_params_from_settings",
    "scaled_linear_alphas_cumprod",
    "scheduler_names",
    "scheduler_sigmas",
    "txt2img_latent",
]


class ResolvedSampler(NamedTuple):
    sampler: SamplerSpec
    scheduler: SchedulerSpec


def resolve_sampler(
    name: str | None, scheduler: str | None = None, *, convert_automatic: bool = False
) -> ResolvedSampler:
    """Sampler and schedule type from user/API/infotext names (A1111 get_sampler_and_scheduler).

    Accepts labels, aliases (k_euler_a, ...), any letter case, and old combined names
    ("DPM++ 2M Karras" -> DPM++ 2M + Karras; the name's schedule wins over `scheduler`).
    None or "" selects the first sampler / Automatic. With convert_automatic, a schedule equal to
    the sampler's default is reported as Automatic (what A1111 shows after pasting an infotext).
    Unknown names raise UnknownSamplerError / UnknownSchedulerError listing the valid ones.
    """
    sampler_spec, suffix_scheduler = find_sampler(name)
    scheduler_spec = suffix_scheduler or find_scheduler(scheduler)
    if convert_automatic and sampler_spec.default_scheduler == scheduler_spec.name:
        scheduler_spec = AUTOMATIC
    return ResolvedSampler(sampler_spec, scheduler_spec)


def ensd_applies(spec: SamplerSpec, params: SamplerParams, eta_noise_seed_delta: int) -> bool:
    """Whether infotext carries "ENSD" (A1111 is_sampler_using_eta_noise_seed_delta)."""
    eta = spec.effective_eta(params)
    return bool(eta_noise_seed_delta) and eta != 0 and spec.uses_ensd


def _check_inputs(spec: SamplerSpec, x: torch.Tensor, sigmas: torch.Tensor, seeds: list[int]) -> None:
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"x must be a batch [B, ...] with B >= 1, got shape {tuple(x.shape)}")
    if sigmas.ndim != 1 or sigmas.numel() < 1:
        raise ValueError(f"sigmas must be a non-empty 1-D tensor, got shape {tuple(sigmas.shape)}")
    if not bool(torch.isfinite(sigmas).all()) or bool((sigmas < 0).any()):
        raise ValueError("sigmas must be finite and >= 0")
    if spec.kind == SamplerKind.TIMESTEPS and bool((sigmas <= 0).any()):
        raise ValueError(f"{spec.name} needs a timesteps schedule (all sigmas > 0): use build_sigmas")
    if spec.brownian_noise and len(seeds) != x.shape[0]:
        raise ValueError(f"{spec.name} needs one seed per image: got {len(seeds)} seeds for batch {x.shape[0]}")


def _brownian(x: torch.Tensor, sigmas: torch.Tensor, seeds: list[int]) -> BrownianTreeNoise | None:
    positive = sigmas[sigmas > 0]
    if positive.numel() == 0 or float(positive.min()) >= float(sigmas.max()):
        return None  # a single noise level: no SDE step can use the tree
    return BrownianTreeNoise(x, float(positive.min()), float(sigmas.max()), seeds)


def sample(
    spec: SamplerSpec,
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: NoiseFn,
    seeds: Sequence[int],
    callback: StepCallback | None = None,
    params: SamplerParams | None = None,
    brownian_sigmas: torch.Tensor | None = None,
    sigma_range: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Run `spec` from latent x (already scaled to sigmas[0]) down the schedule.

    noise() returns the next per-image noise shaped like x (ImageRNG.next); seeds are this batch's
    image seeds (Brownian trees of the SDE samplers). The callback may raise to interrupt; it is not
    caught. brownian_sigmas: the full schedule when `sigmas` is an img2img tail (A1111 spans the
    Brownian tree over the full schedule). sigma_range: (min, max) for DPM fast/adaptive; in txt2img
    A1111 gives them the model's range (ModelSigmas.sigma_min/max) whatever the schedule, in img2img
    the tail's ends (sigmas[-2], sigmas[0]), which is the default. DDIM/PLMS/UniPC return A1111's
    variance-preserving latent (see timesteps.py); the others return x at the last sigma.
    """
    params = params or SamplerParams()
    seeds = [int(s) for s in seeds]
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32).to(x.device)
    _check_inputs(spec, x, sigmas, seeds)
    allowed = set(spec.extra_params)
    defaults = SamplerParams()
    run = SamplingRun(
        model=denoiser,
        noise=noise,
        callback=callback,
        total=len(sigmas) - 1,
        eta=spec.effective_eta(params),
        s_churn=params.s_churn if "s_churn" in allowed else defaults.s_churn,
        s_tmin=params.s_tmin if "s_tmin" in allowed else defaults.s_tmin,
        s_tmax=params.s_tmax if "s_tmax" in allowed else defaults.s_tmax,
        s_noise=params.s_noise if "s_noise" in allowed else defaults.s_noise,
        params=params,
        uncond_source=denoiser,
    )
    if spec.brownian_noise:
        tree_sigmas = sigmas if brownian_sigmas is None else torch.as_tensor(brownian_sigmas, dtype=torch.float32)
        run.sde_noise = _brownian(x, tree_sigmas.to(x.device), seeds)
    if len(sigmas) < 2:
        return ts.vp_output(x, sigmas[-1]) if spec.kind == SamplerKind.TIMESTEPS else x
    with torch.no_grad():
        if spec.algorithm in ("dpm_fast", "dpm_adaptive"):
            return _run_dpm_solver(spec, run, x, sigmas, sigma_range)
        return _ALGORITHMS[spec.algorithm](run, x, sigmas)


def _run_dpm_solver(
    spec: SamplerSpec, run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor, sigma_range: tuple[float, float] | None
) -> torch.Tensor:
    """DPM fast/adaptive integrate between two sigmas (n = steps for fast) instead of walking the schedule."""
    low, high = sigma_range or (float(sigmas[-2]), float(sigmas[0]))
    if not 0 < low < high:
        raise ValueError(f"{spec.name} needs 0 < sigma_min < sigma_max, got {low} and {high}")
    if spec.algorithm == "dpm_fast":
        return sample_dpm_fast(run, x, low, high, len(sigmas) - 1)
    return sample_dpm_adaptive(run, x, low, high)


def _dpmpp_2m_sde_heun(run: SamplingRun, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    return kd.sample_dpmpp_2m_sde(run, x, sigmas, solver_type="heun")


_Algorithm = Callable[[SamplingRun, torch.Tensor, torch.Tensor], torch.Tensor]

_ALGORITHMS: dict[str, _Algorithm] = {
    "euler": kd.sample_euler,
    "euler_ancestral": kd.sample_euler_ancestral,
    "lms": kd.sample_lms,
    "heun": kd.sample_heun,
    "dpm_2": kd.sample_dpm_2,
    "dpm_2_ancestral": kd.sample_dpm_2_ancestral,
    "dpmpp_2s_ancestral": kd.sample_dpmpp_2s_ancestral,
    "dpmpp_2m": kd.sample_dpmpp_2m,
    "dpmpp_sde": kd.sample_dpmpp_sde,
    "dpmpp_2m_sde": kd.sample_dpmpp_2m_sde,
    "dpmpp_2m_sde_heun": _dpmpp_2m_sde_heun,
    "dpmpp_3m_sde": kd.sample_dpmpp_3m_sde,
    "restart": kd.sample_restart,
    "ddim": ts.sample_ddim,
    "ddim_cfgpp": ts.sample_ddim_cfgpp,
    "plms": ts.sample_plms,
    "unipc": ts.sample_unipc,
    "lcm": ts.sample_lcm,
}
