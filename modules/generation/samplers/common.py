"""Types and small helpers shared by the sampling algorithms.

Convention (k-diffusion): x lives in sigma ("VE") space, x = x0 + sigma * eps, and
`denoiser(x, sigma_batch) -> x0`. A sampler walks a decreasing sigma schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseFn = Callable[[], torch.Tensor]
SdeNoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

UNIPC_VARIANTS = ("bh1", "bh2", "vary_coeff")
UNIPC_SKIP_TYPES = ("time_uniform", "time_quadratic", "logSNR")


@dataclass(frozen=True)
class StepInfo:
    """What a sampler reports after each model evaluation (for previews, progress and interrupts)."""

    index: int
    total: int
    sigma: float
    sigma_hat: float
    x: torch.Tensor
    denoised: torch.Tensor


StepCallback = Callable[[StepInfo], None]


@dataclass(frozen=True)
class SamplerParams:
    """User-facing sampler parameters. `eta=None` means the sampler's A1111 default
    (1.0 for k-diffusion ancestral/SDE samplers, 0.0 for DDIM). s_tmax 0 means infinity (A1111)."""

    eta: float | None = None
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0
    unipc_order: int = 3
    unipc_variant: str = "bh1"
    unipc_skip_type: str = "time_uniform"
    unipc_lower_order_final: bool = True

    def __post_init__(self) -> None:
        if self.eta is not None and (not math.isfinite(self.eta) or self.eta < 0):
            raise ValueError(f"eta must be a finite number >= 0, got {self.eta}")
        for name in ("s_churn", "s_tmin", "s_noise"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if math.isnan(self.s_tmax) or self.s_tmax < 0:
            raise ValueError(f"s_tmax must be >= 0 (0 = infinity), got {self.s_tmax}")
        if self.s_tmax == 0:
            object.__setattr__(self, "s_tmax", math.inf)
        if not 1 <= self.unipc_order <= 50:
            raise ValueError(f"unipc_order must be between 1 and 50, got {self.unipc_order}")
        if self.unipc_variant not in UNIPC_VARIANTS:
            raise ValueError(f"unipc_variant must be one of {', '.join(UNIPC_VARIANTS)}, got {self.unipc_variant!r}")
        if self.unipc_skip_type not in UNIPC_SKIP_TYPES:
            raise ValueError(
                f"unipc_skip_type must be one of {', '.join(UNIPC_SKIP_TYPES)}, got {self.unipc_skip_type!r}"
            )


@dataclass
class SamplingRun:
    """Everything one sampling call needs besides x and the schedule; built by `samplers.sample`.

    Parameters A1111 does not pass to a given sampler are already reset to their defaults here
    (e.g. s_noise for Euler a), so algorithms just read them.
    """

    model: Denoiser
    noise: NoiseFn
    callback: StepCallback | None
    total: int
    eta: float = 1.0
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0
    sde_noise: SdeNoiseFn | None = None
    params: SamplerParams = SamplerParams()
    uncond_source: object | None = None  # the denoiser, for samplers that read its uncond output

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        # float32 whatever x is: timesteps derived from sigma must not lose precision in half latents
        sigma_batch = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(1).repeat(x.shape[0])
        return self.model(x, sigma_batch)

    def report(
        self,
        index: int,
        sigma: torch.Tensor | float,
        sigma_hat: torch.Tensor | float,
        x: torch.Tensor,
        denoised: torch.Tensor,
    ) -> None:
        if self.callback is not None:
            self.callback(StepInfo(index, self.total, float(sigma), float(sigma_hat), x, denoised))

    def brownian(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        """SDE noise: the Brownian tree when the sampler has one, else plain per-image noise."""
        if self.sde_noise is not None:
            return self.sde_noise(sigma, sigma_next)
        return self.noise()


def to_d(x: torch.Tensor, sigma: torch.Tensor | float, denoised: torch.Tensor) -> torch.Tensor:
    """Karras ODE derivative dx/dsigma."""
    return (x - denoised) / sigma


def ancestral_step(sigma_from: torch.Tensor, sigma_to: torch.Tensor, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma_down, sigma_up) for an ancestral step: go down deterministically, then add sigma_up noise."""
    if not eta:
        return sigma_to, torch.zeros_like(sigma_to)
    sigma_up = torch.minimum(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])
