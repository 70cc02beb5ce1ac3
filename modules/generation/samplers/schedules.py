"""Model noise levels and sigma schedules with A1111 semantics (A1111/Forge modules/sd_schedulers.py).

`ModelSigmas` is k-diffusion's DiscreteSchedule for a model trained on discrete timesteps:
sigma_i = sqrt((1 - a_i) / a_i) for the model's alphas_cumprod a_i, sigma <-> t by linear
interpolation of log sigma. `LcmSigmas` is A1111's LCM variant (50 original timesteps).

Schedule functions return a decreasing 1-D float32 tensor. As in A1111 most have n + 1 entries
ending in 0; exceptions reproduced on purpose: "KL Optimal" ends at sigma_min (no 0), "DDIM"
returns ceil(999 / (1000 // n)) + 1 entries (not n + 1 when n does not divide 1000).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from modules.generation.samplers.common import append_zero
from modules.generation.samplers.kdiffusion import karras_sigmas


def scaled_linear_alphas_cumprod(
    beta_start: float = 0.00085, beta_end: float = 0.012, timesteps: int = 1000
) -> torch.Tensor:
    """alphas_cumprod of SD 1.x/2.x/XL ("scaled_linear" betas), computed in float64 as ldm does."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


class ModelSigmas:
    """The model's training noise levels (ascending) and the sigma <-> timestep maps."""

    def __init__(self, sigmas: torch.Tensor, quantize: bool = False) -> None:
        sigmas = torch.as_tensor(sigmas, dtype=torch.float32).flatten().cpu()
        if sigmas.numel() < 2:
            raise ValueError("ModelSigmas needs at least 2 noise levels")
        if not bool(torch.all(sigmas > 0)) or not bool(torch.all(sigmas[1:] >= sigmas[:-1])):
            raise ValueError("model sigmas must be positive and ascending")
        self.sigmas = sigmas
        self.log_sigmas = sigmas.log()
        self.quantize = quantize

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: torch.Tensor, quantize: bool = False) -> ModelSigmas:
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float32).flatten()
        if ac.numel() < 2 or not bool(torch.all((ac > 0) & (ac < 1))):
            raise ValueError("alphas_cumprod must hold at least 2 values strictly between 0 and 1")
        return cls(((1 - ac) / ac) ** 0.5, quantize=quantize)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return 1.0 / (self.sigmas**2 + 1.0)

    def sigma_to_t(self, sigma: torch.Tensor, quantize: bool | None = None) -> torch.Tensor:
        """Continuous timestep of each sigma (nearest integer timestep when quantizing)."""
        sigma = torch.as_tensor(sigma)
        log_sigmas = self.log_sigmas.to(sigma.device)
        log_sigma = sigma.float().log()
        if self.quantize if quantize is None else quantize:
            return (log_sigma.reshape(-1, 1) - log_sigmas).abs().argmin(dim=1).view(sigma.shape)
        low = torch.searchsorted(log_sigmas, log_sigma.reshape(-1), right=True) - 1
        low = low.clamp(0, log_sigmas.shape[0] - 2)
        low_log, high_log = log_sigmas[low], log_sigmas[low + 1]
        w = ((low_log - log_sigma.reshape(-1)) / (low_log - high_log)).clamp(0, 1)
        return ((1 - w) * low + w * (low + 1)).view(sigma.shape)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t).float()
        log_sigmas = self.log_sigmas.to(t.device)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp()

    def get_sigmas(self, n: int) -> torch.Tensor:
        """k-diffusion's default ("Uniform") schedule: n timesteps evenly spaced from last to 0, then 0."""
        t = torch.linspace(len(self.sigmas) - 1, 0, n)
        return append_zero(self.t_to_sigma(t))

    def finish_denoised(self, x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Last touch a denoiser wrapper applies to x0 (identity; LCM overrides it)."""
        return denoised


class LcmSigmas(ModelSigmas):
    """A1111's LCM denoiser: the model's sigmas at the 50 original LCM timesteps (19, 39, ..., 999),
    quantized sigma -> t onto those timesteps, and the consistency-model boundary condition."""

    def __init__(self, base: ModelSigmas, original_steps: int = 50, timestep_scaling: float = 10.0) -> None:
        total = len(base.sigmas)
        if original_steps <= 0 or total % original_steps:
            raise ValueError(f"original_steps must divide {total}, got {original_steps}")
        self.skip_steps = total // original_steps
        self.timestep_scaling = timestep_scaling
        indices = torch.arange(original_steps) * self.skip_steps + (self.skip_steps - 1)
        super().__init__(base.sigmas[indices], quantize=True)

    def sigma_to_t(self, sigma: torch.Tensor, quantize: bool | None = None) -> torch.Tensor:
        sigma = torch.as_tensor(sigma)
        log_sigma = sigma.float().log().reshape(-1, 1)
        index = (log_sigma - self.log_sigmas.to(sigma.device)).abs().argmin(dim=1).view(sigma.shape)
        return index * self.skip_steps + (self.skip_steps - 1)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t).float()
        position = ((t - (self.skip_steps - 1)) / self.skip_steps).clamp(0, len(self.sigmas) - 1)
        return super().t_to_sigma(position)

    def get_sigmas(self, n: int) -> torch.Tensor:
        start = self.sigma_to_t(torch.tensor(self.sigma_max))
        end = self.sigma_to_t(torch.tensor(self.sigma_min))
        return append_zero(self.t_to_sigma(torch.linspace(float(start), float(end), n)))

    def finish_denoised(self, x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        scaled_t = self.sigma_to_t(sigma).to(x).reshape(-1, *([1] * (x.ndim - 1))) * self.timestep_scaling
        sigma_data = 0.5
        c_skip = sigma_data**2 / (scaled_t**2 + sigma_data**2)
        c_out = scaled_t / (scaled_t**2 + sigma_data**2) ** 0.5
        return c_out * denoised + c_skip * x


@dataclass(frozen=True)
class DenoiserScalings:
    """k-diffusion wrapper scalings: model input x * c_in; x0 = x * c_skip + model_output * c_out."""

    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor


_EPS_NAMES = ("eps", "epsilon")
_V_NAMES = ("v", "v_prediction")


def denoiser_scalings(sigma: torch.Tensor, prediction_type: str, ndim: int = 4) -> DenoiserScalings:
    """Scalings for eps (CompVisDenoiser) or v (CompVisVDenoiser) models, shaped to broadcast over ndim."""
    s = torch.as_tensor(sigma).reshape(-1, *([1] * (ndim - 1)))
    c_in = 1 / (s**2 + 1) ** 0.5
    if prediction_type in _EPS_NAMES:
        return DenoiserScalings(torch.ones_like(s), -s, c_in)
    if prediction_type in _V_NAMES:
        return DenoiserScalings(1 / (s**2 + 1), -s / (s**2 + 1) ** 0.5, c_in)
    raise ValueError(f"unknown prediction type {prediction_type!r}; valid: {', '.join(_EPS_NAMES + _V_NAMES)}")


# --- schedule functions -------------------------------------------------------------------------


def uniform_sigmas(n: int, model: ModelSigmas) -> torch.Tensor:
    return model.get_sigmas(n)


def exponential_sigmas(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    return append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp())


def polyexponential_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> torch.Tensor:
    ramp = torch.linspace(1, 0, n) ** rho
    return append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def sgm_uniform_sigmas(n: int, sigma_min: float, sigma_max: float, model: ModelSigmas) -> torch.Tensor:
    """n timesteps evenly spaced from t(sigma_max) toward t(sigma_min), excluding the end, then 0."""
    start = model.sigma_to_t(torch.tensor(sigma_max))
    end = model.sigma_to_t(torch.tensor(sigma_min))
    t = torch.linspace(float(start), float(end), n + 1)[:-1]
    return append_zero(model.t_to_sigma(t).float())


def normal_sigmas(n: int, sigma_min: float, sigma_max: float, model: ModelSigmas) -> torch.Tensor:
    start = model.sigma_to_t(torch.tensor(sigma_max))
    end = model.sigma_to_t(torch.tensor(sigma_min))
    return append_zero(model.t_to_sigma(torch.linspace(float(start), float(end), n)).float())


def kl_optimal_sigmas(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Evenly spaced in arctan(sigma); n + 1 values ending at sigma_min (A1111 appends no 0)."""
    alpha_min = torch.arctan(torch.tensor(sigma_min))
    alpha_max = torch.arctan(torch.tensor(sigma_max))
    fraction = torch.arange(n + 1) / n
    return torch.tan(fraction * alpha_min + (1.0 - fraction) * alpha_max)


AYS_SD15 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)


