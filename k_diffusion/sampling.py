"""k-diffusion's `sampling` with its call signatures, run by our samplers.

`sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None, ...)` calls
`model(x, sigma_batch, **extra_args)` and reports `{'x', 'i', 'sigma', 'sigma_hat', 'denoised'}`
to `callback`, as k-diffusion does. The algorithms are modules.generation.samplers' (A1111's
numbers). Noise: `torch.randn_like(x)` draws; `noise_sampler(sigma, sigma_next)` feeds the SDE
samplers (DPM++ SDE, 2M SDE, 3M SDE).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch

from modules.generation.rng import BrownianTreeNoise
from modules.generation.samplers import dpm_solver
from modules.generation.samplers import kdiffusion as kd
from modules.generation.samplers.common import SamplingRun, StepInfo, ancestral_step, append_zero, to_d
from modules.generation.samplers.schedules import exponential_sigmas, polyexponential_sigmas

__all__ = [
    "BrownianTreeNoiseSampler",
    "append_zero",
    "default_noise_sampler",
    "get_ancestral_step",
    "get_sigmas_exponential",
    "get_sigmas_karras",
    "get_sigmas_polyexponential",
    "sample_dpm_2",
    "sample_dpm_2_ancestral",
    "sample_dpm_adaptive",
    "sample_dpm_fast",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde",
    "sample_dpmpp_2s_ancestral",
    "sample_dpmpp_3m_sde",
    "sample_dpmpp_sde",
    "sample_euler",
    "sample_euler_ancestral",
    "sample_heun",
    "sample_lms",
    "to_d",
]

NoiseSampler = Callable[[Any, Any], torch.Tensor]


def get_sigmas_karras(
    n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device: Any = "cpu"
) -> torch.Tensor:
    return kd.karras_sigmas(n, float(sigma_min), float(sigma_max), rho).to(device)


def get_sigmas_exponential(n: int, sigma_min: float, sigma_max: float, device: Any = "cpu") -> torch.Tensor:
    return exponential_sigmas(n, float(sigma_min), float(sigma_max)).to(device)


def get_sigmas_polyexponential(
    n: int, sigma_min: float, sigma_max: float, rho: float = 1.0, device: Any = "cpu"
) -> torch.Tensor:
    return polyexponential_sigmas(n, float(sigma_min), float(sigma_max), rho).to(device)


def get_ancestral_step(sigma_from: Any, sigma_to: Any, eta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    return ancestral_step(torch.as_tensor(sigma_from), torch.as_tensor(sigma_to), eta)


def default_noise_sampler(x: torch.Tensor) -> NoiseSampler:
    return lambda sigma, sigma_next: torch.randn_like(x)


class BrownianTreeNoiseSampler:
    """Brownian-tree noise between two sigmas: `sampler(sigma, sigma_next)` is unit variance.
    `seed`: one int for every image, a list (one per image) or None (random)."""

    def __init__(
        self,
        x: torch.Tensor,
        sigma_min: Any,
        sigma_max: Any,
        seed: int | Sequence[int] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] = lambda v: v,
    ) -> None:
        self.transform = transform
        low = float(transform(torch.as_tensor(sigma_min)))
        high = float(transform(torch.as_tensor(sigma_max)))
        if seed is None:
            seeds = [random.randrange(2**63) for _ in range(x.shape[0])]
        elif isinstance(seed, int):
            seeds = [seed] * x.shape[0]
        else:
            seeds = [int(s) for s in seed]
        self.tree = BrownianTreeNoise(x, low, high, seeds)

    def __call__(self, sigma: Any, sigma_next: Any) -> torch.Tensor:
        return self.tree(self.transform(torch.as_tensor(sigma)), self.transform(torch.as_tensor(sigma_next)))


def _run(
    model: Any,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict[str, Any] | None,
    callback: Callable[[dict[str, Any]], Any] | None,
    *,
    eta: float = 1.0,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> SamplingRun:
    args = extra_args or {}

    def report(info: StepInfo) -> None:
        if callback is not None:
            step = {"x": info.x, "i": info.index, "sigma": info.sigma, "sigma_hat": info.sigma_hat}
            callback({**step, "denoised": info.denoised})

    return SamplingRun(
        model=lambda v, sigma: model(v, sigma, **args),
        noise=lambda: torch.randn_like(x),
        callback=report,
        total=len(sigmas) - 1,
        eta=eta,
        s_churn=s_churn,
        s_tmin=s_tmin,
        s_tmax=s_tmax,
        s_noise=s_noise,
        sde_noise=noise_sampler,
        uncond_source=model,
    )


@torch.no_grad()
def sample_euler(
    model: Any,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict[str, Any] | None = None,
    callback: Any = None,
    disable: Any = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> torch.Tensor:
    run = _run(model, x, sigmas, extra_args, callback, s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise)
    return kd.sample_euler(run, x, sigmas)


@torch.no_grad()
def sample_heun(
    model: Any,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict[str, Any] | None = None,
    callback: Any = None,
    disable: Any = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> torch.Tensor:
    run = _run(model, x, sigmas, extra_args, callback, s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise)
    return kd.sample_heun(run, x, sigmas)


@torch.no_grad()
def sample_dpm_2(
    model: Any,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict[str, Any] | None = None,
    callback: Any = None,
    disable: Any = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> torch.Tensor:
    run = _run(model, x, sigmas, extra_args, callback, s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise)
    return kd.sample_dpm_2(run, x, sigmas)


def _ancestral(algorithm: Callable[[SamplingRun, torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[..., Any]:
    @torch.no_grad()
    def sample(
        model: Any,
        x: torch.Tensor,
        sigmas: torch.Tensor,
        extra_args: dict[str, Any] | None = None,
        callback: Any = None,
        disable: Any = None,
        eta: float = 1.0,
        s_noise: float = 1.0,
        noise_sampler: NoiseSampler | None = None,
    ) -> torch.Tensor:
        run = _run(model, x, sigmas, extra_args, callback, eta=eta, s_noise=s_noise, noise_sampler=noise_sampler)
        return algorithm(run, x, sigmas)

    sample.__name__ = algorithm.__name__
    return sample


sample_euler_ancestral = _ancestral(kd.sample_euler_ancestral)
sample_dpm_2_ancestral = _ancestral(kd.sample_dpm_2_ancestral)
sample_dpmpp_2s_ancestral = _ancestral(kd.sample_dpmpp_2s_ancestral)
sample_dpmpp_3m_sde = _ancestral(kd.sample_dpmpp_3m_sde)


@torch.no_grad()
def sample_dpmpp_sde(
    model: Any,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict[str, Any] | None = None,
    callback: Any = None,
    disable: Any = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
    r: float = 0.5,
) -> torch.Tensor:
    run = _run(model, x, sigmas, extra_args, callback, eta=eta, s_noise=s_noise, noise_sampler=noise_sampler)
    return kd.sample_dpmpp_sde(run, x, sigmas, r=r)


@torch.no_grad()
def sample_dpmpp_2m_sde(
    model: Any,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict[str, Any] | None = None,
    callback: Any = None,
    disable: Any = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
    solver_type: str = "midpoint",
) -> torch.Tensor:
    run = _run(model, x, sigmas, extra_args, callback, eta=eta, s_noise=s_noise, noise_sampler=noise_sampler)
    return kd.sample_dpmpp_2m_sde(run, x, sigmas, solver_type=solver_type)


@torch.no_grad()
def sample_dpmpp_2m(
    model: Any,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict[str, Any] | None = None,
    callback: Any = None,
    disable: Any = None,
) -> torch.Tensor:
    return kd.sample_dpmpp_2m(_run(model, x, sigmas, extra_args, callback), x, sigmas)


@torch.no_grad()
def sample_lms(
    model: Any,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict[str, Any] | None = None,
    callback: Any = None,
    disable: Any = None,
    order: int = 4,
) -> torch.Tensor:
    return kd.sample_lms(_run(model, x, sigmas, extra_args, callback), x, sigmas, order=order)


@torch.no_grad()
def sample_dpm_fast(
    model: Any,
    x: torch.Tensor,
    sigma_min: float,
    sigma_max: float,
    n: int,
    extra_args: dict[str, Any] | None = None,
    callback: Any = None,
    disable: Any = None,
    eta: float = 0.0,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    run = _run(model, x, torch.zeros(n + 1), extra_args, callback, eta=eta, s_noise=s_noise)
    return dpm_solver.sample_dpm_fast(run, x, float(sigma_min), float(sigma_max), n)


@torch.no_grad()
def sample_dpm_adaptive(
    model: Any,
    x: torch.Tensor,
    sigma_min: float,
    sigma_max: float,
    extra_args: dict[str, Any] | None = None,
    callback: Any = None,
    disable: Any = None,
    order: int = 3,
    rtol: float = 0.05,
    atol: float = 0.0078,
    h_init: float = 0.05,
    eta: float = 0.0,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
    return_info: bool = False,
) -> torch.Tensor:
    run = _run(model, x, torch.zeros(2), extra_args, callback, eta=eta, s_noise=s_noise)
    return dpm_solver.sample_dpm_adaptive(
        run, x, float(sigma_min), float(sigma_max), order=order, rtol=rtol, atol=atol, h_init=h_init
    )