def _loglinear_resample(values: tuple[float, ...], count: int) -> np.ndarray:
    """Resample a decreasing sequence to `count` points, linearly in log space."""
    xs = np.linspace(0, 1, len(values))
    ys = np.log(np.asarray(values[::-1]))
    resampled = np.exp(np.interp(np.linspace(0, 1, count), xs, ys))
    return resampled[::-1].copy()


def align_your_steps_sigmas(n: int, is_sdxl: bool) -> torch.Tensor:
    """NVIDIA's published 11-sigma AYS tables (SD 1.5 / SDXL); other step counts interpolate log-linearly."""
    table = AYS_SDXL if is_sdxl else AYS_SD15
    values = list(table) if n == len(table) else list(_loglinear_resample(table, n))
    return torch.tensor([*values, 0.0], dtype=torch.float32)


def simple_sigmas(n: int, model: ModelSigmas) -> torch.Tensor:
    stride = len(model.sigmas) / n
    values = [float(model.sigmas[-(1 + int(i * stride))]) for i in range(n)]
    return torch.tensor([*values, 0.0], dtype=torch.float32)


def ddim_sigmas(n: int, model: ModelSigmas) -> torch.Tensor:
    stride = max(len(model.sigmas) // n, 1)
    values = [float(model.sigmas[i]) for i in range(1, len(model.sigmas), stride)]
    return torch.tensor([*values[::-1], 0.0], dtype=torch.float32)


def beta_sigmas(n: int, sigma_min: float, sigma_max: float, alpha: float = 0.6, beta: float = 0.6) -> torch.Tensor:
    """Beta-distribution quantiles mapped linearly onto [sigma_min, sigma_max] (Lee et al. 2024)."""
    from scipy import stats  # slow to import: only when the Beta schedule is used

    quantiles = [float(stats.beta.ppf(p, alpha, beta)) for p in 1 - np.linspace(0, 1, n)]
    return torch.tensor([sigma_min + q * (sigma_max - sigma_min) for q in quantiles] + [0.0], dtype=torch.float32)


# --- registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchedulerSpec:
    name: str
    label: str
    aliases: tuple[str, ...] = ()
    default_rho: float = -1
    need_inner_model: bool = False

    def api_item(self) -> dict[str, Any]:
        """The /sdapi/v1/schedulers entry."""
        return {
            "name": self.name,
            "label": self.label,
            "aliases": list(self.aliases) or None,
            "default_rho": self.default_rho,
            "need_inner_model": self.need_inner_model,
        }


SCHEDULERS: tuple[SchedulerSpec, ...] = (
    SchedulerSpec("automatic", "Automatic"),
    SchedulerSpec("uniform", "Uniform", need_inner_model=True),
    SchedulerSpec("karras", "Karras", default_rho=7.0),
    SchedulerSpec("exponential", "Exponential"),
    SchedulerSpec("polyexponential", "Polyexponential", default_rho=1.0),
    SchedulerSpec("sgm_uniform", "SGM Uniform", aliases=("SGMUniform",), need_inner_model=True),
    SchedulerSpec("kl_optimal", "KL Optimal"),
    SchedulerSpec("align_your_steps", "Align Your Steps"),
    SchedulerSpec("simple", "Simple", need_inner_model=True),
    SchedulerSpec("normal", "Normal", need_inner_model=True),
    SchedulerSpec("ddim", "DDIM", need_inner_model=True),
    SchedulerSpec("beta", "Beta", need_inner_model=True),
)
AUTOMATIC = SCHEDULERS[0]


class UnknownSchedulerError(ValueError):
    """A schedule type that is not in the registry; the message lists the valid ones."""


def scheduler_names() -> list[str]:
    return [s.label for s in SCHEDULERS]


def find_scheduler(name: str | None) -> SchedulerSpec:
    """Look up by label, API name or alias, case-insensitively; None or "" is Automatic."""
    if name is None or not str(name).strip():
        return AUTOMATIC
    wanted = str(name).strip().lower()
    for spec in SCHEDULERS:
        if wanted in (spec.name.lower(), spec.label.lower(), *(a.lower() for a in spec.aliases)):
            return spec
    valid = ", ".join(f"{s.label} ({s.name})" for s in SCHEDULERS)
    raise UnknownSchedulerError(f"unknown schedule type {name!r}; valid: {valid}")


@dataclass(frozen=True)
class ScheduleOptions:
    """A1111 settings that shape schedules; 0 means "the model's / the scheduler's default"."""

    sigma_min: float = 0.0
    sigma_max: float = 0.0
    rho: float = 0.0
    beta_alpha: float = 0.6
    beta_beta: float = 0.6
    always_discard_next_to_last_sigma: bool = False
    use_old_karras_scheduler_sigmas: bool = False
    is_sdxl: bool = False

    def __post_init__(self) -> None:
        for name in ("sigma_min", "sigma_max", "rho"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0 (0 = default), got {value}")
        if self.sigma_min and self.sigma_max and self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        if self.beta_alpha <= 0 or self.beta_beta <= 0:
            raise ValueError(f"beta alpha and beta must be > 0, got {self.beta_alpha} and {self.beta_beta}")

    @classmethod
    def from_settings(cls, opts: Mapping[str, Any], is_sdxl: bool = False) -> ScheduleOptions:
        """From A1111 setting keys (sigma_min, sigma_max, rho, beta_dist_alpha, beta_dist_beta,
        always_discard_next_to_last_sigma, use_old_karras_scheduler_sigmas); missing keys keep defaults."""
        defaults = cls()
        return cls(
            sigma_min=float(opts.get("sigma_min", defaults.sigma_min) or 0.0),
            sigma_max=float(opts.get("sigma_max", defaults.sigma_max) or 0.0),
            rho=float(opts.get("rho", defaults.rho) or 0.0),
            beta_alpha=float(opts.get("beta_dist_alpha", defaults.beta_alpha)),
            beta_beta=float(opts.get("beta_dist_beta", defaults.beta_beta)),
            always_discard_next_to_last_sigma=bool(opts.get("always_discard_next_to_last_sigma", False)),
            use_old_karras_scheduler_sigmas=bool(opts.get("use_old_karras_scheduler_sigmas", False)),
            is_sdxl=is_sdxl,
        )


@dataclass(frozen=True)
class SigmaSchedule:
    """A schedule and the infotext entries A1111 adds for it."""

    sigmas: torch.Tensor
    scheduler: SchedulerSpec
    extra_generation_params: dict[str, Any] = field(default_factory=dict)


def scheduler_sigmas(scheduler: SchedulerSpec, n: int, model: ModelSigmas, options: ScheduleOptions) -> SigmaSchedule:
    """Sigmas of one schedule type (no sampler-specific handling; see samplers.build_sigmas)."""
    if n < 1:
        raise ValueError(f"steps must be >= 1, got {n}")
    if scheduler.name == "automatic":
        return SigmaSchedule(model.get_sigmas(n), scheduler)
    params: dict[str, Any] = {"Schedule type": scheduler.label}
    sigma_min, sigma_max = (
        (0.1, 10.0) if options.use_old_karras_scheduler_sigmas else (model.sigma_min, model.sigma_max)
    )
    if options.sigma_min != 0 and options.sigma_min != model.sigma_min:
        sigma_min = options.sigma_min
        params["Schedule min sigma"] = options.sigma_min
    if options.sigma_max != 0 and options.sigma_max != model.sigma_max:
        sigma_max = options.sigma_max
        params["Schedule max sigma"] = options.sigma_max
    rho = scheduler.default_rho
    if scheduler.default_rho != -1 and options.rho != 0 and options.rho != scheduler.default_rho:
        rho = options.rho
        params["Schedule rho"] = options.rho
    if scheduler.name == "beta":
        params["Beta schedule alpha"] = options.beta_alpha
        params["Beta schedule beta"] = options.beta_beta
    sigmas = _dispatch(scheduler.name, n, sigma_min, sigma_max, rho, model, options)
    return SigmaSchedule(sigmas.float(), scheduler, params)


def _dispatch(
    name: str, n: int, sigma_min: float, sigma_max: float, rho: float, model: ModelSigmas, options: ScheduleOptions
) -> torch.Tensor:
    if name == "uniform":
        return uniform_sigmas(n, model)
    if name == "karras":
        return karras_sigmas(n, sigma_min, sigma_max, rho)
    if name == "exponential":
        return exponential_sigmas(n, sigma_min, sigma_max)
    if name == "polyexponential":
        return polyexponential_sigmas(n, sigma_min, sigma_max, rho)
    if name == "sgm_uniform":
        return sgm_uniform_sigmas(n, sigma_min, sigma_max, model)
    if name == "kl_optimal":
        return kl_optimal_sigmas(n, sigma_min, sigma_max)
    if name == "align_your_steps":
        return align_your_steps_sigmas(n, options.is_sdxl)
    if name == "simple":
        return simple_sigmas(n, model)
    if name == "normal":
        return normal_sigmas(n, sigma_min, sigma_max, model)
    if name == "ddim":
        return ddim_sigmas(n, model)
    if name == "beta":
        return beta_sigmas(n, sigma_min, sigma_max, options.beta_alpha, options.beta_beta)
    raise UnknownSchedulerError(f"no schedule function for {name!r}")
